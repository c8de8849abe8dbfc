"""The model registry: one namespace of names from entry points and `register_model`, safe against plugins.

Most tests install fake distributions the way pip leaves them on disk (a
``NAME-VERSION.dist-info`` folder with ``METADATA`` and ``entry_points.txt``)
in a temporary folder put on `sys.path`, so `importlib.metadata` finds them as
it finds real ones. The last test builds a real third-party package and
installs it with pip.
"""

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from astro_stargal import StarGalaxyWarning, classify_sources, list_models, load_model, register_model
from astro_stargal.cli import main
from astro_stargal.instrument import PIXEL_SCALE
from astro_stargal.models import (
    DEFAULT_MODEL,
    ENTRY_POINT_GROUP,
    FAST_MODEL,
    METADATA_FILE,
    StarGalaxyNet,
    fast_model,
    save_weights,
    unregister_model,
)
from astro_stargal.pipeline import FEATURE_NAMES

ROOT = Path(__file__).resolve().parent.parent

#: Name and version of the fake third-party distribution most tests install.
DISTRIBUTION = ("survey-models", "2.1")


def rescan():
    """Scan the entry points again, ignoring the warnings about whatever is broken at the moment."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarGalaxyWarning)
        return list_models(refresh=True)


def row_of(models, name):
    matches = models[models["name"] == name]
    assert len(matches) == 1, f"{name!r} listed {len(matches)} times in {list(models['name'])}"
    return matches[0]


class Site:
    """A folder on `sys.path` holding fake installed distributions and the plugin module they point to."""

    def __init__(self, directory):
        self.directory = directory

    def install(self, entry_points, *, distribution=DISTRIBUTION, rescan_now=True):
        """Install a distribution declaring ``entry_points`` (model name -> ``module:function``)."""
        name, version = distribution
        dist_info = self.directory / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{key} = {value}" for key, value in entry_points.items())]
        (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        if rescan_now:
            rescan()


@pytest.fixture
def site(tmp_path, model_dir):
    """An empty site folder on `sys.path`, with the module ``plugin_models`` that plugins point to."""
    directory = tmp_path / "site"
    directory.mkdir()
    bad_metadata = tmp_path / "bad_metadata"
    bad_metadata.mkdir()
    (bad_metadata / METADATA_FILE).write_text(json.dumps({"name": "half a model"}))
    no_tensors = tmp_path / "no_tensors"
    no_tensors.mkdir()
    shutil.copy(model_dir / METADATA_FILE, no_tensors / METADATA_FILE)
    (directory / "plugin_models.py").write_text(
        textwrap.dedent(
            f"""
            def good():
                return {str(model_dir)!r}

            def raises():
                raise RuntimeError("plugin exploded")

            def gone():
                return {str(tmp_path / "deleted")!r}

            def bad_metadata():
                return {str(bad_metadata)!r}

            def no_tensors():
                return {str(no_tensors)!r}

            def not_a_path():
                return 42
            """
        )
    )
    sys.path.insert(0, str(directory))
    yield Site(directory)
    sys.path.remove(str(directory))
    sys.modules.pop("plugin_models", None)
    rescan()


@pytest.fixture
def register():
    """`register_model`, with every name it registered unregistered after the test."""
    names = set()

    def register_for_this_test(name, target, **options):
        register_model(name, target, **options)
        names.add(name)

    yield register_for_this_test
    for name in names:
        with contextlib.suppress(ValueError):
            unregister_model(name)


# --- the bundled model ---------------------------------------------------------------------------


def test_bundled_model_is_registered_through_the_same_entry_point_group():
    names = [entry.name for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    assert DEFAULT_MODEL in names


def test_bundled_model_is_listed_first_as_bundled_with_its_distribution():
    models = list_models()
    bundled = models[0]
    assert bundled["name"] == DEFAULT_MODEL
    assert bundled["source"] == "bundled"
    assert bundled["distribution"].startswith("astro_stargal ")
    assert bundled["target"] == "astro_stargal.models:bundled_model"
    assert bundled["available"], bundled["reason"]
    assert bundled["bands"] == "NUV u g r i z y"


def test_bundled_model_is_known_in_a_checkout_that_was_never_installed(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(
            importlib.metadata, "entry_points", lambda **selection: importlib.metadata.EntryPoints([])
        )
        bundled = row_of(list_models(refresh=True), DEFAULT_MODEL)
    rescan()
    assert bundled["source"] == "bundled"
    assert bundled["distribution"] == ""
    assert bundled["available"], bundled["reason"]


def test_the_fast_model_is_bundled_through_the_entry_point_group_like_a_third_party_model(capsys):
    entry_points = {entry.name: entry for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert entry_points[FAST_MODEL].value == "astro_stargal.models:fast_model"
    models = list_models()
    assert list(models["name"][:2]) == [DEFAULT_MODEL, FAST_MODEL]
    fast = row_of(models, FAST_MODEL)
    assert (fast["source"], fast["available"], fast["stamp_size"]) == ("bundled", True, 24)
    assert Path(fast["path"]) == fast_model()
    model = load_model(FAST_MODEL, device="cpu")
    assert (model.name, model.image_crop, model.metadata["architecture"]["backbone"]) == (
        FAST_MODEL,
        16,
        "compact",
    )
    assert model.metadata["training"]["teacher"]["name"] == DEFAULT_MODEL
    assert main(["info"]) == 0
    assert any(
        line.startswith(f"model {FAST_MODEL} [bundled (astro_stargal ")
        for line in capsys.readouterr().out.splitlines()
    )


def test_both_bundled_models_are_known_in_a_checkout_that_was_never_installed(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(
            importlib.metadata, "entry_points", lambda **selection: importlib.metadata.EntryPoints([])
        )
        models = list_models(refresh=True)
    rescan()
    for name in (DEFAULT_MODEL, FAST_MODEL):
        row = row_of(models, name)
        assert (row["source"], row["available"]) == ("bundled", True), row["reason"]


# --- entry points ----------------------------------------------------------------------------------


def test_entry_point_model_is_listed_with_its_distribution_and_loads_by_name(site, model_dir):
    site.install({"survey-good": "plugin_models:good"})

    row = row_of(list_models(), "survey-good")
    model = load_model("survey-good", device="cpu")

    assert row["source"] == "entry point"
    assert row["distribution"] == "survey-models 2.1"
    assert row["target"] == "plugin_models:good"
    assert Path(row["path"]) == model_dir
    assert (row["bands"], row["stamp_size"], row["available"], row["reason"]) == (
        "NUV u g r i z y",
        32,
        True,
        "",
    )
    assert model.name == "test"


BROKEN_PLUGINS = [
    # entry point, what list_models gives as the reason, what load_model raises
    (
        "no_such_plugin_module:weights",
        "ModuleNotFoundError: No module named 'no_such_plugin_module'",
        ImportError,
    ),
    ("plugin_models:no_such_function", "ImportError: .*AttributeError", ImportError),
    ("plugin_models:raises", "RuntimeError: plugin exploded", ValueError),
    ("plugin_models:gone", "FileNotFoundError", FileNotFoundError),
    (
        "plugin_models:bad_metadata",
        r"ValueError: .*model.json.*: lacks 'bands'; lacks 'stamp_size'",
        ValueError,
    ),
    ("plugin_models:no_tensors", "FileNotFoundError: .*model.safetensors' does not exist", FileNotFoundError),
    ("plugin_models:not_a_path", "TypeError: its target returned 42, not the path", ValueError),
]


@pytest.mark.parametrize(("entry_point", "reason", "error"), BROKEN_PLUGINS)
def test_broken_plugin_is_a_warning_naming_it_and_listed_unavailable_with_the_reason(
    site, entry_point, reason, error
):
    site.install({"survey-broken": entry_point, "survey-good": "plugin_models:good"})

    with pytest.warns(
        StarGalaxyWarning, match=r"'survey-broken' \(entry point .* survey-models 2\.1\)"
    ) as record:
        models = list_models()

    assert len(record) == 1
    broken = row_of(models, "survey-broken")
    assert not broken["available"]
    assert broken["path"] == ""
    assert broken["distribution"] == "survey-models 2.1"
    assert re.search(reason, broken["reason"]), broken["reason"]
    assert row_of(models, "survey-good")["available"]


@pytest.mark.parametrize(("entry_point", "reason", "error"), BROKEN_PLUGINS)
def test_loading_a_broken_plugin_raises_naming_the_model_and_its_distribution(
    site, entry_point, reason, error
):
    site.install({"survey-broken": entry_point})

    with pytest.raises(
        error, match=r"model 'survey-broken' \(entry point .* survey-models 2\.1\) is unavailable"
    ):
        load_model("survey-broken", device="cpu")


def test_a_broken_plugin_does_not_disturb_other_models(site, field, field_psf, model_dir):
    site.install({"survey-broken": "no_such_plugin_module:weights", "survey-good": "plugin_models:good"})

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning about the broken one
        by_name = classify_sources(
            field.table(), field.images(), weights="survey-good", device="cpu", psf=field_psf
        )
        by_path = classify_sources(
            field.table(), field.images(), weights=model_dir, device="cpu", psf=field_psf
        )
        default = load_model(device="cpu")

    np.testing.assert_array_equal(by_name["p_star"], by_path["p_star"])
    assert default.name == DEFAULT_MODEL


def test_two_distributions_claiming_one_name_is_an_error_naming_both(site, register, model_dir):
    site.install({"shared-name": "plugin_models:good"})
    site.install({"shared-name": "plugin_models:raises"}, distribution=("other-models", "0.3"))

    with pytest.warns(StarGalaxyWarning, match="'shared-name'"):
        row = row_of(list_models(), "shared-name")
    with pytest.raises(ValueError, match="claimed by") as error:
        load_model("shared-name", device="cpu")

    assert not row["available"]
    for message in (row["reason"], str(error.value)):
        assert "survey-models 2.1" in message
        assert "other-models 0.3" in message
    register("shared-name", model_dir, force=True)  # the way out the message offers
    assert load_model("shared-name", device="cpu").name == "test"


def test_entry_points_are_scanned_once_per_process_until_refreshed(site):
    list_models()
    site.install({"survey-good": "plugin_models:good"}, rescan_now=False)

    assert "survey-good" not in list_models()["name"]
    assert "survey-good" in list_models(refresh=True)["name"]


def test_a_model_installed_after_the_scan_is_found_when_asked_for_by_name(site):
    list_models()
    site.install({"survey-good": "plugin_models:good"}, rescan_now=False)

    assert load_model("survey-good", device="cpu").name == "test"


def test_unknown_model_name_lists_the_registered_ones(site):
    site.install({"survey-good": "plugin_models:good"})
    with pytest.raises(
        FileNotFoundError, match=r"neither an existing path nor a registered model.*survey-good"
    ):
        load_model("no-such-model", device="cpu")


# --- register_model --------------------------------------------------------------------------------


def test_model_registered_by_directory_classifies_by_name_like_its_path(register, classify, field, model_dir):
    register("my-model", model_dir)

    by_name = classify_sources(field.table(), field.images(), weights="my-model", device="cpu")
    by_path = classify(field.table(), field.images())
    row = row_of(list_models(), "my-model")

    np.testing.assert_array_equal(by_name["p_star"], by_path["p_star"])
    assert (row["source"], row["distribution"], row["target"]) == ("registered in code", "", str(model_dir))
    assert row["available"]


def test_model_registered_with_a_callable_is_called_only_when_used(register, model_dir):
    calls = []

    def weights_directory():
        calls.append(1)
        return model_dir

    register("lazy-model", weights_directory)
    assert calls == []

    model = load_model("lazy-model", device="cpu")

    assert calls == [1]
    assert model.name == "test"
    assert row_of(list_models(), "lazy-model")["target"].endswith(":" + weights_directory.__qualname__)


def test_registered_callable_that_fails_is_listed_unavailable(register):
    def weights_directory():
        raise OSError("disk not mounted")

    register("failing-model", weights_directory)

    with pytest.warns(StarGalaxyWarning, match=r"'failing-model' \(a model registered in code"):
        row = row_of(list_models(), "failing-model")
    assert not row["available"]
    assert row["reason"] == "OSError: disk not mounted"
    with pytest.raises(ValueError, match=r"'failing-model'.*disk not mounted"):
        load_model("failing-model", device="cpu")


def test_registering_a_name_of_an_entry_point_is_an_error_naming_both_unless_forced(site, register, tmp_path):
    site.install({"survey-good": "plugin_models:good"})
    other = tmp_path / "other"
    torch.manual_seed(5)
    net = StarGalaxyNet(2, len(FEATURE_NAMES), branches=("catalog",))
    save_weights(
        net,
        other,
        metadata={
            "name": "other",
            "bands": ["g", "r"],
            "stamp_size": 32,
            "feature_names": list(FEATURE_NAMES),
        },
    )

    with pytest.raises(
        ValueError, match=r"'survey-good' is already taken by entry point .* survey-models 2\.1"
    ) as error:
        register_model("survey-good", other)
    assert str(other) in str(error.value)
    assert load_model("survey-good", device="cpu").name == "test"

    register("survey-good", other, force=True)
    assert load_model("survey-good", device="cpu").name == "other"
    assert row_of(list_models(), "survey-good")["source"] == "registered in code"

    unregister_model("survey-good")  # the installed package's model comes back
    assert load_model("survey-good", device="cpu").name == "test"
    assert row_of(list_models(), "survey-good")["source"] == "entry point"


def test_the_bundled_name_and_a_name_registered_in_code_are_protected_too(register, model_dir):
    with pytest.raises(ValueError, match="already taken by the bundled model"):
        register_model(DEFAULT_MODEL, model_dir)
    register("mine", model_dir)
    with pytest.raises(ValueError, match="'mine' is already taken by a model registered in code") as error:
        register_model("mine", model_dir)
    assert f"(target {model_dir})" in str(error.value)


@pytest.mark.parametrize("name", ["", " padded", "a/b", "a\\b", 3, None])
def test_names_that_could_pass_for_paths_or_are_not_text_are_refused(name, model_dir):
    with pytest.raises(ValueError, match="model name must be"):
        register_model(name, model_dir)


def test_a_target_that_is_no_weights_directory_is_refused_at_registration(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        register_model("nowhere-model", tmp_path / "nowhere")
    with pytest.raises(TypeError, match="weights directory or a callable"):
        register_model("number-model", 42)
    assert "nowhere-model" not in list_models()["name"]


def test_only_models_registered_in_code_can_be_unregistered():
    with pytest.raises(ValueError, match="it comes from the bundled model"):
        unregister_model(DEFAULT_MODEL)
    with pytest.raises(ValueError, match="no model has that name"):
        unregister_model("never-registered")


def test_a_name_that_is_also_an_existing_folder_is_refused_as_ambiguous(
    register, model_dir, tmp_path, monkeypatch
):
    register("local-model", model_dir)
    shutil.copytree(model_dir, tmp_path / "local-model")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ValueError, match=r"both a registered model .* and an existing path"):
        load_model("local-model", device="cpu")
    assert load_model("./local-model", device="cpu").name == "test"
    assert load_model(Path("local-model"), device="cpu").name == "test"


# --- command line --------------------------------------------------------------------------------


@pytest.fixture
def catalog_and_images(field, tmp_path):
    catalog = tmp_path / "catalog.ecsv"
    field.table().write(catalog)
    image_options = []
    for band in ("g", "r", "i"):
        path = tmp_path / f"{band}.fits"
        fits.HDUList([fits.PrimaryHDU(field.data[band], field.header())]).writeto(path)
        image_options += ["--image", f"{band}={path}"]
    return catalog, image_options


@pytest.mark.parametrize("option", ["--model", "--weights"])
def test_cli_classify_selects_an_installed_model_by_name(
    site, catalog_and_images, classify, field, tmp_path, option
):
    site.install({"survey-good": "plugin_models:good"})
    catalog, image_options = catalog_and_images
    output = tmp_path / "out.ecsv"

    status = main(
        [
            "classify",
            str(catalog),
            *image_options,
            option,
            "survey-good",
            "--device",
            "cpu",
            "-o",
            str(output),
        ]
    )

    expected = classify(field.table(), field.images(("g", "r", "i")))
    assert status == 0
    np.testing.assert_array_equal(Table.read(output)["p_star"], expected["p_star"])


def test_cli_classify_with_a_broken_model_exits_2_naming_it(site, catalog_and_images, tmp_path, capsys):
    site.install({"survey-broken": "plugin_models:raises"})
    catalog, image_options = catalog_and_images

    status = main(
        ["classify", str(catalog), *image_options, "--model", "survey-broken", "-o", str(tmp_path / "o.ecsv")]
    )

    assert status == 2
    assert (
        "'survey-broken' (entry point 'plugin_models:raises' of distribution survey-models 2.1)"
        in capsys.readouterr().err
    )


def test_cli_info_lists_every_model_with_its_source_and_why_one_is_unavailable(site, capsys):
    site.install({"survey-good": "plugin_models:good", "survey-broken": "plugin_models:raises"})

    with pytest.warns(StarGalaxyWarning, match="survey-broken"):
        assert main(["info"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"model {DEFAULT_MODEL} [bundled (astro_stargal ") for line in lines)
    assert (
        "model survey-good [entry point (survey-models 2.1)]: bands NUV u g r i z y, stamp 32 px"
        in "\n".join(lines)
    )
    assert (
        "model survey-broken [entry point (survey-models 2.1)]: unavailable: RuntimeError: plugin exploded"
        in lines
    )


# --- a real third-party package, built and installed with pip -------------------------------------

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny-stargal-plugin"
version = "1.2"

[project.entry-points."astro_stargal.models"]
tiny-gri = "tiny_stargal_plugin:weights_directory"
tiny-broken = "tiny_stargal_plugin.missing:weights_directory"

[tool.setuptools]
packages = ["tiny_stargal_plugin"]

[tool.setuptools.package-data]
tiny_stargal_plugin = ["weights/*"]
"""

PLUGIN_MODULE = """
\"\"\"A third party's star-galaxy model for g, r and i images, found by astro_stargal through its entry point.\"\"\"

from pathlib import Path


def weights_directory():
    return Path(__file__).parent / "weights"
"""

#: Run in a fresh interpreter that sees the installed plugin only through its entry points.
USE_THE_PLUGIN = """
import contextlib, io, json, sys, warnings

site, catalog, images, output = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
sys.path.insert(0, site)

from astropy.table import Table

import astro_stargal
from astro_stargal.cli import main

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    models = astro_stargal.list_models()
model = astro_stargal.load_model("tiny-gri", device="cpu")
result = astro_stargal.classify_sources(Table.read(catalog), images, weights="tiny-gri", device="cpu")
command = ["classify", catalog, "--model", "tiny-gri", "--device", "cpu", "-o", output]
command += [option for band, path in images.items() for option in ("--image", f"{band}={path}")]
with contextlib.redirect_stdout(io.StringIO()) as info, warnings.catch_warnings():
    warnings.simplefilter("ignore")
    status = main(command), main(["info"])
print(json.dumps({
    "models": [{name: str(row[name]) for name in models.colnames} for row in models],
    "warnings": [str(warning.message) for warning in caught],
    "model": [model.name, list(model.bands), model.stamp_size],
    "ids": result["id"].tolist(),
    "p_star": result["p_star"].tolist(),
    "cli_p_star": Table.read(output)["p_star"].tolist(),
    "status": list(status),
    "info": info.getvalue(),
}))
"""

BUILD_TOOLS_MISSING = [name for name in ("pip", "setuptools") if importlib.util.find_spec(name) is None]


@pytest.mark.skipif(
    bool(BUILD_TOOLS_MISSING), reason=f"building the plugin package needs {BUILD_TOOLS_MISSING}"
)
def test_a_package_installed_with_pip_registers_a_model_that_classifies_by_name(tmp_path, make_field):
    source = tmp_path / "tiny_stargal_plugin_source"
    package = source / "tiny_stargal_plugin"
    package.mkdir(parents=True)
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (package / "__init__.py").write_text(PLUGIN_MODULE)
    torch.manual_seed(7)
    net = StarGalaxyNet(3, len(FEATURE_NAMES), backbone="resnet18")
    metadata = {
        "name": "tiny-gri",
        "bands": ["g", "r", "i"],
        "stamp_size": 24,
        "pixel_scale": PIXEL_SCALE,
        "feature_names": list(FEATURE_NAMES),
    }
    save_weights(net, package / "weights", metadata=metadata)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    field = make_field(
        (96, 96),
        [(30.2, 40.7, 4000.0), (60.5, 55.1, 6000.0, 3.0), (70.0, 20.3, 2000.0)],
        bands=("g", "r", "i"),
    )
    catalog = tmp_path / "catalog.ecsv"
    field.table().write(catalog)
    images = {}
    for band in field.bands:
        images[band] = str(tmp_path / f"{band}.fits")
        fits.PrimaryHDU(field.data[band], field.header()).writeto(images[band])
    script = tmp_path / "use_the_plugin.py"
    script.write_text(USE_THE_PLUGIN)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    run = subprocess.run(
        [
            sys.executable,
            str(script),
            str(site),
            str(catalog),
            json.dumps(images),
            str(tmp_path / "out.ecsv"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    models = {row["name"]: row for row in report["models"]}
    tiny = models["tiny-gri"]
    assert (tiny["source"], tiny["distribution"], tiny["available"]) == (
        "entry point",
        "tiny-stargal-plugin 1.2",
        "True",
    )
    assert (tiny["bands"], tiny["stamp_size"]) == ("g r i", "24")
    assert (
        Path(tiny["path"]) == site / "tiny_stargal_plugin" / "weights"
    )  # the installed copy, not the source
    assert models[DEFAULT_MODEL]["source"] == "bundled"
    assert models["tiny-broken"]["available"] == "False"
    assert "ModuleNotFoundError" in models["tiny-broken"]["reason"]
    assert any(
        "'tiny-broken'" in message and "tiny-stargal-plugin 1.2" in message for message in report["warnings"]
    )
    assert report["model"] == ["tiny-gri", ["g", "r", "i"], 24]
    assert report["ids"] == [1, 2, 3]
    p_star = np.array(report["p_star"])
    assert np.all((p_star >= 0) & (p_star <= 1))
    np.testing.assert_array_equal(report["cli_p_star"], p_star)
    assert report["status"] == [0, 0]
    assert (
        "model tiny-gri [entry point (tiny-stargal-plugin 1.2)]: bands g r i, stamp 24 px" in report["info"]
    )
