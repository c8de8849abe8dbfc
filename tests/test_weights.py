"""The weights format (safetensors + model.json) and its integrity checks (the registry: test_registry.py)."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from astro_stargal import classify_sources, load_model
from astro_stargal.models import METADATA_FILE, TENSOR_FILE, StarGalaxyNet, save_weights
from astro_stargal.pipeline import FEATURE_NAMES


@pytest.fixture(scope="module")
def trained_net(bands):
    """A random network standing in for a trained one, with non-trivial normalisation and temperature."""
    torch.manual_seed(1)
    net = StarGalaxyNet(len(bands), len(FEATURE_NAMES), backbone="resnet18").eval()
    net.feature_mean.uniform_(-1, 1)
    net.feature_std.uniform_(0.5, 2)
    net.temperature.fill_(1.7)
    return net


@pytest.fixture(scope="module")
def net_inputs(bands):
    generator = torch.Generator().manual_seed(2)
    stamps = torch.randn(4, 2 * len(bands), 32, 32, generator=generator)
    catalog = torch.randn(4, len(bands), len(FEATURE_NAMES) + 1, generator=generator)
    catalog[..., -1] = 1.0
    return stamps, catalog


def metadata_for(bands, name="test"):
    return {"name": name, "bands": list(bands), "stamp_size": 32, "feature_names": list(FEATURE_NAMES)}


def predictions(net, net_inputs):
    with torch.inference_mode():
        return net.predict_proba(*net_inputs).numpy()


@pytest.fixture
def weights_copy(model_dir, tmp_path):
    """A private copy of the test model directory that a test may damage."""
    return shutil.copytree(model_dir, tmp_path / "weights")


def test_unquantised_round_trip_reproduces_predictions_exactly(trained_net, net_inputs, bands, tmp_path):
    directory = save_weights(trained_net, tmp_path, metadata=metadata_for(bands), quantise=False)
    model = load_model(directory, device="cpu")
    np.testing.assert_array_equal(predictions(model.net, net_inputs), predictions(trained_net, net_inputs))
    assert model.bands == tuple(bands)
    assert model.stamp_size == 32
    assert model.name == "test"


def test_int8_round_trip_stays_close_to_the_unquantised_predictions(trained_net, net_inputs, bands, tmp_path):
    directory = save_weights(trained_net, tmp_path, metadata=metadata_for(bands))
    model = load_model(directory, device="cpu")
    expected = predictions(trained_net, net_inputs)
    got = predictions(model.net, net_inputs)
    assert np.max(np.abs(got - expected)) < 0.01
    assert model.metadata["quantisation"].startswith("int8")
    torch.testing.assert_close(model.net.feature_mean, trained_net.feature_mean)
    torch.testing.assert_close(model.net.temperature, trained_net.temperature)


def test_int8_file_is_several_times_smaller(trained_net, bands, tmp_path):
    small = save_weights(trained_net, tmp_path / "q", metadata=metadata_for(bands))
    large = save_weights(trained_net, tmp_path / "f", metadata=metadata_for(bands), quantise=False)
    assert (large / TENSOR_FILE).stat().st_size > 3 * (small / TENSOR_FILE).stat().st_size


def test_metadata_records_the_checksum_and_architecture(model_dir):
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    assert len(metadata["sha256"]) == 64
    assert metadata["architecture"]["backbone"] == "resnet18"
    assert metadata["bands"] == ["NUV", "u", "g", "r", "i", "z", "y"]


def test_save_refuses_metadata_without_name_bands_or_stamp_size(trained_net, tmp_path):
    with pytest.raises(ValueError, match="bands"):
        save_weights(trained_net, tmp_path, metadata={"name": "x", "stamp_size": 32})


def test_tampered_weights_file_is_refused_before_use(weights_copy, monkeypatch):
    tensor_path = weights_copy / TENSOR_FILE
    content = bytearray(tensor_path.read_bytes())
    content[len(content) // 2] ^= 0x01
    tensor_path.write_bytes(bytes(content))

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("tensors were read before the checksum was checked")

    monkeypatch.setattr("astro_stargal.models._weights.load_file", must_not_be_called)
    with pytest.raises(ValueError, match=r"SHA-256.*tampered or truncated"):
        load_model(weights_copy, device="cpu")


def test_truncated_weights_file_is_refused(weights_copy):
    tensor_path = weights_copy / TENSOR_FILE
    tensor_path.write_bytes(tensor_path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="tampered or truncated"):
        load_model(weights_copy, device="cpu")


def test_weights_of_another_architecture_are_refused_with_a_short_message(weights_copy):
    metadata_path = weights_copy / METADATA_FILE
    metadata = json.loads(metadata_path.read_text())
    metadata["architecture"]["backbone"] = "resnet50"
    metadata_path.write_text(json.dumps(metadata))

    with pytest.raises(ValueError, match="do not fit the architecture") as error:
        load_model(weights_copy, device="cpu")

    assert "resnet50" in str(error.value)
    assert len(str(error.value)) < 1000


def test_edited_metadata_is_seen_by_the_next_load(weights_copy):
    load_model(weights_copy, device="cpu")
    metadata_path = weights_copy / METADATA_FILE
    metadata = json.loads(metadata_path.read_text())
    metadata["architecture"]["backbone"] = "resnet50"  # same file size, possibly same mtime tick
    metadata_path.write_text(json.dumps(metadata, indent=2))

    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_model(weights_copy, device="cpu")


def test_metadata_that_is_not_json_is_refused(weights_copy):
    (weights_copy / METADATA_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(weights_copy, device="cpu")


def test_missing_weights_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere", device="cpu")


def test_loading_never_unpickles(weights_copy, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle-based loading was used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)

    model = load_model(weights_copy, device="cpu")

    assert model.name == "test"


def test_tensor_file_is_safetensors(model_dir):
    with safe_open(str(model_dir / TENSOR_FILE), framework="pt") as tensors:
        names = set(tensors.keys())
    assert "classifier.3.weight" in names
    assert any(name.endswith(".scale") for name in names)


def test_already_loaded_model_is_accepted(classify, field, model_dir):
    model = load_model(model_dir, device="cpu")
    from_model = classify(field.table(), field.images(), weights=model)
    from_path = classify(field.table(), field.images())
    np.testing.assert_array_equal(from_model["p_star"], from_path["p_star"])


@pytest.mark.parametrize(
    ("stamp_size", "image_crop", "backbone"), [(24, 16, "compact"), (40, 40, "resnet18"), (48, 20, "compact")]
)
def test_a_model_with_another_stamp_size_or_crop_loads_and_classifies_as_its_metadata_says(
    field, field_psf, bands, tmp_path, stamp_size, image_crop, backbone
):
    torch.manual_seed(3)
    net = StarGalaxyNet(len(bands), len(FEATURE_NAMES), backbone=backbone, lstm_hidden=16)
    metadata = {**metadata_for(bands), "stamp_size": stamp_size, "preprocessing": {"image_crop": image_crop}}
    model = load_model(save_weights(net, tmp_path / "other", metadata=metadata), device="cpu")
    assert (model.stamp_size, model.image_crop) == (stamp_size, image_crop)
    seen = []
    model.net.image_branch.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    result = classify_sources(field.table(), field.images(), weights=model, psf=field_psf, progress=False)
    assert np.isfinite(result["p_star"]).all()
    assert seen and all(shape[-2:] == (image_crop, image_crop) for shape in seen)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"preprocessing": {"image_crop": 40}},
            r"image_crop must be an integer from 8 .* stamp_size=32, got 40",
        ),
        ({"preprocessing": {"image_crop": 4}}, r"image_crop must be an integer from 8 \(the smallest stamp"),
        ({"architecture": {"backbone": "vgg16"}}, r"architecture.backbone must be one of"),
        ({"architecture": {"lstm_hidden": -2}}, r"architecture.lstm_hidden must be a positive integer"),
    ],
)
def test_metadata_whose_crop_or_architecture_contradicts_itself_is_refused(tmp_path, bands, change, message):
    net = StarGalaxyNet(len(bands), len(FEATURE_NAMES), backbone="compact", lstm_hidden=16)
    directory = save_weights(net, tmp_path / "model", metadata=metadata_for(bands))
    metadata = json.loads((directory / METADATA_FILE).read_text())
    for key, value in change.items():
        metadata[key] = {**metadata[key], **value}
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=message):
        load_model(directory, device="cpu")
