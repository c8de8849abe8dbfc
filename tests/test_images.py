"""Specifications of astro_stargal.io.read_images: the sky noise, weight maps and band names."""

import mmap
import warnings
from importlib.resources import files

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import InverseVariance, NDData, StdDevUncertainty, VarianceUncertainty
from astropy.stats import mad_std

from astro_stargal import StarGalaxyWarning
from astro_stargal.io import NOISE_MAP_KINDS, NoiseMap, band_named_by_header, read_images, resolve_band

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


# --- noise maps -----------------------------------------------------------------------------------


@pytest.fixture
def noisy():
    """A 64 x 64 image of unit noise and a sigma map: 2 in the left half, 4 in the right half."""
    rng = np.random.default_rng(6)
    sigma = np.full((64, 64), 2.0, dtype=np.float32)
    sigma[:, 32:] = 4.0
    return rng.normal(0.0, 1.0, size=(64, 64)).astype(np.float32) * sigma, sigma


def memory_mapped(array):
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def read_r(image, **options):
    return read_images({"r": image}, BANDS, zeropoints={"r": 25.0}, **options)["r"]


@pytest.mark.parametrize(
    "as_map",
    [
        lambda sigma: sigma**-2,  # a plain array beside the image is a weight map
        lambda sigma: NoiseMap(sigma**-2),
        lambda sigma: NoiseMap(sigma**-2, kind="weight"),
        lambda sigma: NoiseMap(sigma**2, kind="variance"),
        lambda sigma: NoiseMap(sigma, kind="sigma"),
    ],
    ids=["plain", "noise_map", "weight", "variance", "sigma"],
)
def test_every_kind_of_noise_map_gives_the_same_per_pixel_sigma(noisy, as_map):
    data, sigma = noisy
    image = read_r(((data, None), as_map(sigma)))
    np.testing.assert_allclose(image.noise_map.sigma(image.noise_map.values), sigma, rtol=1e-6)
    assert image.noise == pytest.approx(3.0)  # the median sigma: half the pixels at 2, half at 4


@pytest.mark.parametrize(
    ("uncertainty", "kind"),
    [(StdDevUncertainty, "sigma"), (VarianceUncertainty, "variance"), (InverseVariance, "weight")],
)
def test_nddata_uncertainty_is_the_noise_map_read_as_stored(noisy, uncertainty, kind):
    data, sigma = noisy
    values = {"sigma": sigma, "variance": sigma**2, "weight": sigma**-2}[kind]
    image = read_r(NDData(data, uncertainty=uncertainty(values)))
    assert image.noise_map.kind == kind
    np.testing.assert_array_equal(image.noise_map.values, values)  # not converted to sigmas up front
    np.testing.assert_allclose(image.noise_map.sigma(image.noise_map.values), sigma, rtol=1e-6)


def test_zero_negative_and_non_finite_noise_values_are_bad_pixels():
    for kind in NOISE_MAP_KINDS:
        sigma = NoiseMap(np.ones((2, 2)), kind=kind).sigma(np.array([0.0, -1.0, np.nan, np.inf, 4.0]))
        assert np.isnan(sigma[:4]).all(), kind
        assert sigma[4] == {"weight": 0.5, "variance": 2.0, "sigma": 4.0}[kind]


def test_weight_map_files_are_memory_mapped_and_found_beside_the_image(noisy, tmp_path):
    data, sigma = noisy
    fits.PrimaryHDU(data).writeto(tmp_path / "r.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sigma**-2, name="WGT")]).writeto(
        tmp_path / "r.weight.fits"
    )
    for noise in (str(tmp_path / "r.weight.fits"), f"{tmp_path / 'r.weight.fits'}[WGT]"):
        image = read_r((str(tmp_path / "r.fits"), noise))
        assert memory_mapped(image.noise_map.values)
        np.testing.assert_allclose(image.noise_map.sigma(image.noise_map.values), sigma, rtol=1e-6)


def test_variance_plane_given_as_a_weight_map_is_refused_naming_the_fix(noisy, tmp_path):
    data, sigma = noisy
    path = tmp_path / "calexp.fits"
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(sigma**2, name="VARIANCE")]).writeto(path)
    with pytest.raises(ValueError, match=r"EXTNAME is 'VARIANCE'.*NoiseMap\(\.\.\., kind='variance'\)"):
        read_r((f"{path}[0]", f"{path}[VARIANCE]"))
    image = read_r((f"{path}[0]", NoiseMap(f"{path}[VARIANCE]", kind="variance")))
    np.testing.assert_allclose(image.noise_map.sigma(image.noise_map.values), sigma, rtol=1e-6)


def test_noise_map_errors_name_the_band_and_the_problem(noisy, tmp_path):
    data, sigma = noisy
    with pytest.raises(
        ValueError, match=r"band 'r': noise map shape \(3, 3\) differs from image shape \(64, 64\)"
    ):
        read_r(((data, None), np.ones((3, 3))))
    with pytest.raises(ValueError, match="band 'r': the image already carries an uncertainty"):
        read_r((NDData(data, uncertainty=StdDevUncertainty(sigma)), sigma**-2))
    with pytest.raises(
        FileNotFoundError, match=r"band 'r': noise map FITS file '.*nowhere\.fits' does not exist"
    ):
        read_r(((data, None), str(tmp_path / "nowhere.fits")))
    with pytest.raises(TypeError, match="band 'r': cannot read a noise map of type dict"):
        read_r(((data, None), {"weight": sigma}))
    with pytest.raises(TypeError, match="noise map values must be real numbers"):
        read_r(((data, None), sigma.astype(complex)))
    with pytest.raises(ValueError, match="NoiseMap kind must be one of"):
        NoiseMap(sigma, kind="rms")


def test_a_bare_array_pair_stays_an_array_and_wcs_pair(noisy):
    data, sigma = noisy
    with pytest.raises(TypeError, match=r"must be an astropy WCS or None.*\(\(array, wcs\), noise\)"):
        read_r((data, sigma))


def test_band_of_zero_weight_everywhere_is_blank_with_a_warning(noisy):
    data, sigma = noisy
    images = {"r": ((data, None), np.zeros_like(sigma)), "g": (data, None)}
    with pytest.warns(
        StarGalaxyWarning, match=r"\['r'\] hold no usable pixel.*of positive weight.*BAND_MISSING"
    ):
        band_images = read_images(images, BANDS, zeropoints={"r": 25.0, "g": 25.0})
    assert list(band_images) == ["g"]


# --- band names -----------------------------------------------------------------------------------

DEMO_FIELD = str(files("astro_stargal.data") / "demo_field.fits")


def test_band_names_match_exactly_else_one_band_ignoring_case_and_blanks():
    assert resolve_band("r", BANDS) == "r"
    assert resolve_band("R", BANDS) == "r"
    assert resolve_band(" r ", BANDS) == "r"
    assert resolve_band("nuv", BANDS) == "NUV"
    with pytest.raises(ValueError, match=r"unknown band name 'Ks'; the model's bands are \['NUV', 'u'"):
        resolve_band("Ks", BANDS)


def test_a_name_that_could_mean_two_bands_differing_in_case_is_refused_not_guessed():
    bands = ("u", "U", "g")
    assert resolve_band("u", bands) == "u" and resolve_band("U", bands) == "U"
    with pytest.raises(ValueError, match=r"' u' could mean any of the bands \['u', 'U'\]"):
        resolve_band(" u", bands)
    assert band_named_by_header({"EXTNAME": "U"}, bands) == ("U", "EXTNAME = 'U'")
    assert band_named_by_header({"FILTER": "SDSS-u"}, bands) == ("u", "FILTER = 'SDSS-u'")


@pytest.mark.parametrize(
    ("header", "band"),
    [
        ({"FILTER": "r"}, "r"),
        ({"FILTER": "R"}, "r"),
        ({"FILTER": "CSST-r"}, "r"),
        ({"FILTER": "SDSS r"}, "r"),
        ({"FILTER": "g.MP9401"}, "g"),
        ({"BAND": "NUV"}, "NUV"),
        ({"EXTNAME": "Z"}, "z"),
        ({"EXTNAME": "SCI", "BAND": "i"}, "i"),
        ({"FILTER": "F606W", "EXTNAME": "SCI"}, None),
        ({"FILTER": "g+r"}, None),  # names two bands: says nothing
        ({}, None),
    ],
)
def test_the_band_a_header_names(header, band):
    assert band_named_by_header(header, BANDS)[0] == band


def test_image_and_zeropoint_keys_follow_the_band_name_rule(noisy):
    data, _ = noisy
    images = read_images({"R": (data, None), "nuv": (data, None)}, BANDS, zeropoints={"R": 24.0, "NUV": 23.0})
    assert list(images) == ["NUV", "r"]
    assert (images["r"].zeropoint, images["NUV"].zeropoint) == (24.0, 23.0)
    with pytest.raises(ValueError, match=r"images names band 'r' twice, as 'r' and 'R'"):
        read_images({"r": (data, None), "R": (data, None)}, BANDS, zeropoints={"r": 25.0})
    with pytest.raises(ValueError, match=r"unknown band name in zeropoints 'Ks'"):
        read_images({"r": (data, None)}, BANDS, zeropoints={"Ks": 25.0})


@pytest.mark.parametrize("band", BANDS)
def test_a_multi_band_file_without_ext_gives_the_image_its_headers_name(band):
    with warnings.catch_warnings():
        warnings.simplefilter("error", StarGalaxyWarning)
        chosen = read_images({band: DEMO_FIELD}, BANDS)[band]
        explicit = read_images({band: f"{DEMO_FIELD}[{band}]"}, BANDS)[band]
    np.testing.assert_array_equal(chosen.data, explicit.data)


def _write_bands(path, bands, keyword="FILTER"):
    rng = np.random.default_rng(1)
    hdus = [fits.PrimaryHDU()]
    for band in bands:
        header = fits.Header({keyword: band, "MAGZERO": 25.0})
        hdus.append(fits.ImageHDU(rng.normal(size=(32, 32)).astype(np.float32), header=header))
    fits.HDUList(hdus).writeto(path)
    return str(path)


def test_a_file_whose_headers_name_other_bands_is_refused_listing_them(tmp_path):
    path = _write_bands(tmp_path / "blue.fits", ["NUV", "u"])
    with pytest.raises(
        ValueError,
        match=r"band 'r': the image file '.*blue\.fits' holds no image of band 'r'; its headers "
        r"\(FILTER/BAND/EXTNAME\) name its images \[1\] NUV, \[2\] u\..*'file\.fits\[EXT\]'.*header_bands=False",
    ):
        read_images({"r": path}, BANDS)


def test_a_file_whose_first_image_names_no_band_is_taken_as_given(tmp_path):
    path = _write_bands(tmp_path / "plain.fits", ["F606W", "u"])
    image = read_images({"r": path}, BANDS)["r"]
    np.testing.assert_array_equal(image.data, fits.getdata(path, 1))


def test_mislabelled_headers_are_overridden_by_ext_with_a_warning_or_ignored_on_request(tmp_path):
    path = _write_bands(tmp_path / "mislabelled.fits", ["g"])
    with pytest.raises(ValueError, match="holds no image of band 'r'"):
        read_images({"r": path}, BANDS)
    with pytest.warns(
        StarGalaxyWarning, match=r"band\(s\) \['r'\] name other bands.*\[1\]' has FILTER = 'g'"
    ):
        image = read_images({"r": f"{path}[1]"}, BANDS)["r"]
    np.testing.assert_array_equal(image.data, fits.getdata(path, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StarGalaxyWarning)
        image = read_images({"r": path}, BANDS, header_bands=False)["r"]
    np.testing.assert_array_equal(image.data, fits.getdata(path, 1))


def test_hdus_and_nddata_whose_headers_name_another_band_are_used_with_a_warning(noisy):
    data, _ = noisy
    hdu = fits.ImageHDU(data, header=fits.Header({"BAND": "g", "MAGZERO": 25.0}))
    with pytest.warns(StarGalaxyWarning, match=r"'r': ImageHDU has BAND = 'g'"):
        read_images({"r": hdu}, BANDS)
    with pytest.warns(StarGalaxyWarning, match=r"'r': the meta of the NDData has FILTER = 'i'"):
        read_images({"r": NDData(data, meta={"FILTER": "i"})}, BANDS, zeropoints={"r": 25.0})


def test_a_multi_band_weight_file_gives_the_weights_of_the_band(tmp_path, noisy):
    data, _ = noisy
    bands = ["g", "r"]
    path = tmp_path / "weights.fits"
    weights = [np.full(data.shape, 1.0, np.float32), np.full(data.shape, 0.25, np.float32)]
    hdus = [fits.ImageHDU(w, header=fits.Header({"FILTER": b})) for w, b in zip(weights, bands, strict=True)]
    fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(path)
    image = read_images({"r": ((data, None), str(path))}, BANDS, zeropoints={"r": 25.0})["r"]
    assert image.noise == 2.0
