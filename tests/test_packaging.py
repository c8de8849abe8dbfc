"""The wheel carries the bundled model and the demo data, and finds them once installed."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(directory), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(directory.glob("astro_stargal-*.whl"))


def test_wheel_contains_the_bundled_weights_and_demo_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "astro_stargal/_bundled_weights/model.json",
        "astro_stargal/_bundled_weights/model.safetensors",
        "astro_stargal/_bundled_weights/csst-fast/model.json",
        "astro_stargal/_bundled_weights/csst-fast/model.safetensors",
        "astro_stargal/data/demo_field.fits",
        "astro_stargal/data/demo_truth.ecsv",
    ):
        assert required in names


def test_installed_wheel_finds_and_loads_its_bundled_model(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import astro_stargal, astro_stargal.models as w;"
        "assert astro_stargal.__file__.startswith(sys.argv[1]), astro_stargal.__file__;"
        "print(w.bundled_model()); print(w.load_model(device='cpu').name);"
        "print(w.fast_model()); print(w.load_model(w.fast_model(), device='cpu').name)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    directory, name, fast_directory, fast_name = result.stdout.split()
    assert Path(directory) == target / "astro_stargal" / "_bundled_weights"
    assert name == "csst-resnet50-bilstm"
    assert Path(fast_directory) == target / "astro_stargal" / "_bundled_weights" / "csst-fast"
    assert fast_name == "csst-fast"
