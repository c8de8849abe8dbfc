"""The measuring pieces of ``benchmarks/colour_limit.py`` and ``benchmarks/colour_probe.py``.

The benchmark scripts are not part of the package, so they are loaded from
their files. What they quote in the model card rests on three things tested
here: the windowed template likelihood equals the plain sum over all
templates, a forced PSF fit returns the flux of an injected point source, and
SPREAD_MODEL is zero for a point source and positive for a small galaxy.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.special import logsumexp

galsim = pytest.importorskip("galsim")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # colour_probe imports colour_limit
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


colour_limit = _load("colour_limit")
colour_probe = _load("colour_probe")


@pytest.fixture(scope="module")
def noise():
    from astro_stargal.simulate import FieldConditions

    return colour_limit.PointSourceNoise(FieldConditions())


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


def _write_sky(directory, bands, sources, size=48):
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


def test_forced_psf_fit_returns_the_injected_flux(tmp_path, noise):
    psfs = {band: colour_limit.band_psf(band, _nominal()).effective for band in noise.bands}
    table = _write_sky(tmp_path, noise.bands, [(20.3, 24.8, psfs, 7.0), (44.0, 30.0, psfs, 1.0)])
    measured = colour_limit.forced_psf_fluxes(tmp_path, table, noise)
    np.testing.assert_allclose(measured[0], 7.0, rtol=0.01)
    assert np.isnan(measured[1]).all()  # too close to the edge for the fit box


def test_spread_model_is_zero_for_a_star_and_positive_for_a_compact_galaxy(tmp_path, noise):
    psfs = {band: colour_limit.band_psf(band, _nominal()).effective for band in noise.bands}
    galaxy = galsim.Exponential(half_light_radius=0.04)
    galaxies = {band: galsim.Convolve(galaxy, psf) for band, psf in psfs.items()}
    table = _write_sky(tmp_path, noise.bands, [(12.2, 12.6, psfs, 5.0), (32.0, 30.4, galaxies, 5.0)])
    spread = colour_probe.spread_model(tmp_path, table)
    assert np.abs(spread[0]).max() < 5e-4
    assert (spread[1] > 3e-3).all()


def _nominal():
    from astro_stargal.simulate import FieldConditions

    return FieldConditions()
