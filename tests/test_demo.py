"""Specifications of astro_stargal.demo, with a small random model instead of the trained one."""

import importlib.resources
import warnings

import numpy as np
import pytest
from astropy.table import Table

from astro_stargal import SourceFlag, StarGalaxyWarning, classify_sources, load_model
from astro_stargal.demo import (
    DEMO_IMAGES,
    DEMO_PSF,
    DEMO_SOURCE_COLUMNS,
    DEMO_TRUTH,
    run_demo,
    write_demo_files,
)
from astro_stargal.instrument import band_order
from astro_stargal.models import StarGalaxyNet, save_weights
from astro_stargal.pipeline import FEATURE_NAMES
from astro_stargal.psf import read_psf_file

pytest.importorskip("matplotlib").use("Agg")

DATA = importlib.resources.files("astro_stargal.data")
pytestmark = pytest.mark.skipif(
    not (DATA.joinpath(DEMO_IMAGES).is_file() and DATA.joinpath(DEMO_TRUTH).is_file()),
    reason="bundled demo data (astro_stargal/data/demo_field.fits, demo_truth.ecsv) not generated yet",
)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    net = StarGalaxyNet(7, len(FEATURE_NAMES), backbone="resnet18")
    metadata = {
        "name": "test",
        "bands": list(band_order()),
        "stamp_size": 32,
        "feature_names": list(FEATURE_NAMES),
    }
    return save_weights(net, tmp_path_factory.mktemp("weights"), metadata=metadata)


def test_run_demo_writes_table_figure_and_summary(tmp_path, random_weights):
    with warnings.catch_warnings():
        warnings.simplefilter("error", StarGalaxyWarning)  # the demo's PSF is given: nothing to warn about
        table_path, figure_path, summary = run_demo(tmp_path / "out", device="cpu", weights=random_weights)
    assert table_path.name == "demo_classified.ecsv" and figure_path.name == "demo_field.png"
    assert figure_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    classified = Table.read(table_path)
    truth = Table.read(DATA.joinpath(DEMO_TRUTH))
    assert len(classified) == len(truth)
    assert {"p_star", "sg_class", "sg_flags", "label"} <= set(classified.colnames)
    assert f"{len(truth)} sources" in summary and "accuracy" in summary
    assert not np.any(classified["sg_flags"] & SourceFlag.PSF_UNMEASURED)


def test_the_bundled_demo_psf_is_the_fields_psf_and_inside_the_bundled_models_range():
    """The demo field has too few stars to measure its PSF, so its PSF ships with it (issue 15)."""
    validity = load_model(device="cpu").validity
    with importlib.resources.as_file(DATA.joinpath(DEMO_PSF)) as path:
        for band in band_order():
            psf = read_psf_file(f"{path}[{band}]")
            fwhm = float(psf.fwhm[0]) * 0.074
            low, high = validity["psf_fwhm"][band]
            assert low <= fwhm <= high, (band, fwhm)
            assert float(psf.ellipticity[0]) < 0.01
        with pytest.raises(ValueError, match="no extension 'H'"):
            read_psf_file(f"{path}[H]")


def test_cli_demo_passes_through(tmp_path, random_weights, monkeypatch, capsys):
    from astro_stargal import cli, demo

    original = demo.run_demo
    monkeypatch.setattr(
        demo, "run_demo", lambda path, device=None: original(path, device="cpu", weights=random_weights)
    )
    assert cli.main(["demo", "-o", str(tmp_path)]) == 0
    assert "demo_field.png" in capsys.readouterr().out


def test_written_demo_files_are_a_catalog_and_one_image_per_band_that_classify_as_the_bundled_field(
    tmp_path, random_weights
):
    """Issue 15: the README's examples used files (sources.ecsv, g.fits) that did not exist."""
    sources_path, image_paths = write_demo_files(tmp_path)

    sources = Table.read(sources_path)
    assert sources.colnames == list(DEMO_SOURCE_COLUMNS) and sources["ra"].unit == "deg"
    assert list(image_paths) == list(band_order())
    truth = Table.read(DATA.joinpath(DEMO_TRUTH))
    with importlib.resources.as_file(DATA.joinpath(DEMO_PSF)) as bundled:
        psf_in_bundle = {band: read_psf_file(f"{bundled}[{band}]") for band in band_order()}
    psf_in_files = {band: path.with_suffix(".psf.fits") for band, path in image_paths.items()}
    with importlib.resources.as_file(DATA.joinpath(DEMO_IMAGES)) as bundled:
        from_bundle = classify_sources(
            truth,
            {band: f"{bundled}[{band}]" for band in band_order()},
            weights=random_weights,
            device="cpu",
            psf=psf_in_bundle,
        )
    from_files = classify_sources(
        sources, image_paths, weights=random_weights, device="cpu", psf=psf_in_files
    )
    np.testing.assert_array_equal(from_files["p_star"], from_bundle["p_star"])
    np.testing.assert_array_equal(from_files["sg_flags"], from_bundle["sg_flags"])


def test_demo_files_are_not_overwritten_unless_asked(tmp_path):
    sources_path, _ = write_demo_files(tmp_path)
    sources_path.write_text("my own catalog")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_demo_files(tmp_path)
    assert sources_path.read_text() == "my own catalog"
    write_demo_files(tmp_path, overwrite=True)
    assert len(Table.read(sources_path)) > 100


def test_cli_writes_the_demo_files_and_says_how_to_classify_them(tmp_path, capsys):
    from astro_stargal import cli

    assert cli.main(["demo", "--write-data", str(tmp_path / "example")]) == 0
    out = capsys.readouterr().out
    assert f"astro-stargal classify {tmp_path / 'example' / 'sources.ecsv'}" in out
    assert sorted(path.name for path in (tmp_path / "example").iterdir()) == sorted(
        [
            "sources.ecsv",
            *(f"{band}.fits" for band in band_order()),
            *(f"{band}.psf.fits" for band in band_order()),
        ]
    )
    assert cli.main(["demo", "--write-data", str(tmp_path / "example")]) == 2
    assert "pass --overwrite to replace them" in capsys.readouterr().err
