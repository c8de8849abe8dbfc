"""Retraining: a tiny configuration trains end to end on the CPU, resumes exactly, and its weights load."""

import ast
import dataclasses
import inspect
import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from astropy.table import Table

from astro_stargal import StarGalaxyWarning, classify_sources
from astro_stargal.cli import main
from astro_stargal.instrument import band_order
from astro_stargal.models import load_model
from astro_stargal.training import (
    Augmentation,
    BandDropout,
    RotateFlip,
    SkyNoise,
    TrainConfig,
    build_training_set,
    fit_calibration,
    labelled_fields,
    split_by_field,
    standard_augmentations,
    train,
)
from astro_stargal.training._loop import TrainingLoop, _WeightAverage

pytest.importorskip("galsim")

TINY = {
    "init": "random",
    "backbone": "resnet18",
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "device": "cpu",
    "progress": False,
    "seed": 3,
}


class Interrupted(Exception):
    """Stands for a run killed after its first epoch."""


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """Three small simulated tiles: enough for a field-wise train/validation split."""
    from astro_stargal.simulate import simulate_tiles

    directory = tmp_path_factory.mktemp("sky") / "sky"
    simulate_tiles(directory, 3, size=192, seed=11, star_density=400, galaxy_density=800)
    return directory


@pytest.fixture(scope="module")
def trained(sky, tmp_path_factory):
    """One uninterrupted tiny training run, shared by the tests that only read it."""
    output = tmp_path_factory.mktemp("run") / "uninterrupted"
    weights_dir = train(sky, output, **TINY)
    return output, weights_dir


def test_tiny_training_runs_end_to_end_with_a_falling_loss(trained):
    output, weights_dir = trained
    history = Table.read(output / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert (output / "history.json").exists()
    assert (output / "learning_curve.png").exists()
    assert {path.name for path in weights_dir.iterdir()} == {"model.json", "model.safetensors"}


def test_the_averaged_weights_are_validated_and_the_raw_ones_logged_beside_them(trained):
    output, _ = trained
    history = Table.read(output / "history.csv")
    assert np.all(np.isfinite(history["val_loss_raw"]))
    assert np.all(history["val_loss_raw"] != history["val_loss"])


def test_weight_average_ramps_up_its_decay_and_copies_batch_counters():
    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    initial = net[0].weight.detach().clone()
    average = _WeightAverage(net, 0.9)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked.fill_(7)
    average.update(net)  # first update: decay (1 + 1) / (10 + 1)
    assert torch.allclose(average.net[0].weight, initial + 9 / 11)
    assert int(average.net[1].num_batches_tracked) == 7
    for _ in range(200):
        average.update(net)
    assert torch.allclose(average.net[0].weight, net[0].weight, atol=1e-6)
    assert not average.net[0].weight.requires_grad
    raw = _WeightAverage(net, 0.0)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    raw.update(net)
    assert torch.equal(raw.net[0].weight, net[0].weight), "decay 0 keeps the raw weights"


def test_written_weights_reproduce_the_validation_metrics(trained, sky):
    _, weights_dir = trained
    metadata = json.loads((weights_dir / "model.json").read_text())
    validation_names = set(metadata["training"]["validation_fields"])
    fields = [field for field in labelled_fields(sky) if field.name in validation_names]
    assert fields, "the metadata names the validation fields"
    tables = [
        classify_sources(field.table, field.images, weights=weights_dir, device="cpu") for field in fields
    ]
    p_star = np.concatenate([np.asarray(table["p_star"]) for table in tables])
    is_star = np.concatenate([np.asarray(table["label"] == "star") for table in tables])
    classified = np.isfinite(p_star)
    accuracy = np.mean((p_star[classified] >= 0.5) == is_star[classified])
    assert classified.sum() == metadata["training"]["n_validation"]
    assert accuracy == pytest.approx(metadata["metrics"]["validation"]["accuracy"], abs=1e-9)


def test_weights_record_their_provenance(trained):
    _, weights_dir = trained
    model = load_model(weights_dir, device="cpu")
    assert model.bands == band_order()
    training = model.metadata["training"]
    assert training["init"] == "random"
    assert training["config"]["seed"] == TINY["seed"]
    assert set(training["validation_fields"]) < set(training["fields"])
    assert model.metadata["temperature"] > 0


def test_interrupted_run_resumes_to_the_same_weights(sky, tmp_path, trained):
    _, uninterrupted = trained
    output = tmp_path / "interrupted"

    def stop_after_first_epoch(epoch, row):
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(sky, output, on_epoch_end=stop_after_first_epoch, **TINY)
    assert (output / "checkpoint.pt").exists()
    resumed = train(sky, output, **TINY)
    assert len(Table.read(output / "history.csv")) == TINY["epochs"]
    assert (resumed / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()


def test_training_set_cache_is_reused_and_a_corrupted_cache_is_rebuilt(sky, tmp_path):
    fields = labelled_fields(sky)
    cache = tmp_path / "cache.npz"
    first = build_training_set(fields, bands=band_order(), stamp_size=32, cache=cache, progress=False)
    assert cache.exists()
    again = build_training_set(fields, bands=band_order(), stamp_size=32, cache=cache, progress=False)
    np.testing.assert_array_equal(first.catalog, again.catalog)

    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    with pytest.warns(StarGalaxyWarning, match="rebuilding"):
        rebuilt = build_training_set(fields, bands=band_order(), stamp_size=32, cache=cache, progress=False)
    np.testing.assert_array_equal(first.catalog, rebuilt.catalog)


def test_validation_split_takes_whole_fields(sky):
    data = build_training_set(labelled_fields(sky), bands=band_order(), stamp_size=32, progress=False)
    is_validation = split_by_field(data, 0.3, seed=0)
    validation_fields = set(data.field[is_validation])
    training_fields = set(data.field[~is_validation])
    assert validation_fields and training_fields
    assert not validation_fields & training_fields


def test_labels_other_than_star_or_galaxy_are_refused(sky):
    field = labelled_fields(sky)[0]
    table = field.table.copy()
    table["label"][0] = "quasar"
    with pytest.raises(ValueError, match="quasar"):
        build_training_set(
            labelled_fields([(table, field.images)]), bands=band_order(), stamp_size=32, progress=False
        )


def test_calibration_recovers_a_known_temperature_and_bias():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 3, 200_000)
    labels = rng.random(true_logit.size) < 1 / (1 + np.exp(-true_logit))
    temperature, bias = fit_calibration(2.0 * (true_logit - 0.5), labels)
    assert temperature == pytest.approx(2.0, rel=0.03)
    assert bias == pytest.approx(0.5, abs=0.05)


def test_command_line_train_writes_loadable_weights(sky, tmp_path):
    output = tmp_path / "cli_run"
    status = main(
        [
            "train", str(sky), "-o", str(output), "--init", "random", "--backbone", "resnet18",
            "--epochs", "1", "--batch-size", "32", "--device", "cpu",
        ]
    )  # fmt: skip
    assert status == 0
    assert load_model(output / "weights", device="cpu").stamp_size == 32


def test_fine_tuning_leaves_the_loaded_initial_model_untouched(sky, tmp_path, trained):
    _, initial = trained
    before = load_model(initial, device="cpu")
    probe = {name: tensor.clone() for name, tensor in before.net.state_dict().items()}
    train(sky, tmp_path / "fine_tuned", **(TINY | {"init": initial, "epochs": 1}))
    after = load_model(initial, device="cpu")
    assert after.net is before.net
    for name, tensor in after.net.state_dict().items():
        assert torch.equal(tensor, probe[name]), name


def test_time_budget_replans_after_the_slow_first_epoch_but_never_beyond_the_request():
    loop = SimpleNamespace(epoch=1, requested_epochs=60, planned_epochs=60)
    TrainingLoop.fit_plan_to_budget(loop, 6.3, 190.0)  # first epoch slowed by warm-up
    assert loop.planned_epochs == 31
    loop.epoch = 2
    TrainingLoop.fit_plan_to_budget(loop, 4.5, 185.0)
    assert loop.planned_epochs == 43, "the second epoch's speed lengthens the plan again"
    TrainingLoop.fit_plan_to_budget(loop, 1.0, 1e6)
    assert loop.planned_epochs == 60
    TrainingLoop.fit_plan_to_budget(loop, 4.5, -10.0)
    assert loop.planned_epochs == 2, "an exhausted budget ends the run after the current epoch"


def test_train_config_round_trips_through_the_weights_metadata(trained):
    _, weights_dir = trained
    recorded = load_model(weights_dir, device="cpu").metadata["training"]["config"]
    config = TrainConfig.from_dict(recorded)
    assert config == TrainConfig(**TINY)
    assert config.augmentations == (RotateFlip(), SkyNoise(max_sigma=0.5), BandDropout(probability=0.15))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_every_option_of_train_config_is_recorded_and_restored():
    config = TrainConfig(
        bands=["g", "r", "i"],
        stamp_size=24,
        image_crop=16,
        label_column="truth",
        features=["size", "spread_model"],
        recentre=False,
        position_error=0.02,
        max_magnitude=25.5,
        reference_psf_fwhm={"g": 0.12, "r": 0.13},
        init="random",
        backbone="compact",
        lstm_hidden=16,
        branches=["image"],
        teacher="csst-resnet50-bilstm",
        teacher_weight=0.7,
        epochs=7,
        batch_size=64,
        learning_rate=1e-3,
        weight_decay=0.01,
        average_decay=0.0,
        augmentations=[BandDropout(probability=0.4), RotateFlip()],
        validation_fraction=0.3,
        patience=2,
        seed=5,
        device="cpu",
        cache="cache.npz",
        n_jobs=2,
        max_minutes=1.5,
        resume=False,
        progress=False,
        name="ablation",
        provenance={"simulator": "simulate_tiles(...)", "tiles": [1, 2]},
    )
    described = config.to_dict()
    assert set(described) == {field.name for field in dataclasses.fields(TrainConfig)}
    assert TrainConfig.from_dict(json.loads(json.dumps(described))) == config
    defaults = TrainConfig()
    assert all(getattr(config, name) != getattr(defaults, name) for name in described), (
        "each option is exercised"
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 12.5}, "batch_size"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"average_decay": 1.0}, "average_decay"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"patience": 0}, "patience"),
        ({"backbone": "vgg16"}, "backbone"),
        ({"image_crop": 40}, "image_crop"),
        ({"backbone": "resnet18", "stamp_size": 24, "image_crop": 12}, "image_crop"),
        ({"lstm_hidden": 0}, "lstm_hidden"),
        ({"teacher_weight": 1.5}, "teacher_weight"),
        ({"branches": ("image", "spectrum")}, "branches"),
        ({"bands": "gri"}, "bands"),
        ({"augmentations": ["rotate"]}, "augmentations"),
        ({"max_minutes": float("nan")}, "max_minutes"),
        ({"resume": "yes"}, "resume"),
        ({"provenance": {"started": object()}}, "provenance"),
    ],
)
def test_an_invalid_option_is_refused_naming_it(options, named):
    with pytest.raises(ValueError, match=f"TrainConfig: {named} must be"):
        TrainConfig(**options)


def test_an_unknown_option_is_refused_before_any_work(sky, tmp_path):
    output = tmp_path / "never_made"
    with pytest.raises(TypeError, match="unknown training option 'epoch'"):
        train(sky, output, epoch=3)
    assert not output.exists()
    with pytest.raises(ValueError, match="no option 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})


def test_augmentations_describe_themselves_and_are_rebuilt_from_the_description():
    for augmentation in (RotateFlip(), SkyNoise(max_sigma=0.25), BandDropout(probability=0.4)):
        description = augmentation.to_dict()
        assert description["name"] == type(augmentation).__name__
        assert Augmentation.from_dict(json.loads(json.dumps(description))) == augmentation
    with pytest.raises(ValueError, match="unknown augmentation 'Blur'"):
        Augmentation.from_dict({"name": "Blur", "sigma": 1.0})
    with pytest.raises(ValueError, match="SkyNoise: max_sigma must be"):
        SkyNoise(max_sigma=-0.5)
    with pytest.raises(ValueError, match="BandDropout: probability must be"):
        BandDropout(probability=1.5)


def test_todays_augment_and_band_dropout_keywords_map_onto_the_augmentation_list():
    assert TrainConfig().augmentations == standard_augmentations()
    assert TrainConfig().with_options(augment=False).augmentations == (BandDropout(probability=0.15),)
    assert TrainConfig().with_options(band_dropout=0.3).augmentations == (
        RotateFlip(),
        SkyNoise(max_sigma=0.5),
        BandDropout(probability=0.3),
    )
    assert TrainConfig().with_options(augment=False, band_dropout=0).augmentations == ()
    with pytest.raises(TypeError, match="not both"):
        TrainConfig().with_options(augment=False, augmentations=[RotateFlip()])


def test_augmentations_keep_what_they_must():
    generator = torch.Generator().manual_seed(0)
    n_bands = 3
    pixels = torch.randn(64, n_bands, 8, 8)
    valid = torch.ones(64, n_bands, 8, 8)
    valid[:, 2] = 0  # the third band is missing everywhere
    stamps = torch.cat([pixels * valid, valid], dim=1)
    catalog = torch.ones(64, n_bands, 7)
    catalog[:, 2] = 0

    rotated, same_catalog = RotateFlip()(stamps, catalog, generator)
    assert same_catalog is catalog
    assert torch.equal(rotated.flatten(2).sort().values, stamps.flatten(2).sort().values), (
        "pixels move, unchanged"
    )
    assert not torch.equal(rotated, stamps)

    noisy, _ = SkyNoise(max_sigma=0.5)(stamps, catalog, generator)
    assert torch.equal(noisy[:, n_bands:], valid), "validity channels unchanged"
    assert torch.all(noisy[:, 2] == 0), "no noise where the band has no data"
    assert not torch.equal(noisy[:, :2], stamps[:, :2])

    dropped_stamps, dropped_catalog = BandDropout(probability=0.9)(stamps, catalog, generator)
    present = dropped_catalog[:, :, -1] > 0
    assert torch.all(present.sum(dim=1) >= 1), "one present band always stays"
    assert torch.all(~present[:, 2]), "a missing band is never revived"
    hidden = ~present[:, :2]
    assert hidden.any()
    assert torch.all(dropped_stamps[:, :2][hidden] == 0) and torch.all(
        dropped_stamps[:, n_bands : n_bands + 2][hidden] == 0
    )


@dataclasses.dataclass(frozen=True)
class CountingAugmentation(Augmentation):
    """A transform defined outside the package: it leaves the batch alone and counts the calls."""

    calls = 0

    def __call__(self, stamps, catalog, generator):
        CountingAugmentation.calls += 1
        return stamps, catalog


def test_an_ablation_with_another_augmentation_list_runs_and_is_recorded(sky, tmp_path, trained):
    output, _ = trained
    augmentations = [CountingAugmentation(), BandDropout(probability=0.3)]
    config = TrainConfig(**(TINY | {"epochs": 1, "augmentations": augmentations}))
    CountingAugmentation.calls = 0
    weights_dir = train(sky, tmp_path / "ablation", config, cache=output / "training_set.npz")
    model = load_model(weights_dir, device="cpu")
    n_train = model.metadata["training"]["n_train"]
    assert CountingAugmentation.calls == -(-n_train // TINY["batch_size"]), "applied to every batch"
    recorded = model.metadata["training"]["config"]
    assert recorded["augmentations"] == [
        {"name": "CountingAugmentation"},
        {"name": "BandDropout", "probability": 0.3},
    ]
    assert TrainConfig.from_dict(recorded) == dataclasses.replace(
        config, cache=str(output / "training_set.npz")
    )


def test_train_signature_and_body_fit_on_one_screen():
    source = textwrap.dedent(inspect.getsource(train))
    function = ast.parse(source).body[0]
    docstring = function.body[0]
    assert isinstance(docstring.value, ast.Constant) and isinstance(docstring.value.value, str)
    n_lines = len(source.splitlines()) - (docstring.end_lineno - docstring.lineno + 1)
    assert n_lines <= 45, f"train() is {n_lines} lines without its docstring"


def test_a_tiny_psf_conditioned_model_trains_end_to_end_and_records_its_psf_range(sky, tmp_path):
    from astro_stargal.pipeline import FEATURE_NAMES, PSF_FEATURE_NAMES

    features = FEATURE_NAMES + PSF_FEATURE_NAMES
    reference = dict.fromkeys(band_order(), 0.13)  # the tiny tiles hold too few stars to measure their PSF
    weights_dir = train(
        sky,
        tmp_path / "psf",
        **{**TINY, "epochs": 2},
        features=features,
        reference_psf_fwhm=reference,
        position_error=0.02,
    )
    model = load_model(weights_dir, device="cpu")
    assert model.feature_names == features
    assert model.reference_psf_fwhm == reference
    assert model.metadata["training"]["config"]["position_error"] == 0.02
    history = Table.read(tmp_path / "psf" / "history.csv")
    assert np.isfinite(history["val_loss"]).all()


def test_grown_features_start_from_the_initial_models_predictions():
    from astro_stargal.models import StarGalaxyNet
    from astro_stargal.pipeline import FEATURE_NAMES, PSF_FEATURE_NAMES
    from astro_stargal.training._train import _with_features

    torch.manual_seed(0)
    net = StarGalaxyNet(3, len(FEATURE_NAMES), backbone="resnet18").eval()
    grown = _with_features(net, list(FEATURE_NAMES), list(FEATURE_NAMES + PSF_FEATURE_NAMES)).eval()
    stamps = torch.randn(4, 6, 32, 32)
    catalog = torch.randn(4, 3, len(FEATURE_NAMES) + 1)
    catalog[..., -1] = 1.0
    extra = torch.randn(4, 3, len(PSF_FEATURE_NAMES))
    grown_catalog = torch.cat([catalog[..., :-1], extra, catalog[..., -1:]], dim=-1)
    with torch.inference_mode():
        torch.testing.assert_close(grown(stamps, grown_catalog), net(stamps, catalog))


def test_a_tiny_compact_model_distilled_from_the_bundled_one_trains_end_to_end_on_the_cpu(sky, tmp_path):
    output = tmp_path / "distilled"
    options = {**TINY, "epochs": 2, "backbone": "compact", "stamp_size": 24, "image_crop": 16}
    weights_dir = train(
        sky, output, **options, lstm_hidden=16, teacher="csst-resnet50-bilstm", teacher_weight=0.6
    )
    model = load_model(weights_dir, device="cpu")
    assert (model.stamp_size, model.image_crop) == (24, 16)
    assert model.metadata["architecture"]["backbone"] == "compact"
    assert model.metadata["architecture"]["lstm_hidden"] == 16
    teacher = model.metadata["training"]["teacher"]
    assert teacher["name"] == "csst-resnet50-bilstm"
    assert teacher["sha256"] == load_model(device="cpu").metadata["sha256"]

    # The teacher's logits were computed once, with the teacher's own 32-pixel stamps, and cached.
    data = np.load(output / "training_set.npz")
    assert data["stamps"].shape[-2:] == (16, 16)
    teacher_says_star = data["teacher_logit"] > 0
    assert np.isfinite(data["teacher_logit"]).all()
    assert np.mean(teacher_says_star == data["labels"].astype(bool)) > 0.8

    field = labelled_fields(sky)[0]
    result = classify_sources(field.table, field.images, weights=weights_dir, device="cpu", progress=False)
    assert np.isfinite(result["p_star"]).mean() > 0.9
