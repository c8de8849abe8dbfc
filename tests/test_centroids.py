"""Positions as catalogs give them: each source is recentred on its light, within a bounded radius."""

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from astro_stargal import SourceFlag
from astro_stargal.instrument import PIXEL_SCALE
from astro_stargal.io import SourcePositions, read_images
from astro_stargal.pipeline import MAX_SHIFT, refine_positions, windowed_centroids


def _star_image(x, y, sigma=0.9, flux=3000.0, shape=(80, 80), noise=1.0, seed=0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.random.default_rng(seed).normal(0.0, noise, shape)
    for xs, ys in zip(np.atleast_1d(x), np.atleast_1d(y), strict=True):
        image += flux * np.exp(-((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    return image


def test_windowed_centroid_finds_the_light_from_an_offset_start():
    image = _star_image(40.3, 39.6)
    x, y = windowed_centroids(image, np.array([41.2]), np.array([38.9]), max_shift=2.7)
    assert abs(x[0] - 40.3) < 0.03 and abs(y[0] - 39.6) < 0.03


def test_a_centroid_beyond_the_radius_fails_instead_of_wandering():
    image = _star_image(40.0, 40.0)
    x, _ = windowed_centroids(image, np.array([43.5]), np.array([40.0]), max_shift=2.7)
    assert np.isnan(x[0])


@pytest.mark.parametrize("offset", [0.0, 0.037, 0.075, 0.15])
def test_pixel_positions_off_by_up_to_two_pixels_are_recentred(offset):
    truth_x, truth_y = 40.25, 39.7
    image = _star_image(truth_x, truth_y)
    images = read_images({"r": (image, None)}, ["r"], zeropoints={"r": 25.0})
    start_x, start_y = truth_x + offset / PIXEL_SCALE * 0.6, truth_y - offset / PIXEL_SCALE * 0.8
    where = SourcePositions(sky=None, x=np.array([start_x]), y=np.array([start_y]), valid=np.array([True]))
    refined, shift, flags = refine_positions(images, where, ["r"], pixel_scale=PIXEL_SCALE)
    assert abs(refined.x[0] - truth_x) < 0.05 and abs(refined.y[0] - truth_y) < 0.05
    assert shift[0] == pytest.approx(offset, abs=0.005)
    assert bool(flags[0] & SourceFlag.LARGE_SHIFT) == (offset > 0.1)


def test_sky_positions_are_recentred_through_the_wcs(make_wcs):
    wcs = make_wcs((80, 80))
    image = _star_image(40.25, 39.7)
    images = read_images({"r": (image, wcs)}, ["r"], zeropoints={"r": 25.0})
    truth = wcs.pixel_to_world(40.25, 39.7)
    start = truth.spherical_offsets_by(0.05 * u.arcsec, -0.04 * u.arcsec)
    where = SourcePositions(sky=SkyCoord([start.ra], [start.dec]), x=None, y=None, valid=np.array([True]))
    refined, shift, _ = refine_positions(images, where, ["r"], pixel_scale=PIXEL_SCALE)
    assert refined.sky[0].separation(truth).arcsec < 0.005
    assert shift[0] == pytest.approx(np.hypot(0.05, 0.04), abs=0.005)


def test_a_masked_core_keeps_the_table_position_and_is_flagged():
    image = _star_image(40.0, 40.0)
    mask = np.zeros(image.shape, bool)
    mask[39:42, 39:42] = True
    from astropy.nddata import NDData

    images = read_images({"r": NDData(image, mask=mask)}, ["r"], zeropoints={"r": 25.0})
    where = SourcePositions(sky=None, x=np.array([40.4]), y=np.array([40.0]), valid=np.array([True]))
    refined, shift, flags = refine_positions(images, where, ["r"], pixel_scale=PIXEL_SCALE)
    assert refined.x[0] == 40.4 and np.isnan(shift[0])
    assert flags[0] & SourceFlag.CENTROID_FAILED


def test_faint_sources_keep_their_position_without_a_flag():
    image = _star_image(40.0, 40.0, flux=5.0)
    images = read_images({"r": (image, None)}, ["r"], zeropoints={"r": 25.0})
    where = SourcePositions(sky=None, x=np.array([40.4]), y=np.array([40.0]), valid=np.array([True]))
    refined, shift, flags = refine_positions(images, where, ["r"], pixel_scale=PIXEL_SCALE)
    assert refined.x[0] == 40.4 and np.isnan(shift[0]) and flags[0] == 0


def test_classify_reports_the_offset_and_recentre_false_uses_the_table_positions(classify, field):
    table = field.pixel_table()
    table["x"][0] += 0.6  # a catalog position off by 0.6 px (0.044")
    recentred = classify(table, field.images())
    as_given = classify(table, field.images(), recentre=False)
    assert recentred["sg_offset"].unit == u.arcsec
    assert recentred["sg_offset"][0] == pytest.approx(0.6 * PIXEL_SCALE, abs=0.01)
    assert np.isnan(as_given["sg_offset"]).all()
    assert recentred["p_star"][0] != as_given["p_star"][0]


def test_the_search_radius_is_0p2_arcsec():
    assert MAX_SHIFT == 0.2
