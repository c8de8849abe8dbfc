"""The bad-input catalogue (issue #7): each case has one documented outcome (see docs/bad_inputs.md).

Either a clear exception raised at the entry point, naming the bad argument
and how to fix it, or a flag on the affected rows; never a traceback from deep
inside numpy, torch or photutils, never a lost or reordered row.
"""

import copy
import warnings

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.io import fits
from astropy.nddata import NDData
from astropy.table import MaskedColumn, QTable, Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_stargal import OUTPUT_COLUMNS, SourceFlag, StarGalaxyWarning
from astro_stargal.instrument import ab_zeropoint


def flagged(result, flag):
    return ((np.asarray(result["sg_flags"]) & flag) != 0).tolist()


def unclassified(result):
    return np.isnan(np.asarray(result["p_star"])).tolist()


# --- the table ----------------------------------------------------------------------------------


def test_empty_table_gives_an_empty_table_with_the_new_columns(classify, field):
    result = classify(field.table()[:0], field.images())
    assert len(result) == 0
    assert result.colnames[-len(OUTPUT_COLUMNS) :] == list(OUTPUT_COLUMNS)


@pytest.mark.parametrize(
    "table", [{"ra": [150.1], "dec": [2.2]}, np.zeros(3), None], ids=["dict", "array", "None"]
)
def test_table_that_is_not_an_astropy_table_raises_type_error(classify, field, table):
    with pytest.raises(TypeError, match="table must be an astropy Table or QTable"):
        classify(table, field.images())


def test_table_without_positions_raises_naming_the_columns_looked_for(classify, field):
    with pytest.raises(ValueError, match=r"no source positions found.*ra/dec.*x/y.*position_columns="):
        classify(Table({"mag": [20.0]}), field.images())


def test_nan_position_is_flagged_bad_position_not_dropped(classify, field):
    table = field.table()
    table["ra"][1] = np.nan
    result = classify(table, field.images())
    assert len(result) == len(table)
    assert flagged(result, SourceFlag.BAD_POSITION) == [False, True, False, False]
    assert unclassified(result) == [False, True, False, False]


@pytest.mark.parametrize("table_class", [Table, QTable])
def test_masked_position_is_flagged_bad_position(classify, field, table_class):
    table = field.table()
    table["dec"] = MaskedColumn(table["dec"], mask=[False, False, True, False])
    result = classify(table_class(table), field.images())
    assert flagged(result, SourceFlag.BAD_POSITION) == [False, False, True, False]
    assert result["sg_class"].mask.tolist() == [False, False, True, False]


@pytest.mark.parametrize("dec", [90.5, -91.0, 1e6])
def test_declination_out_of_range_is_flagged_bad_position(classify, field, dec):
    table = field.table()
    table["dec"][0] = dec
    result = classify(table, field.images())
    assert flagged(result, SourceFlag.BAD_POSITION) == [True, False, False, False]


@pytest.mark.parametrize("unit", [u.m, u.Jy, u.s])
def test_position_unit_that_is_not_an_angle_raises(classify, field, unit):
    table = field.table()
    table["ra"].unit = unit
    with pytest.raises(ValueError, match=rf"column 'ra' has unit {unit}, which is not an angle"):
        classify(table, field.images())


def test_text_positions_raise_naming_the_column(classify, field):
    table = Table({"ra": ["10:00:24"], "dec": ["+02:12:00"]})
    with pytest.raises(ValueError, match="position column 'ra' is not numeric"):
        classify(table, field.images())


@pytest.mark.parametrize(
    ("position_columns", "match"),
    [
        (("foo", "bar"), r"position column\(s\) \['foo', 'bar'\] not in the table"),
        (("ra", "dec", "id"), "one SkyCoord column or a pair"),
        ("ra", "position column 'ra' is not a SkyCoord"),
    ],
)
def test_bad_position_columns_option_raises(classify, field, position_columns, match):
    with pytest.raises(ValueError, match=match):
        classify(field.table(), field.images(), position_columns=position_columns)


def test_duplicate_rows_are_each_classified_identically(classify, field):
    table = field.table()
    table.add_row(table[0])
    table.add_row(table[2])
    result = classify(table, field.images())
    assert len(result) == 6
    # Identical inputs; CPU convolution kernels may round a row differently by its place in the
    # batch, so equal to float32 rounding rather than bit for bit.
    np.testing.assert_allclose(result["p_star"][[4, 5]], result["p_star"][[0, 2]], rtol=1e-5)
    np.testing.assert_array_equal(result["sg_flags"][[4, 5]], result["sg_flags"][[0, 2]])


# --- where the sources are ----------------------------------------------------------------------


def test_sources_off_every_image_are_flagged_not_dropped(classify, field):
    table = field.table()
    table["ra"] += 0.1
    result = classify(table, field.images())
    assert len(result) == len(table)
    assert all(flagged(result, SourceFlag.OFF_IMAGE))
    assert all(unclassified(result))
    assert result["sg_class"].mask.all()


@pytest.mark.parametrize(
    ("x", "y", "flag"),
    [
        (0.0, 64.0, SourceFlag.PARTIAL_OVERLAP),
        (127.0, 127.0, SourceFlag.PARTIAL_OVERLAP),
        (-0.5, 64.0, SourceFlag.PARTIAL_OVERLAP),  # on the outer edge of the first pixel
        (-0.51, 64.0, SourceFlag.OFF_IMAGE),
        (127.5, 10.0, SourceFlag.OFF_IMAGE),
        (-40.0, -40.0, SourceFlag.OFF_IMAGE),
    ],
)
def test_sources_on_and_just_beyond_the_edge(classify, field, x, y, flag):
    result = classify(Table({"x": [x, 64.0], "y": [y, 64.0]}), field.images())
    assert flagged(result, flag) == [True, False]
    assert unclassified(result) == [flag == SourceFlag.OFF_IMAGE, False]


# --- pixels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_near_a_source_flag_bad_pixels(classify, field, bad_value):
    images = field.images()
    source = field.sources[1]
    images["g"].data[round(source.y), round(source.x) + 1] = bad_value
    result = classify(field.table(), images)
    assert flagged(result, SourceFlag.BAD_PIXELS) == [False, True, False, False]
    assert not any(flagged(result, SourceFlag.SATURATED))
    assert not any(unclassified(result))


def test_masked_pixels_flag_bad_pixels(classify, field):
    source = field.sources[1]
    mask = np.zeros(field.shape, dtype=bool)
    mask[round(source.y), round(source.x)] = True
    images = {
        band: NDData(field.data[band], wcs=field.wcs, mask=mask, meta=field.header()) for band in ("g", "r")
    }
    result = classify(field.table(), images)
    assert flagged(result, SourceFlag.BAD_PIXELS) == [False, True, False, False]


def test_source_whose_centre_is_bad_in_every_band_is_off_image(classify, field):
    source = field.sources[0]
    images = field.images()
    for hdu in images.values():
        hdu.data[round(source.y) - 4 : round(source.y) + 5, round(source.x) - 4 : round(source.x) + 5] = (
            np.nan
        )
    result = classify(field.table(), images)
    assert flagged(result, SourceFlag.OFF_IMAGE) == [True, False, False, False]


def test_masked_numpy_array_raises_pointing_to_nddata(classify, field):
    data = np.ma.masked_greater(field.data["r"], 100)
    with pytest.raises(TypeError, match=r"NDData\(data, mask=...\)"):
        classify(field.table(), {"r": (data, field.wcs)}, zeropoints={"r": 25.0})


def test_mask_of_another_shape_raises(classify, field):
    image = NDData(field.data["r"], wcs=field.wcs, mask=np.zeros((3, 3), dtype=bool), meta=field.header())
    with pytest.raises(ValueError, match=r"band 'r': mask shape \(3, 3\) differs"):
        classify(field.table(), {"r": image})


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_constant_image_is_treated_as_a_missing_band_with_a_warning(classify, field, value):
    images = field.images(["g", "r"])
    images["r"].data[:] = value
    with pytest.warns(
        StarGalaxyWarning, match=rf"band\(s\) \['r'\] hold no usable pixel.*every usable pixel is {value:g}"
    ):
        result = classify(field.table(), images)
    assert all(flagged(result, SourceFlag.BAND_MISSING))
    assert not any(unclassified(result))


@pytest.mark.parametrize(
    "blank",
    [lambda data: data.fill(np.nan), lambda data: data.fill(np.inf), lambda data: data.fill(0.0)],
    ids=["nan", "inf", "zero"],
)
def test_blank_band_is_missing_for_every_source_with_one_warning_not_an_error(classify, field, blank):
    images = field.images(["g", "r", "i"])
    blank(images["r"].data)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = classify(field.table(), images)
    messages = [str(warning.message) for warning in record if issubclass(warning.category, StarGalaxyWarning)]
    assert len(messages) == 1 and "['r'] hold no usable pixel" in messages[0], messages
    assert all(flagged(result, SourceFlag.BAND_MISSING))
    assert not any(unclassified(result))


def test_fully_masked_band_is_missing_not_an_error(classify, field):
    images = field.images(["g", "i"])
    images["r"] = NDData(field.data["r"], wcs=field.wcs, mask=np.ones(field.shape, bool), meta=field.header())
    with pytest.warns(StarGalaxyWarning, match="'r': no finite, unmasked pixel"):
        result = classify(field.table(), images)
    assert all(flagged(result, SourceFlag.BAND_MISSING))
    assert not any(unclassified(result))


def test_every_band_blank_gives_off_image_rows_and_a_warning_not_an_error(classify, field):
    images = field.images(["g", "r"])
    images["g"].data[:] = 0.0
    images["r"].data[:] = np.nan
    table = field.table()
    table["ra"][1] = np.nan
    with pytest.warns(StarGalaxyWarning, match="no band is left, so no source can be classified"):
        result = classify(table, images)
    assert len(result) == len(table)
    assert all(unclassified(result))
    assert flagged(result, SourceFlag.OFF_IMAGE) == [True, False, True, True]
    assert flagged(result, SourceFlag.BAD_POSITION) == [False, True, False, False]
    assert result["sg_class"].mask.all()


def test_zero_weight_chip_gap_flags_sources_near_it_and_misses_the_band_for_sources_in_it(classify, field):
    images = field.images()
    weight = np.ones(field.shape, dtype=np.float32)
    weight[:, 62:70] = 0.0  # through the third source (x = 65.8); the fourth (x = 70.2) has it in its stamp
    images["r"] = (images["r"], weight)
    result = classify(field.table(), images)
    assert flagged(result, SourceFlag.BAND_MISSING) == [False, False, True, False]
    assert flagged(result, SourceFlag.BAD_PIXELS) == [False, False, False, True]
    assert not any(unclassified(result))


def test_small_patch_of_data_missed_by_the_noise_sample_is_found(classify, make_field):
    # 1000 x 1000 px is sampled every 2nd pixel; data only on odd rows and columns misses the grid.
    big = make_field((1000, 1000), [(401.0, 401.0, 5000.0)], bands=["r"], seed=2)
    data = np.full(big.shape, np.nan, dtype=np.float32)
    data[381:422:2, 381:422:2] = big.data["r"][381:422:2, 381:422:2]
    table = Table({"x": [401.0], "y": [401.0]})
    result = classify(table, {"r": (data, None)}, zeropoints={"r": 25.0})
    assert not any(unclassified(result))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, ">i4", ">f4", ">f8", np.float64])
def test_integer_and_big_endian_images_match_native_float(classify, field, dtype):
    counts = np.clip(np.round(field.data["r"] * 10 + 100), 0, 30000)
    reference = classify(field.table(), {"r": (counts.astype(np.float32), field.wcs)}, zeropoints={"r": 27.5})
    result = classify(field.table(), {"r": (counts.astype(dtype), field.wcs)}, zeropoints={"r": 27.5})
    np.testing.assert_array_equal(result["p_star"], reference["p_star"])


def test_complex_pixels_raise_type_error(classify, field):
    with pytest.raises(TypeError, match="band 'r': image pixels must be real numbers"):
        classify(field.table(), {"r": (field.data["r"].astype(complex), field.wcs)}, zeropoints={"r": 25.0})


def test_negative_fluxes_are_classified_not_refused(classify, field):
    images = {band: fits.ImageHDU(-field.data[band], field.header()) for band in field.bands}
    result = classify(field.table(), images)
    assert not any(unclassified(result))
    assert all(flagged(result, SourceFlag.LOW_SNR))


# --- image shape and WCS ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 128, 128), (1, 128, 128), (128,), ()])
def test_images_that_are_not_2d_raise_naming_the_shape(classify, field, shape):
    data = np.zeros(shape) + np.random.default_rng(0).normal(size=shape)
    with pytest.raises(
        ValueError,
        match=rf"band 'r': the image must be 2-D, got shape {shape}".replace("(", r"\(").replace(")", r"\)"),
    ):
        classify(field.pixel_table(), {"r": (data, None)}, zeropoints={"r": 25.0})


def test_fits_cube_raises_suggesting_a_plane(classify, field, tmp_path):
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((3, 16, 16), dtype=np.float32)).writeto(path)
    with pytest.raises(ValueError, match=r"select one plane of a cube"):
        classify(field.table(), {"r": str(path)})


def test_sky_positions_with_images_without_celestial_wcs_raise(classify, field):
    images = {band: fits.ImageHDU(field.data[band], fits.Header({"MAGZERO": 25.0})) for band in ("g", "r")}
    with pytest.raises(
        ValueError, match=r"have no celestial WCS; give images with a WCS, or pixel x/y columns"
    ):
        classify(field.table(), images)


def test_pixel_positions_work_without_any_wcs(classify, field):
    pairs = {band: (field.data[band], None) for band in field.bands}
    result = classify(field.pixel_table(), pairs, zeropoints=field.zeropoints)
    assert not any(unclassified(result))


def test_sip_distorted_wcs_works_and_is_used(classify, field):
    header = field.header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-4, "B_0_2": 2e-4})
    sip = WCS(header)
    assert sip.sip is not None
    # Put the table where the distorted WCS says the sources are.
    sky = sip.pixel_to_world(field.x, field.y)
    table = Table({"ra": sky.ra.deg, "dec": sky.dec.deg})

    result = classify(table, {band: fits.ImageHDU(field.data[band], header) for band in field.bands})
    reference = classify(field.pixel_table(), field.images())

    np.testing.assert_allclose(result["p_star"], reference["p_star"], rtol=1e-5)


def test_non_celestial_wcs_raises(classify, field):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["WAVE", "TIME"]
    with pytest.raises(
        ValueError, match=r"band 'r': the WCS has no celestial axes \(CTYPE \['WAVE', 'TIME'\]\)"
    ):
        classify(field.table(), {"r": (field.data["r"], wcs)}, zeropoints={"r": 25.0})


def test_wcs_of_the_wrong_type_raises(classify, field):
    with pytest.raises(TypeError, match="must be an astropy WCS or None"):
        classify(field.table(), {"r": (field.data["r"], "RA---TAN")}, zeropoints={"r": 25.0})


def test_bands_of_different_shapes_and_scales_work_with_sky_positions(classify, field, make_field):
    coarse = make_field((64, 64), [(s.x / 2, s.y / 2, s.flux) for s in field.sources], bands=["i"])
    images = field.images(["g", "r"])
    header = field.header()
    header.update(coarse.wcs.to_header())
    header["CDELT1"], header["CDELT2"] = -0.148 / 3600, 0.148 / 3600
    images["i"] = fits.ImageHDU(coarse.data["i"], header)

    with pytest.warns(StarGalaxyWarning, match=r"pixel scale .*'i': 0.148.* outside its validity range"):
        result = classify(field.table(), images)

    assert not any(unclassified(result))
    with pytest.raises(ValueError, match=r"pixel positions need all images on one pixel grid.*give ra/dec"):
        classify(field.pixel_table(), images)


def test_pixel_positions_with_differing_wcs_raise(classify, field):
    images = field.images(["g", "r"])
    images["r"].header["CRPIX1"] += 3
    with pytest.raises(ValueError, match=r"the WCS of bands \['g', 'r'\] differ; give ra/dec instead"):
        classify(field.pixel_table(), images)


# --- bands --------------------------------------------------------------------------------------


def test_missing_bands_are_flagged_band_missing(classify, field):
    result = classify(field.table(), field.images(["r", "i"]))
    assert all(flagged(result, SourceFlag.BAND_MISSING))
    assert not any(unclassified(result))


@pytest.mark.parametrize("name", ["Ks", "F814W", "rr"])
def test_unknown_band_name_raises_listing_the_model_bands(classify, field, name):
    images = field.images(["g"])
    images[name] = images["g"]
    with pytest.raises(
        ValueError, match=rf"unknown band name in images '{name}'; the model's bands are \['NUV'"
    ):
        classify(field.table(), images)


@pytest.mark.parametrize("name", ["R", "r ", " r"])
def test_band_name_differing_only_in_case_or_blanks_means_that_band(classify, field, name):
    reference = classify(field.table(), field.images(["g", "r"]))
    images = field.images(["g", "r"])
    images[name] = images.pop("r")
    result = classify(field.table(), images)
    np.testing.assert_array_equal(result["p_star"], reference["p_star"])


def test_band_given_twice_under_two_spellings_raises(classify, field):
    images = field.images(["g", "r"])
    images["R"] = images["r"]
    with pytest.raises(ValueError, match=r"images names band 'r' twice, as 'r' and 'R'"):
        classify(field.table(), images)


def test_images_given_as_a_list_raise_asking_for_a_mapping(classify, field):
    with pytest.raises(TypeError, match="images must be a mapping from band name to image"):
        classify(field.table(), list(field.images().values()))


def test_no_images_raise(classify, field):
    with pytest.raises(ValueError, match="images is empty"):
        classify(field.table(), {})


def test_unknown_zeropoint_band_raises(classify, field):
    with pytest.raises(ValueError, match=r"unknown band name in zeropoints 'Ks'; the model's bands are"):
        classify(field.table(), field.images(), zeropoints={"Ks": 25.0})


def test_unsupported_image_type_raises(classify, field):
    with pytest.raises(TypeError, match="band 'r': cannot read an image of type list"):
        classify(field.table(), {"r": [[1.0, 2.0], [3.0, 4.0]]})


# --- files --------------------------------------------------------------------------------------


def test_fits_path_that_does_not_exist_raises_file_not_found(classify, field, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"band 'r': FITS file '.*missing\.fits' does not exist"):
        classify(field.table(), {"r": str(tmp_path / "missing.fits")})


def test_file_that_is_not_fits_raises(classify, field, tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("these are not FITS data\n" * 200)
    with pytest.raises(ValueError, match=r"band 'r': '.*notes\.fits' is not a readable FITS file"):
        classify(field.table(), {"r": str(path)})


def test_directory_instead_of_a_file_raises(classify, field, tmp_path):
    with pytest.raises(ValueError, match="is not a readable FITS file"):
        classify(field.table(), {"r": str(tmp_path)})


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_truncated_fits_raises(classify, field, tmp_path):
    path = tmp_path / "r.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(field.data["r"], field.header())]).writeto(path)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(path.read_bytes()[:-20000])
    with pytest.raises(
        ValueError, match="band 'r': cannot read the image pixels; the FITS file may be truncated"
    ):
        classify(field.table(), {"r": str(truncated)})


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_fits_extension_that_does_not_exist_raises(classify, field, tmp_path):
    path = tmp_path / "r.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(field.data["r"], field.header())]).writeto(path)
    with pytest.raises(ValueError, match=r"has no extension 5"):
        classify(field.table(), {"r": f"{path}[5]"})


def test_header_without_zero_point_warns_and_assumes_the_csst_zero_point(classify, field):
    images = {band: (field.data[band], field.wcs) for band in ("g", "r")}
    with pytest.warns(
        StarGalaxyWarning, match=r"band\(s\) \['g', 'r'\]; assuming the CSST AB zero points"
    ) as record:
        result = classify(field.table(), images)
    assert f"{ab_zeropoint('g'):.3f}" in str(record[0].message)
    explicit = {"g": ab_zeropoint("g"), "r": ab_zeropoint("r")}
    np.testing.assert_array_equal(
        result["p_star"], classify(field.table(), images, zeropoints=explicit)["p_star"]
    )


def test_non_csst_band_without_zero_point_raises(field, model_dir, tmp_path):
    from astro_stargal import classify_sources, load_model

    model = load_model(model_dir, device="cpu")
    foreign = type(model)(
        net=model.net,
        metadata={**model.metadata, "bands": ["NUV", "u", "g", "r", "i", "z", "F814W"]},
        device=model.device,
    )
    with pytest.raises(ValueError, match=r"band 'F814W': no zero point in the header; pass zeropoints="):
        classify_sources(
            field.table(), {"F814W": (field.data["y"], field.wcs)}, weights=foreign, device="cpu"
        )


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "64"])
def test_batch_size_that_is_not_a_positive_integer_raises(classify, field, batch_size):
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer, got {batch_size!r}"):
        classify(field.table(), field.images(), batch_size=batch_size)


@pytest.mark.parametrize("chunk_size", [0, -1, 1.5])
def test_chunk_size_that_is_not_a_positive_integer_raises(classify, field, chunk_size):
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        classify(field.table(), field.images(), chunk_size=chunk_size)


@pytest.mark.parametrize(
    ("device", "match"),
    [("gpu0", "is not a torch device name"), ("xla", "is not supported"), ("cuda:99", "cuda:99")],
)
def test_device_that_does_not_exist_raises(classify, field, device, match):
    with pytest.raises(ValueError, match=match):
        classify(field.table(), field.images(), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_raises_suggesting_cpu(classify, field):
    with pytest.raises(ValueError, match=r"no CUDA GPU is available here; use device='cpu'"):
        classify(field.table(), field.images(), device="cuda")


# --- warnings -----------------------------------------------------------------------------------


def test_package_warnings_are_astropy_user_warnings():
    assert issubclass(StarGalaxyWarning, AstropyUserWarning)


def test_warnings_are_issued_once_per_call_not_once_per_source(classify, make_field):
    rng = np.random.default_rng(8)
    many = make_field(
        (128, 128), [(x, y, 500.0) for x, y in rng.uniform(5, 123, (40, 2))], bands=["g", "r", "i"]
    )
    images = {band: (many.data[band], many.wcs) for band in many.bands}  # no zero points
    images["i"] = (np.zeros(many.shape, dtype=np.float32), many.wcs)  # constant
    table = many.table()
    table["ra"][:10] = np.nan

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        classify(table, images)

    ours = [warning for warning in record if issubclass(warning.category, StarGalaxyWarning)]
    assert len(ours) == 2, [str(warning.message) for warning in ours]
    assert all(warning.filename == __file__ for warning in ours)


# --- properties ---------------------------------------------------------------------------------


@st.composite
def fields_and_positions(draw):
    ny = draw(st.integers(24, 80))
    nx = draw(st.integers(24, 80))
    coordinate = st.one_of(
        st.floats(-40.0, 120.0, allow_nan=False),
        st.just(np.nan),
        st.sampled_from([-0.5, 0.0, 0.5, float(nx) - 0.5]),
    )
    n_sources = draw(st.integers(1, 6))
    x = draw(st.lists(coordinate, min_size=n_sources, max_size=n_sources))
    y = draw(st.lists(coordinate, min_size=n_sources, max_size=n_sources))
    seed = draw(st.integers(0, 2**16))
    mask_fraction = draw(st.sampled_from([0.0, 0.05, 0.5, 1.0]))
    return (ny, nx), np.array(x), np.array(y), seed, mask_fraction


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=fields_and_positions())
def test_every_row_comes_back_in_order_with_a_valid_probability_or_a_reason(classify, case):
    shape, x, y, seed, mask_fraction = case
    rng = np.random.default_rng(seed)
    data = rng.normal(size=shape).astype(np.float32)
    data[rng.integers(0, shape[0]), rng.integers(0, shape[1])] += 200.0
    mask = rng.random(shape) < mask_fraction
    mask.flat[0] = False  # at least one good pixel, so the image is usable
    images = {"r": NDData(data, mask=mask), "g": (data[::-1].copy(), None)}
    table = Table({"id": np.arange(len(x)), "x": x, "y": y}, meta={"note": "hypothesis"})
    before = copy.deepcopy(table)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarGalaxyWarning)
        result = classify(table, images, zeropoints={"r": 25.0, "g": 25.0})

    assert len(result) == len(table)
    np.testing.assert_array_equal(result["id"], before["id"])
    np.testing.assert_array_equal(table["x"], before["x"])
    assert table.meta == before.meta and table.colnames == before.colnames
    p_star = np.asarray(result["p_star"])
    unclassifiable = (np.asarray(result["sg_flags"]) & (SourceFlag.OFF_IMAGE | SourceFlag.BAD_POSITION)) != 0
    np.testing.assert_array_equal(np.isnan(p_star), unclassifiable)
    assert np.all((p_star[~unclassifiable] >= 0) & (p_star[~unclassifiable] <= 1))
    bad_position = ~(np.isfinite(x) & np.isfinite(y))
    np.testing.assert_array_equal(
        (np.asarray(result["sg_flags"]) & SourceFlag.BAD_POSITION) != 0, bad_position
    )
