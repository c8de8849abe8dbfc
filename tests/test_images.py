"""Specifications of astro_stargal.io.read_images: the sky noise, weight maps and band names."""

import numpy as np
from astropy.stats import mad_std

from astro_stargal.io import read_images

BANDS = ("NUV", "u", "g", "r", "i", "z", "y")


# --- the sky noise --------------------------------------------------------------------------------


def test_sky_noise_is_astropy_mad_std_of_the_usable_pixels():
    rng = np.random.default_rng(4)
    data = rng.normal(0.0, 2.0, size=(300, 300)).astype(np.float32)
    data[:10] = np.nan  # NaN rows are ignored
    image = read_images({"r": (data, None)}, BANDS, zeropoints={"r": 25.0})["r"]
    assert image.noise == mad_std(data.astype(np.float64), ignore_nan=True)


def test_sky_noise_of_a_large_image_comes_from_a_regular_sample_close_to_the_truth():
    rng = np.random.default_rng(5)
    data = rng.normal(0.0, 0.5, size=(1500, 1500)).astype(np.float32)  # 2.25 Mpx: every 3rd pixel
    image = read_images({"r": (data, None)}, BANDS, zeropoints={"r": 25.0})["r"]
    assert image.noise == mad_std(data[::3, ::3].astype(np.float64))
    # 250,000 sampled pixels: the MAD's own scatter is 0.2 percent.
    assert abs(image.noise / 0.5 - 1) < 0.01
