"""Streaming: memory bounded by the chunk, not the table; chunking and workers never change results."""

import mmap
import tracemalloc

import numpy as np
import pytest
from astropy.table import Table

from astro_stargal import classify_sources
from astro_stargal.io import positions_from_table, read_images
from astro_stargal.models import load_model
from astro_stargal.pipeline import aperture_masks, predict_sources

#: Side of the field the streaming tests scatter sources over.
FIELD_SIDE = 160


@pytest.fixture(scope="module")
def wide_field(make_field):
    return make_field((FIELD_SIDE, FIELD_SIDE), [(80.0, 80.0, 3000.0)], seed=7)


def _random_pixel_table(n_sources, seed=0):
    rng = np.random.default_rng(seed)
    # A few sources off the image and a few with bad positions exercise the unclassifiable paths.
    x = rng.uniform(-20, FIELD_SIDE + 20, n_sources)
    y = rng.uniform(-20, FIELD_SIDE + 20, n_sources)
    x[::97] = np.nan
    return Table({"x": x, "y": y})


def _peak_bytes_of_chunk_loop(model, band_images, positions):
    tracemalloc.start()
    try:
        predict_sources(model, band_images, positions, batch_size=4, chunk_size=8, workers=1, progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_table_length(model_dir, wide_field):
    model = load_model(model_dir, device="cpu")
    band_images = read_images(wide_field.pairs(), model.bands, zeropoints=wide_field.zeropoints)
    short = positions_from_table(_random_pixel_table(80))
    long = positions_from_table(_random_pixel_table(320))
    aperture_masks(model.stamp_size)  # a cache, filled outside the comparison
    peak_short = _peak_bytes_of_chunk_loop(model, band_images, short)
    peak_long = _peak_bytes_of_chunk_loop(model, band_images, long)
    # 4x the sources adds only the two output columns (8 bytes per source) to the peak.
    assert peak_long < 1.2 * peak_short + 8 * 320


@pytest.mark.parametrize(("chunk_size", "workers"), [(5, 0), (16, 1), (7, 3)])
def test_chunked_and_threaded_results_equal_unchunked(classify, wide_field, chunk_size, workers):
    table = _random_pixel_table(60, seed=1)
    images = wide_field.pairs()
    options = {"batch_size": 4, "zeropoints": wide_field.zeropoints}
    reference = classify(table, images, chunk_size=10**6, workers=0, **options)
    result = classify(table, images, chunk_size=chunk_size, workers=workers, **options)
    np.testing.assert_array_equal(result["p_star"], reference["p_star"])
    np.testing.assert_array_equal(result["sg_flags"], reference["sg_flags"])


def test_fits_images_stay_memory_mapped(tmp_path, field, bands):
    path = tmp_path / "r.fits"
    field.images(["r"])["r"].writeto(path)
    data = read_images({"r": str(path)}, bands)["r"].data
    base = data
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    assert isinstance(base, mmap.mmap)


@pytest.mark.parametrize("workers", [-1, 1.5, True, "2"])
def test_bad_workers_are_refused_naming_the_value(classify, field, workers):
    with pytest.raises(ValueError, match=f"workers must be a non-negative integer.*{workers!r}"):
        classify(field.table(), field.images(), workers=workers)


@pytest.mark.parametrize("name", ["csst-resnet50-bilstm", "csst-fast"])
def test_each_bundled_model_answers_the_same_chunk_by_chunk_and_batch_by_batch(name, wide_field, field_psf):
    table = _random_pixel_table(48, seed=2)
    options = {"weights": name, "device": "cpu", "psf": field_psf, "progress": False}
    options["zeropoints"] = wide_field.zeropoints
    reference = classify_sources(
        table, wide_field.pairs(), batch_size=8, chunk_size=10**6, workers=0, **options
    )
    chunked = classify_sources(table, wide_field.pairs(), batch_size=8, chunk_size=5, workers=2, **options)
    np.testing.assert_array_equal(chunked["p_star"], reference["p_star"])
    np.testing.assert_array_equal(chunked["sg_flags"], reference["sg_flags"])
    # Other batch shapes round differently in the CPU kernels, by float32 rounding only.
    batched = classify_sources(table, wide_field.pairs(), batch_size=3, chunk_size=7, workers=1, **options)
    np.testing.assert_allclose(batched["p_star"], reference["p_star"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(batched["sg_flags"], reference["sg_flags"])
    assert np.isfinite(reference["p_star"]).sum() > 30
