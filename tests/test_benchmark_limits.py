"""The ``benchmarks`` package: its measuring pieces, its house rules, and the documentation it makes.

What the model card quotes from ``benchmarks.colour_limit`` and
``benchmarks.colour_probe`` rests on three things tested here: the windowed
template likelihood equals the plain sum over all templates, a forced PSF fit
(`benchmarks.common`) returns the flux of an injected point source, and
SPREAD_MODEL is zero for a point source and positive for a small galaxy.

The scripts are a package run with ``python -m benchmarks.NAME``: they must
not edit the import path, reach into astro_stargal's private names, or
install anything; a missing program stops them with what to install. The
comparison page and the model card's tables must be what the committed
results give (``python -m benchmarks.make_docs_figures`` remakes them).
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.special import logsumexp

import benchmarks
from benchmarks import colour_limit, colour_probe, common, compare_peers, make_docs_figures

BENCHMARK_MODULES = sorted(info.name for info in pkgutil.iter_modules(benchmarks.__path__))


@pytest.fixture(scope="module")
def galsim():
    return pytest.importorskip("galsim")


@pytest.fixture(scope="module")
def noise(galsim):
    from astro_stargal.simulate import FieldConditions

    return common.PointSourceNoise(FieldConditions())


def test_windowed_likelihood_equals_the_sum_over_all_templates():
    rng = np.random.default_rng(0)
    templates = rng.uniform(0.5, 5.0, size=(3000, 4))
    observed = templates[:700] + rng.normal(0.0, 0.1, size=(700, 4))
    sigma = rng.uniform(0.05, 0.2, size=observed.shape)
    direct = logsumexp(
        -0.5 * (((observed[:, None, :] - templates[None, :, :]) / sigma[:, None, :]) ** 2).sum(axis=2), axis=1
    )
    windowed = colour_limit.log_likelihood(observed, sigma, templates, r_index=1)
    np.testing.assert_allclose(windowed, direct, rtol=1e-9, atol=1e-9)


def _write_sky(galsim, directory, bands, sources, size=48):
    """One tile: each source a (x, y, unit-flux GalSim profile per band, flux) drawn noiselessly."""
    from astro_stargal.instrument import PIXEL_SCALE

    for band in bands:
        image = galsim.ImageF(size, size, scale=PIXEL_SCALE)
        for x, y, profiles, flux in sources:
            profiles[band].withFlux(flux).drawImage(
                image=image, add_to_image=True, center=galsim.PositionD(x + 1, y + 1), method="no_pixel"
            )
        fits.PrimaryHDU(image.array).writeto(directory / f"tile0_{band}.fits")
    return Table({"tile": [0] * len(sources), "x": [s[0] for s in sources], "y": [s[1] for s in sources]})


def _nominal():
    from astro_stargal.simulate import FieldConditions

    return FieldConditions()


def test_forced_psf_fit_returns_the_injected_flux(tmp_path, galsim, noise):
    psfs = {band: common.band_psf(band, _nominal()).effective for band in noise.bands}
    table = _write_sky(galsim, tmp_path, noise.bands, [(20.3, 24.8, psfs, 7.0), (44.0, 30.0, psfs, 1.0)])
    measured = common.forced_psf_fluxes(tmp_path, table, noise)
    np.testing.assert_allclose(measured[0], 7.0, rtol=0.01)
    assert np.isnan(measured[1]).all()  # too close to the edge for the fit box


def test_spread_model_is_zero_for_a_star_and_positive_for_a_compact_galaxy(tmp_path, galsim, noise):
    psfs = {band: common.band_psf(band, _nominal()).effective for band in noise.bands}
    galaxy = galsim.Exponential(half_light_radius=0.04)
    galaxies = {band: galsim.Convolve(galaxy, psf) for band, psf in psfs.items()}
    table = _write_sky(galsim, tmp_path, noise.bands, [(12.2, 12.6, psfs, 5.0), (32.0, 30.4, galaxies, 5.0)])
    spread = colour_probe.spread_model(tmp_path, table)
    assert np.abs(spread[0]).max() < 5e-4
    assert (spread[1] > 3e-3).all()


# --------------------------------------------------------------------------
# House rules
# --------------------------------------------------------------------------


def _violations(path):
    """What breaks the house rules in one benchmark file: import-path edits, private names, installs."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
            found.append(f"line {node.lineno}: sys.path")
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if any(part.startswith("_") for part in module.split(".")):
                found.append(f"line {node.lineno}: imports from the private module {module}")
            private = [alias.name for alias in node.names if alias.name.startswith("_")]
            if private:
                found.append(f"line {node.lineno}: imports the private names {private}")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(part.startswith("_") for part in alias.name.split(".")):
                    found.append(f"line {node.lineno}: imports the private module {alias.name}")
        if isinstance(node, ast.Constant) and node.value in ("apt-get", "apt", "pip", "conda"):
            found.append(f"line {node.lineno}: runs the installer {node.value!r}")
    return found


@pytest.mark.parametrize("name", BENCHMARK_MODULES)
def test_benchmark_edits_no_import_path_imports_no_private_name_and_installs_nothing(name):
    path = Path(benchmarks.__path__[0]) / f"{name}.py"
    assert _violations(path) == []


def test_the_rule_check_finds_each_kind_of_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sys\nsys.path.insert(0, '.')\n"
        "from astro_stargal.simulate._psf import build_band_psf\n"
        "from benchmarks.benchmark_memory import _checkout_weights\n"
        "import subprocess\nsubprocess.run(['apt-get', 'install', 'psfex'])\n"
    )
    assert len(_violations(bad)) == 4


@pytest.mark.parametrize("name", [name for name in BENCHMARK_MODULES if name != "common"])
def test_every_script_shows_its_help(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_a_missing_program_stops_the_script_with_what_to_install():
    with pytest.raises(common.MissingPrerequisite, match=r"no-such-program.*apt-get install no-such-program"):
        common.require_program(("no-such-program",), "apt-get install no-such-program")


def test_a_missing_python_package_stops_the_script_with_what_to_install():
    with pytest.raises(SystemExit, match=r"'no_such_package'.*pip install no_such_package"):
        common.require_module("no_such_package", "pip install no_such_package")


# --------------------------------------------------------------------------
# The documentation the benchmarks make
# --------------------------------------------------------------------------


def test_the_comparison_page_is_what_the_committed_results_give(tmp_path):
    table = Table.read(compare_peers.TABLE_PATH)
    compare_peers.write_markdown(table, table.meta, tmp_path / "comparison.md")
    assert (tmp_path / "comparison.md").read_text() == compare_peers.MARKDOWN_PATH.read_text()


def test_the_model_card_shows_every_table_as_the_committed_results_give_it():
    card = make_docs_figures.MODEL_CARD.read_text()
    missing = [title for title, table in make_docs_figures.model_card_tables() if table not in card]
    assert missing == []


def test_the_comparison_figure_is_drawn_from_the_rates_kept_per_magnitude(tmp_path):
    rng = np.random.default_rng(1)
    is_star = rng.random(400) < 0.3
    matched = Table(
        {
            "label": np.where(is_star, "star", "galaxy"),
            "mag_r": rng.uniform(17.0, 27.0, 400),
            "p_star": is_star.astype(float),
            "p_star_r_only": np.where(rng.random(400) < 0.9, is_star, ~is_star).astype(float),
            "CLASS_STAR": np.where(is_star, 0.9, 0.1),
            "SPREAD_MODEL": np.where(is_star, 0.0, 0.01),
            "SPREADERR_MODEL": np.full(400, 0.001),
        }
    )
    by_magnitude = compare_peers.rates_by_magnitude(matched)
    perfect = by_magnitude[by_magnitude["method"] == "astro_stargal (7 bands)"]
    assert (perfect["error_rate"] == 0).all()
    assert perfect["n_stars"].sum() == is_star.sum()
    assert perfect["n_galaxies"].sum() == (~is_star).sum()
    r_only = by_magnitude[by_magnitude["method"] == "astro_stargal (r only)"]
    assert 0 < np.mean(r_only["error_rate"]) < 0.25
    by_magnitude.write(tmp_path / "by_magnitude.ecsv")
    compare_peers.plot_comparison(Table.read(tmp_path / "by_magnitude.ecsv"), tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
