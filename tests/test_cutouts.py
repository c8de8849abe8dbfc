"""`extract_stamps` cuts exactly what ``photutils.utils.CutoutImage(mode='partial')`` cuts."""

import numpy as np
import pytest
from astropy.nddata import NoOverlapError
from photutils.utils import CutoutImage

from astro_stargal.pipeline import extract_stamps, stamp_origin

IMAGE_SHAPE = (23, 29)


def reference_stamp(data, x, y, stamp_size):
    """The photutils cutout as float32, NaN-padded where it runs off the image."""
    cutout = CutoutImage(np.asarray(data, dtype=np.float64), (y, x), (stamp_size, stamp_size), mode="partial")
    return cutout.data.astype(np.float32)


def positions_to_test(stamp_size, rng):
    """Random positions over and around the image, plus its edges, corners and half-pixel ties."""
    ny, nx = IMAGE_SHAPE
    margin = stamp_size / 2 + 1
    x = rng.uniform(-margin, nx - 1 + margin, 300)
    y = rng.uniform(-margin, ny - 1 + margin, 300)
    # Half-integer positions hit the rounding tie of the stamp origin.
    x[:60] = np.round(x[:60] * 2) / 2
    y[:60] = np.round(y[:60] * 2) / 2
    corners_and_edges = np.array(
        [
            (0.0, 0.0),
            (nx - 1.0, 0.0),
            (0.0, ny - 1.0),
            (nx - 1.0, ny - 1.0),
            (-0.5, -0.5),
            (nx - 0.5, ny - 0.5),
            (nx / 2, 0.0),
            (nx / 2, ny - 1.0),
            (0.0, ny / 2),
            (nx - 1.0, ny / 2),
            (-stamp_size / 2 + 0.01, ny / 2),
            (nx / 2, ny - 1 + stamp_size / 2 - 0.01),
        ]
    )
    return np.concatenate([x, corners_and_edges[:, 0]]), np.concatenate([y, corners_and_edges[:, 1]])


@pytest.mark.parametrize("stamp_size", [1, 2, 5, 8, 9, 32])
def test_stamps_equal_photutils_cutouts_pixel_for_pixel(stamp_size):
    rng = np.random.default_rng(stamp_size)
    data = rng.normal(size=IMAGE_SHAPE)
    x, y = positions_to_test(stamp_size, rng)

    stamps, on_image = extract_stamps(data, x, y, stamp_size)

    compared = 0
    for stamp, on, xi, yi in zip(stamps, on_image, x, y, strict=True):
        try:
            expected = reference_stamp(data, xi, yi, stamp_size)
        except NoOverlapError:
            assert np.isnan(stamp).all() and not on.any()
            continue
        np.testing.assert_array_equal(stamp, expected, err_msg=f"position ({xi}, {yi})")
        np.testing.assert_array_equal(on, np.isfinite(expected))
        compared += 1
    assert compared > 100


def test_stamp_fully_off_image_is_all_padding_where_photutils_refuses():
    data = np.ones(IMAGE_SHAPE)
    far = np.array([-50.0, 200.0])

    stamps, on_image = extract_stamps(data, far, far[::-1], 8)

    assert np.isnan(stamps).all()
    assert not on_image.any()
    with pytest.raises(NoOverlapError):
        CutoutImage(data, (far[1], far[0]), (8, 8), mode="partial")


def test_non_finite_position_gives_all_padding_stamp():
    data = np.ones(IMAGE_SHAPE)
    stamps, on_image = extract_stamps(data, np.array([np.nan, 5.0]), np.array([3.0, np.inf]), 4)
    assert np.isnan(stamps).all()
    assert not on_image.any()


def test_stamp_origin_matches_the_documented_ceil_rule():
    x0, y0 = stamp_origin(np.array([10.3, 10.5, 4.0]), np.array([5.0, 5.5, -3.2]), 4)
    np.testing.assert_array_equal(x0, np.ceil(np.array([10.3, 10.5, 4.0]) - 2))
    np.testing.assert_array_equal(y0, np.ceil(np.array([5.0, 5.5, -3.2]) - 2))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, ">f4", ">f8", ">i4", np.float16])
def test_integer_and_big_endian_images_give_the_same_stamps(dtype):
    rng = np.random.default_rng(3)
    native = rng.integers(0, 1000, size=IMAGE_SHAPE).astype(np.float64)
    x, y = positions_to_test(7, rng)

    stamps, on_image = extract_stamps(native.astype(dtype), x, y, 7)
    expected, expected_on_image = extract_stamps(native, x, y, 7)

    assert stamps.dtype == np.float32
    np.testing.assert_array_equal(stamps, expected)
    np.testing.assert_array_equal(on_image, expected_on_image)


def test_masked_pixels_become_fill_value_but_stay_on_image():
    data = np.arange(100.0).reshape(10, 10)
    mask = np.zeros(data.shape, dtype=bool)
    mask[5, 5] = True

    stamps, on_image = extract_stamps(data, np.array([5.0]), np.array([5.0]), 4, mask=mask)

    expected = reference_stamp(data, 5.0, 5.0, 4)
    expected[2, 2] = np.nan
    np.testing.assert_array_equal(stamps[0], expected)
    assert on_image.all()


@pytest.mark.parametrize("mask_dtype", [bool, np.uint8, np.int64, np.float32])
def test_mask_of_any_dtype_marks_its_nonzero_pixels(mask_dtype):
    rng = np.random.default_rng(4)
    data = rng.normal(size=IMAGE_SHAPE)
    bad = rng.random(IMAGE_SHAPE) < 0.2
    x, y = positions_to_test(6, rng)

    stamps, _ = extract_stamps(data, x, y, 6, mask=bad.astype(mask_dtype))
    expected, _ = extract_stamps(np.where(bad, np.nan, data), x, y, 6)

    np.testing.assert_array_equal(stamps, expected)


def test_mask_on_a_non_contiguous_view_is_honoured():
    data = np.arange(144.0).reshape(12, 12)
    bad = np.zeros((12, 12), dtype=bool).T
    bad[6, 7] = True

    stamps, _ = extract_stamps(data, np.array([7.0]), np.array([6.0]), 3, mask=bad)

    assert np.isnan(stamps[0, 1, 1])
    assert np.isfinite(stamps[0]).sum() == 8


def test_custom_fill_value_pads_off_image_pixels():
    data = np.ones((5, 5))
    stamps, on_image = extract_stamps(data, np.array([0.0]), np.array([0.0]), 2, fill_value=-1.0)
    np.testing.assert_array_equal(stamps[0], [[-1.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_array_equal(on_image[0], [[False, False], [False, True]])
