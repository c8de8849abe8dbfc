"""Catalog features: forced aperture photometry, asinh magnitudes, concentration and size."""

import numpy as np
import pytest
from photutils.aperture import CircularAperture, aperture_photometry

from astro_stargal.pipeline import (
    APERTURE_RADII,
    FEATURE_NAMES,
    extract_stamps,
    measure_features,
    stamp_origin,
)
from astro_stargal.pipeline._features import SUBPIXEL_STEPS

STAMP_SIZE = 32
ZEROPOINT = 25.0
MIDDLE_RADIUS = APERTURE_RADII[1]


def feature(features, name):
    return features[:, FEATURE_NAMES.index(name)]


def measure_at(image, x, y, *, noise=1.0):
    """Cut stamps at 0-based ``(x, y)`` and measure them as the pipeline does."""
    x, y = np.atleast_1d(x).astype(float), np.atleast_1d(y).astype(float)
    stamps, _ = extract_stamps(image, x, y, STAMP_SIZE)
    x0, y0 = stamp_origin(x, y, STAMP_SIZE)
    return measure_features(stamps, x - x0, y - y0, noise=noise, zeropoint=ZEROPOINT)


def aperture_flux(snr, noise=1.0):
    """The middle-aperture flux behind the returned S/N (S/N is flux over the sky noise in the aperture)."""
    return snr * noise * np.sqrt(np.pi) * MIDDLE_RADIUS


@pytest.mark.parametrize("sigma", [0.8, 1.5, 3.0])
def test_aperture_flux_equals_photutils_exact_aperture_on_the_full_image(make_field, sigma):
    # Positions on the 1/16-pixel grid of the cached masks, so no rounding is involved.
    rng = np.random.default_rng(int(sigma * 10))
    for _ in range(4):
        x, y = 40 + rng.integers(0, 8 * SUBPIXEL_STEPS, 2) / SUBPIXEL_STEPS
        image = make_field((96, 96), [(x, y, 2000.0, sigma)], bands=["r"], noise=0.0).data["r"]

        _, background, snr = measure_at(image, x, y)

        expected = aperture_photometry(
            image - background[0], CircularAperture((x, y), r=MIDDLE_RADIUS), method="exact"
        )
        np.testing.assert_allclose(aperture_flux(snr[0]), expected["aperture_sum"][0], rtol=1e-5)


def test_aperture_error_from_a_noise_map_equals_photutils_aperture_sum_err(make_field):
    rng = np.random.default_rng(12)
    x, y = 40 + rng.integers(0, 8 * SUBPIXEL_STEPS, 2) / SUBPIXEL_STEPS
    image = make_field((96, 96), [(x, y, 2000.0, 1.2)], bands=["r"], noise=0.0).data["r"]
    sigma = rng.uniform(0.5, 3.0, size=image.shape).astype(np.float32)
    sigma[int(y), int(x) + 1] = np.nan  # unknown noise adds nothing, as a masked pixel in photutils
    stamps, _ = extract_stamps(image, np.array([x]), np.array([y]), STAMP_SIZE)
    noise_stamps, _ = extract_stamps(sigma, np.array([x]), np.array([y]), STAMP_SIZE)
    x0, y0 = stamp_origin(np.array([x]), np.array([y]), STAMP_SIZE)

    _, background, snr = measure_features(stamps, x - x0, y - y0, noise=noise_stamps, zeropoint=ZEROPOINT)

    expected = aperture_photometry(
        image - background[0],
        CircularAperture((x, y), r=MIDDLE_RADIUS),
        error=np.nan_to_num(sigma),
        method="exact",
    )
    assert snr[0] == pytest.approx(expected["aperture_sum"][0] / expected["aperture_sum_err"][0], rel=1e-5)


def test_a_constant_noise_map_measures_as_the_same_single_noise(make_field):
    image = make_field((64, 64), [(31.3, 32.6, 3000.0)], bands=["r"], seed=1).data["r"]
    for noise in (1.0, 2.5):
        single = measure_at(image, 31.3, 32.6, noise=noise)
        mapped = measure_at(image, 31.3, 32.6, noise=np.full((1, STAMP_SIZE, STAMP_SIZE), noise, np.float32))
        for expected, result in zip(single, mapped, strict=True):
            np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)  # magnitudes to float32


def test_off_grid_positions_move_the_flux_by_much_less_than_its_noise(make_field):
    image = make_field((64, 64), [(30.37, 31.71, 2000.0)], bands=["r"], noise=0.0).data["r"]
    _, _, snr = measure_at(image, 30.37, 31.71)
    expected = aperture_photometry(image, CircularAperture((30.37, 31.71), r=MIDDLE_RADIUS), method="exact")
    noise_in_aperture = np.sqrt(np.pi) * MIDDLE_RADIUS
    assert abs(aperture_flux(snr[0]) - expected["aperture_sum"][0]) < 0.1 * noise_in_aperture


def test_forced_photometry_recovers_the_injected_flux_of_a_noisy_star(make_field):
    flux, sigma = 3000.0, 0.8
    fluxes = []
    for seed in range(5):
        image = make_field((64, 64), [(31.3, 32.6, flux, sigma)], bands=["r"], seed=seed).data["r"]
        _, _, snr = measure_at(image, 31.3, 32.6)
        fluxes.append(aperture_flux(snr[0]))

    enclosed = flux * (1 - np.exp(-(MIDDLE_RADIUS**2) / (2 * sigma**2)))
    error = np.sqrt(np.pi) * MIDDLE_RADIUS  # sky noise 1 per pixel
    assert np.all(np.abs(np.array(fluxes) - enclosed) < 4 * error)
    assert abs(np.mean(fluxes) - enclosed) < 4 * error / np.sqrt(len(fluxes))


def test_local_background_is_subtracted(make_field):
    image = make_field((64, 64), [(31.0, 32.0, 2000.0)], bands=["r"], noise=0.0).data["r"]
    _, _, snr_plain = measure_at(image, 31.0, 32.0)
    _, background, snr_offset = measure_at(image + 50.0, 31.0, 32.0)
    np.testing.assert_allclose(background, 50.0, rtol=1e-6)
    np.testing.assert_allclose(snr_offset, snr_plain, rtol=1e-5)


def test_asinh_magnitude_is_finite_and_decreasing_through_zero_and_negative_flux():
    fluxes = np.array([-500.0, -50.0, -1.0, 0.0, 1.0, 50.0, 500.0, 5e4])
    stamps = np.zeros((len(fluxes), STAMP_SIZE, STAMP_SIZE), dtype=np.float32)
    stamps[:, 16, 16] = fluxes

    features, _, snr = measure_features(
        stamps, np.full(len(fluxes), 16.0), np.full(len(fluxes), 16.0), noise=1.0, zeropoint=ZEROPOINT
    )

    mags = feature(features, "mag_aper")
    assert np.isfinite(features).all()
    assert np.all(np.diff(mags) < 0)
    np.testing.assert_allclose(snr, fluxes / (np.sqrt(np.pi) * MIDDLE_RADIUS))
    # Zero flux sits at the softening magnitude; bright sources follow Pogson magnitudes.
    np.testing.assert_allclose(mags[3], ZEROPOINT - 2.5 * np.log10(np.sqrt(np.pi) * MIDDLE_RADIUS), rtol=1e-6)
    np.testing.assert_allclose(mags[-1], ZEROPOINT - 2.5 * np.log10(5e4), atol=1e-3)


def test_concentration_and_size_separate_a_point_source_from_an_extended_one(make_field):
    star = (20.4, 20.6, 4000.0, 0.8)
    galaxy = (60.2, 60.3, 4000.0, 3.0)
    image = make_field((96, 96), [star, galaxy], bands=["r"], seed=2).data["r"]

    features, _, _ = measure_at(image, [star[0], galaxy[0]], [star[1], galaxy[1]])

    inner = feature(features, "concentration_inner")
    outer = feature(features, "concentration_outer")
    size = feature(features, "size")
    # A magnitude difference inner - total is smaller (closer to 0) for the more concentrated source.
    assert inner[0] < inner[1] - 0.5
    assert outer[0] < outer[1]
    assert size[0] < size[1]
    assert 0.5 < size[0] < 1.5


def test_round_source_has_small_ellipticity_and_elongated_one_large():
    yy, xx = np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - 16.0
    round_source = 1000 * np.exp(-(xx**2 + yy**2) / (2 * 1.5**2))
    elongated = 1000 * np.exp(-(xx**2 / (2 * 3.0**2) + yy**2 / (2 * 1.0**2)))
    stamps = np.stack([round_source, elongated]).astype(np.float32)

    features, _, _ = measure_features(
        stamps, np.full(2, 16.0), np.full(2, 16.0), noise=1.0, zeropoint=ZEROPOINT
    )

    ellipticity = feature(features, "ellipticity")
    assert ellipticity[0] < 0.01
    assert ellipticity[1] > 0.3


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_give_finite_features(bad):
    rng = np.random.default_rng(7)
    stamps = rng.normal(size=(2, STAMP_SIZE, STAMP_SIZE)).astype(np.float32)
    stamps[0, 14:18, 14:18] = bad
    stamps[1] = bad

    features, background, _ = measure_features(
        stamps, np.full(2, 16.0), np.full(2, 16.0), noise=1.0, zeropoint=ZEROPOINT
    )

    assert np.isfinite(features).all()
    assert np.isfinite(background[0])
