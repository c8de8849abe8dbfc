"""The two preparation kernels (NumPy on the CPU, PyTorch on a GPU) give the same network inputs."""

import dataclasses

import numpy as np
import pytest
import torch
from astropy.nddata import NDData
from astropy.table import Table

from astro_stargal.flags import SourceFlag
from astro_stargal.io import NoiseMap, SourcePositions, read_images
from astro_stargal.pipeline import (
    IMAGE_SOFTENING,
    BandConstants,
    DeviceImages,
    RawStamps,
    cut_stamps,
    extract_stamps,
    locate_sources,
    prepare_inputs,
    shared_grids,
)
from astro_stargal.pipeline._features import _local_background, _local_background_torch
from astro_stargal.pipeline._inputs import _finish_numpy, _finish_torch

STAMP = 32


@pytest.fixture(scope="module")
def awkward_sources(make_field, bands):
    """A field and pixel positions that exercise every flag: edges, masks, NaN, saturation, missing bands."""
    field = make_field(
        (120, 120),
        [
            (40.3, 50.7, 5000.0, 0.9),
            (80.0, 30.0, 9000.0, 2.5),
            (60.5, 90.2, 200.0, 1.2),
            (30.0, 30.0, 9e5, 0.8),
        ],
        seed=3,
    )
    pairs = field.pairs()
    # A NaN blob in g, a masked column in i (through a mask), and the r band left out.
    g_data = pairs["g"][0]
    g_data[48:52, 38:42] = np.nan
    i_data, i_wcs = pairs["i"]
    mask = np.zeros(i_data.shape, dtype=bool)
    mask[:, 79:81] = True
    images = {band: pair for band, pair in pairs.items() if band != "r"}
    images["i"] = NDData(i_data, wcs=i_wcs, mask=mask)
    band_images = read_images(images, bands, zeropoints=field.zeropoints)
    band_images["z"] = dataclasses.replace(band_images["z"], saturation=5000.0)
    rng = np.random.default_rng(5)
    x = np.concatenate([[40.3, 80.0, 60.5, 30.0, 2.0, 119.4, -3.0, 500.0, np.nan], rng.uniform(-10, 130, 60)])
    y = np.concatenate([[50.7, 30.0, 90.2, 30.0, 60.0, 118.9, 5.0, 10.0, 4.0], rng.uniform(-10, 130, 60)])
    valid = np.isfinite(x)
    positions = SourcePositions(sky=None, x=np.where(valid, x, np.nan), y=y, valid=valid)
    return band_images, positions


@pytest.fixture(scope="module")
def awkward_sources_with_noise_maps(awkward_sources, bands):
    """The same sources, with noise maps of every kind in some bands and a zero-weight chip gap in g."""
    band_images, positions = awkward_sources
    shape = band_images["g"].shape
    rng = np.random.default_rng(9)
    sigma = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
    weight = sigma**-2
    weight[:, 58:64] = 0.0  # a chip gap through the third source (x = 60.5)
    maps = {
        "g": NoiseMap(weight),
        "u": NoiseMap(sigma, kind="sigma"),
        "i": NoiseMap(np.square(sigma), kind="variance"),
    }
    with_maps = {
        band: dataclasses.replace(image, noise_map=maps.get(band)) for band, image in band_images.items()
    }
    return with_maps, positions


@pytest.mark.parametrize("noise_maps", [False, True], ids=["sky_noise", "noise_maps"])
def test_torch_kernel_equals_numpy_kernel(
    awkward_sources, awkward_sources_with_noise_maps, bands, noise_maps
):
    band_images, positions = awkward_sources_with_noise_maps if noise_maps else awkward_sources
    raw = cut_stamps(band_images, positions, bands, STAMP)
    constants = BandConstants.from_images(band_images, bands)

    reference = _finish_numpy(raw, constants)
    result = _finish_torch(raw, constants).numpy()

    np.testing.assert_array_equal(result.flags, reference.flags)
    np.testing.assert_allclose(result.catalog, reference.catalog, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(result.stamps, reference.stamps, rtol=1e-5, atol=1e-5)
    # Every flag set while preparing inputs is exercised by this field, so the comparison covers
    # each rule (the others are set before, by the centroids, or after, by classify_sources and
    # classify_tiles).
    seen = np.bitwise_or.reduce(reference.flags)
    set_elsewhere = (
        SourceFlag.TILE_FAILED,
        SourceFlag.LOW_SNR,
        SourceFlag.BLENDED,
        SourceFlag.LARGE_SHIFT,
        SourceFlag.CENTROID_FAILED,
        SourceFlag.PSF_OUT_OF_RANGE,
        SourceFlag.PSF_UNMEASURED,
    )
    for flag in SourceFlag:
        if flag not in set_elsewhere:
            assert seen & flag, f"{flag.name} not exercised"


@pytest.mark.parametrize("noise_maps", [False, True], ids=["sky_noise", "noise_maps"])
def test_a_cropped_image_is_the_centre_of_the_whole_one_and_the_features_do_not_change(
    awkward_sources, awkward_sources_with_noise_maps, bands, noise_maps
):
    band_images, positions = awkward_sources_with_noise_maps if noise_maps else awkward_sources
    raw = cut_stamps(band_images, positions, bands, 24)
    whole = _finish_numpy(raw, BandConstants.from_images(band_images, bands))
    constants = BandConstants.from_images(band_images, bands, image_crop=16)
    cropped = _finish_numpy(raw, constants)
    assert cropped.stamps.shape[-2:] == (16, 16)
    np.testing.assert_array_equal(cropped.stamps, whole.stamps[..., 4:20, 4:20])
    np.testing.assert_array_equal(cropped.catalog, whole.catalog)
    np.testing.assert_array_equal(cropped.flags, whole.flags)
    result = _finish_torch(raw, constants).numpy()
    np.testing.assert_allclose(result.stamps, cropped.stamps, rtol=1e-5, atol=1e-5)


def test_torch_background_is_the_numpy_nan_median():
    rng = np.random.default_rng(0)
    stamps = rng.normal(size=(6, STAMP, STAMP)).astype(np.float32)
    stamps[1, :4] = np.nan  # some ring pixels unusable
    stamps[2] = np.nan  # none usable: background 0
    stamps[3, ::2] = np.nan  # an even count of usable ring pixels
    stamps[4, 0, 0] = np.inf

    expected = _local_background(stamps)
    result = _local_background_torch(torch.from_numpy(stamps)).numpy()

    np.testing.assert_allclose(result[[0, 1, 3, 5]], expected[[0, 1, 3, 5]], rtol=1e-6)
    assert result[2] == expected[2] == 0.0


def test_prepare_inputs_gives_numpy_whatever_the_device(awkward_sources, bands):
    band_images, positions = awkward_sources
    inputs = prepare_inputs(band_images, positions, bands, STAMP)
    assert isinstance(inputs.stamps, np.ndarray)
    assert inputs.stamps.shape == (len(positions), 2 * len(bands), STAMP, STAMP)


def test_raw_stamps_slice_and_concatenate_back(awkward_sources_with_noise_maps, bands):
    band_images, positions = awkward_sources_with_noise_maps
    raw = cut_stamps(band_images, positions, bands, STAMP)
    joined = RawStamps.concatenate([raw[:10], raw[10:25], raw[25:]])
    for name in (
        "pixels",
        "x_in_stamp",
        "y_in_stamp",
        "origin",
        "centre_on_image",
        "position_valid",
        "noise",
    ):
        torch.testing.assert_close(getattr(joined, name), getattr(raw, name), equal_nan=True)


def test_bands_on_one_grid_are_transformed_once(field, bands):
    band_images = read_images(field.images(), bands)
    assert set(shared_grids(band_images, bands).values()) == {bands[0]}
    shifted = field.images()
    shifted["y"].header["CRPIX1"] += 3.0
    band_images = read_images(shifted, bands)
    same = shared_grids(band_images, bands)
    assert same["y"] == "y"
    assert same["z"] == bands[0]


@pytest.mark.parametrize("noise_maps", [False, True], ids=["sky_noise", "noise_maps"])
def test_stamps_cut_on_the_device_equal_stamps_cut_by_numpy(
    awkward_sources, awkward_sources_with_noise_maps, bands, noise_maps
):
    band_images, positions = awkward_sources_with_noise_maps if noise_maps else awkward_sources
    expected = cut_stamps(band_images, positions, bands, STAMP)
    located = locate_sources(band_images, positions, bands, STAMP)
    assert located.pixels is None
    result = DeviceImages(band_images, bands, STAMP, "cpu").cut(located)
    torch.testing.assert_close(result.pixels, expected.pixels, equal_nan=True, rtol=0, atol=0)
    assert (result.noise is None) == (expected.noise is None) == (not noise_maps)
    if noise_maps:
        torch.testing.assert_close(result.noise, expected.noise, equal_nan=True, rtol=0, atol=0)


def test_stamps_are_divided_by_each_pixels_own_sigma(awkward_sources_with_noise_maps, bands):
    band_images, positions = awkward_sources_with_noise_maps
    raw = cut_stamps(band_images, positions, bands, STAMP)
    inputs = prepare_inputs(band_images, positions, bands, STAMP)
    for band in ("g", "u", "i"):  # a weight, a sigma and a variance map
        index = bands.index(band)
        noise_map = band_images[band].noise_map
        # The noise stamps are the map's sigmas where the stamps fall.
        x, y = positions.pixel_positions(None)
        sigma_image = noise_map.sigma(noise_map.values)
        sigma, _ = extract_stamps(sigma_image, x, y, STAMP)
        np.testing.assert_array_equal(raw.noise.numpy()[:, index], sigma)
        # Each present stamp is asinh((pixel - background) / (3 sigma_pixel)).
        rows = np.flatnonzero(inputs.catalog[:, index, -1] == 1)
        pixels, sigma = raw.pixels.numpy()[rows, index], sigma[rows]
        background = _local_background(pixels)
        expected = np.arcsinh((pixels - background[:, None, None]) / (IMAGE_SOFTENING * sigma))
        valid = np.isfinite(pixels)
        assert valid.sum() > 1000
        np.testing.assert_allclose(inputs.stamps[rows, index][valid], expected[valid], rtol=1e-5, atol=1e-6)


def test_zero_weight_pixels_are_bad_pixels_and_a_source_in_the_gap_misses_the_band(
    awkward_sources_with_noise_maps, bands
):
    band_images, positions = awkward_sources_with_noise_maps
    raw = cut_stamps(band_images, positions, bands, STAMP)
    g = bands.index("g")
    origin_x = raw.origin.numpy()[:, g, 0]
    in_gap_columns = (np.arange(STAMP)[None, :] + origin_x[:, None] >= 58) & (
        np.arange(STAMP)[None, :] + origin_x[:, None] < 64
    )
    gap_pixels = np.broadcast_to(in_gap_columns[:, None, :], raw.pixels.numpy()[:, g].shape)
    assert gap_pixels.any()
    assert np.isnan(raw.pixels.numpy()[:, g][gap_pixels]).all()
    inputs = prepare_inputs(band_images, positions, bands, STAMP)
    third = 2  # at x = 60.5, in the gap: no valid central pixel in g
    assert inputs.catalog[third, g, -1] == 0
    assert inputs.flags[third] & SourceFlag.BAND_MISSING
    assert (
        inputs.flags[in_gap_columns.any(axis=1) & (inputs.catalog[:, g, -1] == 1)] & SourceFlag.BAD_PIXELS
    ).all()


def test_device_images_do_not_claim_a_cpu(awkward_sources):
    band_images, _ = awkward_sources
    assert not DeviceImages.fit(band_images, "cpu")


def test_classifying_from_device_held_images_gives_the_same_results(classify, wide_field_table, monkeypatch):
    """The GPU's path (images held on the device, stamps cut there) run on the CPU."""
    table, images, zeropoints = wide_field_table
    reference = classify(table, images, batch_size=8, zeropoints=zeropoints)
    monkeypatch.setattr(DeviceImages, "fit", staticmethod(lambda band_images, device, fraction=0.25: True))
    result = classify(table, images, batch_size=8, zeropoints=zeropoints)
    np.testing.assert_array_equal(result["p_star"], reference["p_star"])
    np.testing.assert_array_equal(result["sg_flags"], reference["sg_flags"])


@pytest.fixture
def wide_field_table(field):
    rng = np.random.default_rng(2)
    ny, nx = field.shape
    x = np.concatenate([field.x, rng.uniform(-20, nx + 20, 40), [np.nan]])
    y = np.concatenate([field.y, rng.uniform(-20, ny + 20, 40), [3.0]])
    return Table({"x": x, "y": y}), field.pairs(), field.zeropoints
