"""The BLENDED flag: close catalogued neighbours of comparable brightness."""

import numpy as np
import pytest
from astropy.table import Table

from astro_stargal.flags import SourceFlag
from astro_stargal.instrument import PIXEL_SCALE
from astro_stargal.io import positions_from_table, read_images
from astro_stargal.pipeline import BLEND_RADIUS, find_blended

# Pairs 4 px (0.30") apart: equal; 2.5 mag apart; and two equal stars 10 px (0.74") apart.
SOURCES = (
    (30.0, 30.0, 4000.0),
    (34.0, 30.0, 4000.0),
    (90.0, 30.0, 4000.0),
    (90.0, 34.0, 400.0),
    (30.0, 90.0, 4000.0),
    (40.0, 90.0, 4000.0),
    (95.0, 95.0, 4000.0),
)
EXPECTED = np.array([True, True, False, True, False, False, False])


@pytest.fixture(scope="module")
def crowded(make_field):
    return make_field((128, 128), SOURCES, bands=("g", "r", "i"), noise=1.0)


def _blended(field, table, **kwargs):
    band_images = read_images(field.pairs(), field.bands, zeropoints=field.zeropoints)
    return find_blended(band_images, positions_from_table(table), field.bands, PIXEL_SCALE, **kwargs)


def test_close_pairs_of_comparable_brightness_are_blended_but_not_the_bright_partner(crowded):
    assert np.array_equal(_blended(crowded, crowded.table()), EXPECTED)


def test_sky_and_pixel_positions_give_the_same_answer(crowded):
    assert np.array_equal(_blended(crowded, crowded.pixel_table()), EXPECTED)


def test_radius_and_contrast_are_honoured(crowded):
    wide = _blended(crowded, crowded.table(), radius=0.8)
    assert wide[4] and wide[5], "0.74 arcsec apart: blended within 0.8 arcsec"
    tolerant = _blended(crowded, crowded.table(), contrast=3.0)
    assert tolerant[2], "the 2.5 mag fainter neighbour counts with a 3 mag contrast"
    assert BLEND_RADIUS < 0.74


def test_bad_and_off_image_positions_are_never_blended(crowded):
    table = crowded.pixel_table()
    table["x"][1] = np.nan  # the partner of source 0 loses its position
    table.add_row({"id": 99, "x": -30.0, "y": -30.0})
    table.add_row({"id": 100, "x": -30.0, "y": -32.0})  # an off-image pair
    blended = _blended(crowded, table)
    assert not blended[0] and not blended[1]
    assert not blended[-1] and not blended[-2]


def test_a_lone_source_and_an_empty_table_are_not_blended(crowded):
    assert not _blended(crowded, crowded.pixel_table()[6:7]).any()
    assert _blended(crowded, Table({"x": np.zeros(0), "y": np.zeros(0)})).shape == (0,)


def test_classify_sources_sets_the_flag_and_keeps_the_classification(crowded, classify):
    out = classify(crowded.table(), crowded.images())
    flagged = (np.asarray(out["sg_flags"]) & SourceFlag.BLENDED) > 0
    assert np.array_equal(flagged, EXPECTED)
    assert np.all(np.isfinite(out["p_star"])), "BLENDED warns; the source is still classified"


def test_a_duplicated_row_flags_both_copies(crowded):
    table = crowded.pixel_table()[6:7]
    table.add_row(table[0])
    assert _blended(crowded, table).tolist() == [True, True]


def test_matches_a_brute_force_search_on_a_random_table_with_duplicated_rows(crowded):
    from astro_stargal.pipeline import pixel_positions_by_band
    from astro_stargal.pipeline._neighbours import MAX_NEIGHBOURS, box_fluxes

    rng = np.random.default_rng(4)
    x, y = rng.uniform(2, 125, 100), rng.uniform(2, 125, 100)
    copies = rng.integers(0, 100, 12)  # 12 duplicated rows
    table = Table({"x": np.concatenate([x, x[copies]]), "y": np.concatenate([y, y[copies]])})
    band_images = read_images(crowded.pairs(), crowded.bands, zeropoints=crowded.zeropoints)
    positions = positions_from_table(table)
    result = find_blended(band_images, positions, crowded.bands, PIXEL_SCALE)

    flux, noise = box_fluxes(band_images, pixel_positions_by_band(band_images, positions, crowded.bands))
    best = np.argmax(flux / noise, axis=1)
    separation = np.hypot(
        table["x"][:, None] - table["x"][None, :], table["y"][:, None] - table["y"][None, :]
    )
    close = (separation < BLEND_RADIUS / PIXEL_SCALE) & ~np.eye(len(table), dtype=bool)
    assert close.sum(axis=1).max() < MAX_NEIGHBOURS, "the brute force below ignores crowding"
    rows = np.arange(len(table))
    bright_enough = flux[:, best].T >= 10 ** (-0.4 * 1.5) * flux[rows, best][:, None]
    expected = (close & bright_enough).any(axis=1)
    assert 20 < expected.sum() < len(table) - 20
    assert np.array_equal(result, expected)


def test_a_source_with_many_neighbours_is_blended_whatever_their_fluxes(crowded):
    from astro_stargal.pipeline import MAX_NEIGHBOURS

    angles = np.linspace(0, 2 * np.pi, MAX_NEIGHBOURS, endpoint=False)
    table = Table({"x": np.r_[95.0, 95.0 + 3 * np.cos(angles)], "y": np.r_[95.0, 95.0 + 3 * np.sin(angles)]})
    assert _blended(crowded, table)[0], "the bright source at (95, 95) amid 8 blank positions"
    assert not _blended(crowded, table[:MAX_NEIGHBOURS])[0], "one neighbour fewer: fluxes decide"


def test_unique_rows_equals_numpy_unique():
    from astro_stargal.pipeline._neighbours import _unique_rows

    rng = np.random.default_rng(2)
    points = rng.integers(0, 4, size=(500, 3)).astype(float)
    expected = np.unique(points, axis=0, return_index=True, return_inverse=True, return_counts=True)
    result = _unique_rows(points)
    for got, want in zip(result, expected, strict=True):
        assert np.array_equal(got, np.ravel(want) if want.ndim == 2 and want.shape[1] == 1 else want)
