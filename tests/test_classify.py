"""`classify_sources` and the Table mixin: rows, columns, flags, positions and image forms."""

import copy
import datetime
import hashlib

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance, NDData, StdDevUncertainty
from astropy.table import MaskedColumn, QTable, Table

from astro_stargal import (
    OUTPUT_COLUMNS,
    PROVENANCE_KEYS,
    SourceFlag,
    StarGalaxyMixin,
    StarGalaxyQTable,
    StarGalaxyTable,
    describe_flags,
)
from astro_stargal import __version__ as package_version
from astro_stargal.io import NoiseMap
from astro_stargal.models import TENSOR_FILE
from astro_stargal.pipeline import _inference

UNCLASSIFIABLE = SourceFlag.OFF_IMAGE | SourceFlag.BAD_POSITION


@pytest.fixture(scope="module")
def reference(classify, field):
    """The default field classified from ImageHDUs with all 7 bands."""
    return classify(field.table(), field.images())


def has_flag(result, flag):
    """Boolean array: rows of ``result`` whose ``sg_flags`` has ``flag`` set."""
    return (np.asarray(result["sg_flags"]) & flag) != 0


# --- rows, columns and table classes ------------------------------------------------------------


def test_one_row_out_per_row_in_in_the_same_order(classify, field):
    table = field.table()
    table["id"] = [17, 3, 99, 42]

    result = classify(table, field.images())

    assert len(result) == len(table)
    np.testing.assert_array_equal(result["id"], table["id"])
    np.testing.assert_array_equal(result["ra"], table["ra"])
    assert result.colnames == [*table.colnames, *OUTPUT_COLUMNS]


def test_reversed_table_gives_reversed_results(classify, field, reference):
    result = classify(field.table()[::-1], field.images())
    np.testing.assert_array_equal(result["p_star"], reference["p_star"][::-1])
    np.testing.assert_array_equal(result["sg_flags"], reference["sg_flags"][::-1])


def test_input_table_and_its_meta_are_unchanged(classify, field, assert_table_unchanged):
    table = field.table()
    before = copy.deepcopy(table)

    result = classify(table, field.images())

    assert_table_unchanged(before, table)
    assert result is not table
    assert {key: value for key, value in result.meta.items() if key not in PROVENANCE_KEYS} == before.meta
    assert result.meta is not table.meta


def test_output_columns_have_documented_types_and_descriptions(reference):
    assert reference["p_star"].dtype == np.float32
    assert isinstance(reference["sg_class"], MaskedColumn)
    assert set(reference["sg_class"].compressed()) <= {"star", "galaxy"}
    assert np.issubdtype(reference["sg_flags"].dtype, np.integer)
    for name in OUTPUT_COLUMNS:
        assert reference[name].description
    p_star = np.asarray(reference["p_star"])
    assert np.all((p_star >= 0) & (p_star <= 1))


@pytest.mark.parametrize("table_class", [Table, QTable])
def test_result_has_the_class_of_the_input_table(classify, field, table_class):
    result = classify(table_class(field.table()), field.images())
    assert type(result) is table_class


def test_existing_output_columns_are_refused_unless_overwrite(classify, field, reference):
    with pytest.raises(ValueError, match=r"overwrite=True"):
        classify(reference, field.images())
    again = classify(reference, field.images(), overwrite=True)
    assert again.colnames == reference.colnames
    np.testing.assert_array_equal(again["p_star"], reference["p_star"])


class SurveyTable(StarGalaxyMixin, Table):
    """A user's own table class that opts in to ``classify_sources``."""


@pytest.mark.parametrize("table_class", [StarGalaxyTable, StarGalaxyQTable, SurveyTable])
def test_mixin_tables_gain_the_columns_in_place(
    classify, field, field_psf, model_dir, reference, table_class
):
    table = table_class(field.table())
    original_columns = list(table.colnames)

    returned = table.classify_sources(field.images(), weights=model_dir, device="cpu", psf=field_psf)

    assert returned is table
    assert type(table) is table_class
    assert table.colnames == [*original_columns, *OUTPUT_COLUMNS]
    np.testing.assert_array_equal(table["p_star"], reference["p_star"])
    np.testing.assert_array_equal(table["sg_flags"], reference["sg_flags"])


def test_mixin_rerun_replaces_its_columns_with_overwrite(field, field_psf, model_dir):
    table = StarGalaxyTable(field.table())
    table.classify_sources(field.images(), weights=model_dir, device="cpu", psf=field_psf)
    table.classify_sources(
        field.images(), weights=model_dir, device="cpu", psf=field_psf, overwrite=True, threshold=0.01
    )
    assert table.colnames.count("p_star") == 1
    assert np.all(table["sg_class"] == "star")


# --- flags --------------------------------------------------------------------------------------


def _off_image(field, table, images):
    table["ra"][0] += 1.0  # a degree away from a 9.5-arcsec field
    return {}


def _partial_overlap(field, table, images):
    sky = field.wcs.pixel_to_world(3.2, 60.7)
    table["ra"][0], table["dec"][0] = sky.ra.deg, sky.dec.deg
    return {}


def _bad_pixels(field, table, images):
    source = field.sources[0]
    images["r"].data[round(source.y) + 1, round(source.x)] = np.nan
    return {}


def _band_missing(field, table, images):
    del images["NUV"]
    return {}


def _bad_position(field, table, images):
    table["dec"][0] = np.nan
    return {}


@pytest.mark.parametrize(
    ("flag", "damage"),
    [
        (SourceFlag.OFF_IMAGE, _off_image),
        (SourceFlag.PARTIAL_OVERLAP, _partial_overlap),
        (SourceFlag.BAD_PIXELS, _bad_pixels),
        (SourceFlag.BAD_POSITION, _bad_position),
    ],
    ids=lambda value: getattr(value, "name", ""),
)
def test_flag_is_set_on_the_affected_row_only(classify, field, flag, damage):
    table, images = field.table(), field.images()
    damage(field, table, images)

    result = classify(table, images)

    assert has_flag(result, flag).tolist() == [True, False, False, False]
    assert len(result) == len(table)


def test_band_missing_flag_is_set_on_every_row_when_a_band_is_not_given(classify, field):
    table, images = field.table(), field.images()
    _band_missing(field, table, images)
    result = classify(table, images)
    assert has_flag(result, SourceFlag.BAND_MISSING).all()
    assert np.isfinite(result["p_star"]).all()


def test_band_missing_flag_is_set_where_a_source_is_off_one_band_only(classify, field, make_wcs):
    images = field.images()
    shifted = make_wcs(field.shape, centre=(150.1 + 3.0 * 0.074 / 3600 * 60, 2.2))
    images["y"] = fits.ImageHDU(field.data["y"].copy(), header=field.header())
    images["y"].header.update(shifted.to_header())
    result = classify(field.table(), images)
    flagged = has_flag(result, SourceFlag.BAND_MISSING)
    assert flagged.any()
    assert np.isfinite(result["p_star"]).all()


def test_saturated_flag_comes_from_the_saturate_header_keyword(classify, make_field):
    bright, faint = (40.2, 40.6, 20000.0), (90.3, 90.4, 1000.0)
    field = make_field((128, 128), [bright, faint], bands=["g", "r", "i"])
    peak_faint = field.data["r"][90, 90]
    level = 2 * peak_faint

    result = classify(field.table(), field.images(SATURATE=level))

    assert has_flag(result, SourceFlag.SATURATED).tolist() == [True, False]
    unflagged = classify(field.table(), field.images())
    assert not has_flag(unflagged, SourceFlag.SATURATED).any()


def test_low_snr_flag_marks_a_source_on_blank_sky(classify, field):
    table = field.table()
    sky = field.wcs.pixel_to_world(20.3, 100.6)  # nothing injected there
    table.add_row({"id": 5, "ra": sky.ra.deg, "dec": sky.dec.deg})

    result = classify(table, field.images())

    assert has_flag(result, SourceFlag.LOW_SNR).tolist() == [False, False, False, False, True]
    assert np.isfinite(result["p_star"][-1])


def test_only_unclassifiable_rows_have_nan_p_star_and_masked_class(classify, field):
    table = field.table()
    table["ra"][1] += 1.0
    table["dec"][3] = np.nan

    result = classify(table, field.images())

    unclassified = np.isnan(np.asarray(result["p_star"]))
    assert unclassified.tolist() == [False, True, False, True]
    np.testing.assert_array_equal(result["sg_class"].mask, unclassified)
    np.testing.assert_array_equal(has_flag(result, UNCLASSIFIABLE), unclassified)
    assert describe_flags(result["sg_flags"][1]) == ["OFF_IMAGE"]
    assert describe_flags(result["sg_flags"][3]) == ["BAD_POSITION"]


def test_clean_sources_have_no_flags(reference):
    np.testing.assert_array_equal(reference["sg_flags"], 0)


# --- bands --------------------------------------------------------------------------------------


@pytest.mark.parametrize("subset", [("r",), ("g", "i"), ("NUV", "u", "z", "y")])
def test_any_subset_of_bands_classifies_every_source(classify, field, subset):
    result = classify(field.table(), field.images(subset))
    assert np.isfinite(result["p_star"]).all()
    assert has_flag(result, SourceFlag.BAND_MISSING).all()


def test_band_order_of_the_images_mapping_does_not_matter(classify, field, reference):
    images = field.images()
    shuffled = {band: images[band] for band in reversed(list(images))}
    result = classify(field.table(), shuffled)
    np.testing.assert_array_equal(result["p_star"], reference["p_star"])


# --- positions ----------------------------------------------------------------------------------


def _sky(field):
    return field.wcs.pixel_to_world(field.x, field.y)


POSITION_TABLES = {
    "skycoord_column": lambda f: Table({"coord": _sky(f)}),
    "skycoord_in_qtable": lambda f: QTable({"coord": _sky(f)}),
    "skycoord_galactic": lambda f: QTable({"coord": _sky(f).galactic}),
    "ra_dec_unitless_degrees": lambda f: Table({"ra": _sky(f).ra.deg, "dec": _sky(f).dec.deg}),
    "ra_dec_quantity_deg": lambda f: QTable({"ra": _sky(f).ra.to(u.deg), "dec": _sky(f).dec.to(u.deg)}),
    "ra_hourangle_dec_arcsec": lambda f: QTable(
        {"ra": _sky(f).ra.to(u.hourangle), "dec": _sky(f).dec.to(u.arcsec)}
    ),
    "ra_dec_table_units_rad": lambda f: Table({"ra": _sky(f).ra.to(u.rad), "dec": _sky(f).dec.to(u.rad)}),
    "RA_DEC": lambda f: Table({"RA": _sky(f).ra.deg, "DEC": _sky(f).dec.deg}),
    "ALPHA_J2000_DELTA_J2000": lambda f: Table(
        {"ALPHA_J2000": _sky(f).ra.deg, "DELTA_J2000": _sky(f).dec.deg}
    ),
    "x_y_pixels": lambda f: Table({"x": f.x, "y": f.y}),
}


@pytest.mark.parametrize("make_table", POSITION_TABLES.values(), ids=POSITION_TABLES.keys())
def test_every_position_form_gives_the_same_result(classify, field, reference, make_table):
    result = classify(make_table(field), field.images())
    np.testing.assert_allclose(result["p_star"], reference["p_star"], rtol=1e-5)
    np.testing.assert_array_equal(result["sg_flags"], reference["sg_flags"])


def test_explicit_position_columns_are_used(classify, field, reference):
    sky = _sky(field)
    table = Table({"my_ra": sky.ra.deg, "my_dec": sky.dec.deg})
    result = classify(table, field.images(), position_columns=("my_ra", "my_dec"))
    np.testing.assert_allclose(result["p_star"], reference["p_star"], rtol=1e-5)


def test_competing_position_columns_raise_and_list_the_candidates(classify, field):
    table = field.table()
    table["coord"] = _sky(field)
    table["ALPHA_J2000"], table["DELTA_J2000"] = table["ra"], table["dec"]

    with pytest.raises(ValueError, match="several position columns") as error:
        classify(table, field.images())

    message = str(error.value)
    for candidate in ("coord", "'ra', 'dec'", "ALPHA_J2000", "position_columns"):
        assert candidate in message
    resolved = classify(table, field.images(), position_columns="coord")
    assert np.isfinite(resolved["p_star"]).all()


def test_table_without_positions_raises_and_lists_what_was_looked_for(classify, field):
    table = Table({"id": [1, 2], "flux": [1.0, 2.0]})
    with pytest.raises(ValueError, match="no source positions") as error:
        classify(table, field.images())
    message = str(error.value)
    for looked_for in ("SkyCoord", "ra/dec", "RA/DEC", "ALPHA_J2000/DELTA_J2000", "x/y", "['id', 'flux']"):
        assert looked_for in message


# --- image forms --------------------------------------------------------------------------------


IMAGE_BANDS = ("g", "r", "i")


def _write(field, path, band, hdu_class=fits.ImageHDU, **options):
    hdu = hdu_class(field.data[band].copy(), header=field.header(), name="SCI", **options)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


IMAGE_FORMS = {
    "fits_path": lambda f, d: {b: str(_write(f, d / f"{b}.fits", b)) for b in IMAGE_BANDS},
    "fits_pathlib": lambda f, d: {b: _write(f, d / f"{b}.fits", b) for b in IMAGE_BANDS},
    "fits_path_with_extension_number": lambda f, d: {
        b: f"{_write(f, d / f'{b}.fits', b)}[1]" for b in IMAGE_BANDS
    },
    "fits_path_with_extension_name": lambda f, d: {
        b: f"{_write(f, d / f'{b}.fits', b)}[SCI]" for b in IMAGE_BANDS
    },
    "hdulist": lambda f, d: {
        b: fits.HDUList([fits.PrimaryHDU(), *f.images([b]).values()]) for b in IMAGE_BANDS
    },
    "image_hdu": lambda f, d: f.images(IMAGE_BANDS),
    "primary_hdu": lambda f, d: {b: fits.PrimaryHDU(f.data[b].copy(), f.header()) for b in IMAGE_BANDS},
    "compressed_file": lambda f, d: {
        b: str(
            _write(f, d / f"{b}.fits.fz", b, fits.CompImageHDU, compression_type="GZIP_1", quantize_level=0.0)
        )
        for b in IMAGE_BANDS
    },
    "comp_image_hdu": lambda f, d: {
        b: fits.CompImageHDU(f.data[b].copy(), f.header(), compression_type="GZIP_1", quantize_level=0.0)
        for b in IMAGE_BANDS
    },
    "nddata": lambda f, d: {b: NDData(f.data[b].copy(), wcs=f.wcs, meta=f.header()) for b in IMAGE_BANDS},
    "ccddata": lambda f, d: {
        b: CCDData(f.data[b].copy(), unit="electron/s", wcs=f.wcs, meta=f.header()) for b in IMAGE_BANDS
    },
    "array_wcs_pair": lambda f, d: f.pairs(IMAGE_BANDS),
}


@pytest.fixture(scope="module")
def three_band_reference(classify, field):
    return classify(field.table(), field.pairs(IMAGE_BANDS), zeropoints=field.zeropoints)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("make_images", IMAGE_FORMS.values(), ids=IMAGE_FORMS.keys())
def test_every_image_form_gives_the_same_result(classify, field, three_band_reference, tmp_path, make_images):
    images = make_images(field, tmp_path)
    zeropoints = {band: field.zeropoints[band] for band in IMAGE_BANDS}
    result = classify(field.table(), images, zeropoints=zeropoints)
    np.testing.assert_array_equal(result["p_star"], three_band_reference["p_star"])
    np.testing.assert_array_equal(result["sg_flags"], three_band_reference["sg_flags"])


def test_ccddata_mask_flags_bad_pixels_and_uncertainty_sets_the_noise(classify, field, three_band_reference):
    source = field.sources[0]
    mask = np.zeros(field.shape, dtype=bool)
    mask[round(source.y), round(source.x)] = True
    images = {
        band: CCDData(
            field.data[band].copy(),
            unit="electron/s",
            wcs=field.wcs,
            mask=mask,
            uncertainty=StdDevUncertainty(np.full(field.shape, 2.0)),
            meta=field.header(),
        )
        for band in IMAGE_BANDS
    }

    result = classify(field.table(), images)

    assert has_flag(result, SourceFlag.BAD_PIXELS).tolist() == [True, False, False, False]
    assert np.isfinite(result["p_star"]).all()
    # A doubled noise changes the normalised stamps, hence p_star, even for unmasked sources.
    assert not np.array_equal(result["p_star"][1:], three_band_reference["p_star"][1:])


# --- noise maps ---------------------------------------------------------------------------------


def _weight_file(field, path, band, sigma):
    fits.PrimaryHDU(np.full(field.shape, sigma**-2, dtype=np.float32)).writeto(path)
    return str(path)


WEIGHT_FORMS = {
    "path_and_weight_path": lambda f, d, s: {
        b: (str(_write(f, d / f"{b}.fits", b)), _weight_file(f, d / f"{b}.weight.fits", b, s))
        for b in IMAGE_BANDS
    },
    "hdu_and_weight_hdu": lambda f, d, s: {
        b: (hdu, fits.ImageHDU(np.full(f.shape, s**-2))) for b, hdu in f.images(IMAGE_BANDS).items()
    },
    "pair_and_weight_array": lambda f, d, s: {
        b: (pair, np.full(f.shape, s**-2)) for b, pair in f.pairs(IMAGE_BANDS).items()
    },
    "pair_and_variance_map": lambda f, d, s: {
        b: (pair, NoiseMap(np.full(f.shape, s**2), kind="variance"))
        for b, pair in f.pairs(IMAGE_BANDS).items()
    },
    "pair_and_sigma_map": lambda f, d, s: {
        b: (pair, NoiseMap(np.full(f.shape, s), kind="sigma")) for b, pair in f.pairs(IMAGE_BANDS).items()
    },
    "ccddata_inverse_variance": lambda f, d, s: {
        b: CCDData(
            f.data[b].copy(),
            unit="electron/s",
            wcs=f.wcs,
            uncertainty=InverseVariance(np.full(f.shape, s**-2)),
        )
        for b in IMAGE_BANDS
    },
}


@pytest.fixture(scope="module")
def doubled_noise_reference(classify, field):
    """The three-band field classified with a weight map that says the noise is 2 (the images hold 1)."""
    images = {band: (pair, np.full(field.shape, 0.25)) for band, pair in field.pairs(IMAGE_BANDS).items()}
    return classify(field.table(), images, zeropoints=field.zeropoints)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("make_images", WEIGHT_FORMS.values(), ids=WEIGHT_FORMS.keys())
def test_every_noise_map_form_gives_the_same_result(
    classify, field, doubled_noise_reference, tmp_path, make_images
):
    images = make_images(field, tmp_path, 2.0)
    result = classify(
        field.table(), images, zeropoints={band: field.zeropoints[band] for band in IMAGE_BANDS}
    )
    np.testing.assert_array_equal(result["p_star"], doubled_noise_reference["p_star"])
    np.testing.assert_array_equal(result["sg_flags"], doubled_noise_reference["sg_flags"])


def test_weight_maps_change_the_noise_the_stamps_are_normalised_by(
    classify, field, three_band_reference, doubled_noise_reference
):
    # A weight map of the noise the images really have (sigma 1) gives nearly the scalar estimate's result.
    images = {band: (pair, np.ones(field.shape)) for band, pair in field.pairs(IMAGE_BANDS).items()}
    true_noise = classify(field.table(), images, zeropoints=field.zeropoints)
    np.testing.assert_allclose(true_noise["p_star"], three_band_reference["p_star"], atol=0.02)
    # Saying the noise is twice that changes the normalised stamps, hence p_star, for every source.
    assert np.all(doubled_noise_reference["p_star"] != true_noise["p_star"])


# --- reproducibility and options ----------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 4])
def test_chunked_run_equals_unchunked_run_bit_for_bit(classify, make_field, batch_size):
    rng = np.random.default_rng(11)
    sources = list(
        zip(rng.uniform(5, 123, 12), rng.uniform(5, 123, 12), rng.uniform(50, 5000, 12), strict=True)
    )
    many = make_field((128, 128), sources, bands=IMAGE_BANDS, seed=3)
    table = many.table()
    table["ra"][[2, 7]] += 1.0  # unclassifiable rows shift which sources share a network batch

    whole = classify(table, many.images(), batch_size=batch_size)
    for chunk_size in (1, 3, 5):
        chunked = classify(table, many.images(), batch_size=batch_size, chunk_size=chunk_size)
        np.testing.assert_array_equal(chunked["p_star"], whole["p_star"])
        np.testing.assert_array_equal(chunked["sg_flags"], whole["sg_flags"])


def test_repeated_runs_are_bit_identical_on_cpu(classify, field, reference):
    again = classify(field.table(), field.images())
    np.testing.assert_array_equal(again["p_star"], reference["p_star"])
    np.testing.assert_array_equal(again["sg_flags"], reference["sg_flags"])


def test_threshold_sets_the_class_boundary(classify, field, reference):
    p_star = np.asarray(reference["p_star"])
    threshold = float(np.median(p_star))

    result = classify(field.table(), field.images(), threshold=threshold)

    np.testing.assert_array_equal(result["p_star"], p_star)
    np.testing.assert_array_equal(result["sg_class"] == "star", p_star >= threshold)
    assert str(threshold) in result["sg_class"].description


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5, "0.5", None])
def test_threshold_outside_the_open_unit_interval_is_refused(classify, field, threshold):
    with pytest.raises(ValueError, match="threshold"):
        classify(field.table(), field.images(), threshold=threshold)


def test_sky_and_pixel_positions_agree(classify, field, reference):
    result = classify(field.pixel_table(), field.images())
    np.testing.assert_allclose(result["p_star"], reference["p_star"], rtol=1e-5)


def test_table_with_skycoord_and_masked_columns_survives_unchanged(classify, field, assert_table_unchanged):
    table = Table(field.table(), masked=True)
    table["coord_copy"] = _sky(field)
    table["ra"].mask[2] = True
    before = copy.deepcopy(table)

    result = classify(table, field.images(), position_columns=("ra", "dec"))

    assert_table_unchanged(before, table)
    assert describe_flags(result["sg_flags"][2]) == ["BAD_POSITION"]
    assert isinstance(result["coord_copy"], SkyCoord)


# --- provenance, threads and progress (issue 15) -----------------------------------------------


@pytest.mark.parametrize("suffix", [".ecsv", ".fits"])
def test_output_meta_records_what_made_the_columns_and_survives_the_file(
    classify, field, model_dir, tmp_path, suffix
):
    """Issue 15: a catalog must be traceable months later to the package, model, images and settings."""
    paths = {}
    for band in ("g", "r"):
        paths[band] = tmp_path / f"{band}.fits"
        fits.PrimaryHDU(field.data[band], field.header()).writeto(paths[band])
    images = {"g": str(paths["g"]), "R": f"{paths['r']}[0]"}
    started = datetime.datetime.now(datetime.timezone.utc)

    result = classify(field.table(), images, threshold=0.7)
    result.write(tmp_path / f"out{suffix}")
    meta = Table.read(tmp_path / f"out{suffix}").meta

    assert set(PROVENANCE_KEYS) <= set(meta) and all(len(key) <= 8 for key in PROVENANCE_KEYS)
    assert meta["SGVERSN"] == package_version
    assert meta["SGMODEL"] == "test"
    assert meta["SGSHA256"] == hashlib.sha256((model_dir / TENSOR_FILE).read_bytes()).hexdigest()
    assert meta["SGBANDS"] == "g r"
    assert meta["SGIMAGES"] == f"g={paths['g']}; r={paths['r']}[0]"
    assert meta["SGTHRESH"] == 0.7
    assert meta["SGDEVICE"] == "cpu"
    recorded = datetime.datetime.fromisoformat(meta["SGDATE"])
    assert started - datetime.timedelta(seconds=1) <= recorded <= datetime.datetime.now(datetime.timezone.utc)
    assert (
        meta.get("survey", meta.get("SURVEY")) == "synthetic"
    )  # the table's own meta is kept (FITS: upper case)


def test_provenance_names_images_given_as_objects_by_their_kind(classify, field):
    result = classify(
        field.table(),
        {"g": field.images(["g"])["g"], "r": field.pairs(["r"])["r"]},
        zeropoints=field.zeropoints,
    )
    assert result.meta["SGIMAGES"] == "g=ImageHDU; r=ndarray"


def test_table_mixin_records_provenance_in_place(field, model_dir):
    table = StarGalaxyTable(field.table())
    table.classify_sources(field.images(), weights=model_dir, device="cpu")
    assert table.meta["SGMODEL"] == "test" and table.meta["survey"] == "synthetic"


def test_threads_do_not_change_results_and_the_callers_setting_is_restored(classify, field, reference):
    before = torch.get_num_threads()
    result = classify(field.table(), field.images(), threads=1)
    assert torch.get_num_threads() == before
    np.testing.assert_array_equal(result["p_star"], reference["p_star"])
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        classify(field.table(), field.images(), threads=0)


@pytest.mark.parametrize(
    ("cores", "busy_elsewhere", "torch_threads", "expected"),
    [
        (2, 0.0, 2, 2),  # an idle 2-core machine: both cores
        (2, 1.0, 2, 1),  # another job holds one core: the threads would wait for it
        (2, 1.9, 2, 1),  # never fewer than one
        (8, 2.3, 8, 6),  # a laptop with a little background work
        (8, 0.0, 3, 3),  # OMP_NUM_THREADS=3 or torch.set_num_threads(3): respected
        (4, 0.0, 16, 4),  # at most the cores this process may use (CPU affinity)
    ],
)
def test_default_threads_take_the_free_cores(monkeypatch, cores, busy_elsewhere, torch_threads, expected):
    monkeypatch.setattr(_inference, "_available_cores", lambda: cores)
    monkeypatch.setattr(_inference, "_cores_busy_elsewhere", lambda: busy_elsewhere)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert _inference.default_threads(torch.device("cpu")) == expected


def test_the_busy_cores_measured_are_within_the_machine():
    assert 0.0 <= _inference._cores_busy_elsewhere() <= (_inference.os.cpu_count() or 1)


def test_progress_is_shown_when_a_call_is_expected_to_take_more_than_a_couple_of_seconds():
    """Issue 15: 1,470 sources ran 25 s with no output, the bar came only from 5,000 sources."""
    cpu = torch.device("cpu")
    assert _inference.expected_seconds(1470, cpu, threads=2) > _inference.PROGRESS_AFTER_SECONDS
    assert _inference.expected_seconds(100, cpu, threads=1) < _inference.PROGRESS_AFTER_SECONDS
    assert _inference.expected_seconds(50_000, torch.device("cuda")) < _inference.PROGRESS_AFTER_SECONDS


@pytest.mark.parametrize(("rate", "shown"), [(1e-3, True), (10**9, False)])
def test_the_progress_bar_follows_the_expected_time(classify, field, capsys, monkeypatch, rate, shown):
    monkeypatch.setitem(_inference.EXPECTED_SOURCES_PER_SECOND, "cpu", rate)
    classify(field.table(), field.images())
    assert ("classifying" in capsys.readouterr().err) is shown
