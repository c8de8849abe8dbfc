"""PSF awareness: each band's PSF measured or given, checked against the model's range, and used in features."""

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from astro_stargal import SourceFlag, StarGalaxyWarning, classify_sources
from astro_stargal.instrument import PIXEL_SCALE
from astro_stargal.io import read_images
from astro_stargal.models import METADATA_FILE, StarGalaxyNet, load_model
from astro_stargal.pipeline import FEATURE_NAMES, PSF_FEATURE_NAMES, PSFTables, measure_features
from astro_stargal.psf import (
    PSFMeasurementError,
    PSFModel,
    as_psf_model,
    measure_psf,
    psf_ellipticity,
    psf_from_galsim,
    psf_fwhm,
    read_psf_file,
    read_psfex,
)

galsim = pytest.importorskip("galsim")

from astro_stargal.simulate import AberratedPSF, Realism, simulate_field  # noqa: E402


@pytest.fixture(scope="module")
def aberrated_field():
    """A small crowded r-band field with an aberrated, drifting PSF, and its true PSF grid."""
    realism = Realism(psf=AberratedPSF(r_fwhm=0.16), coadd=None, defects=None, populations=None)
    images, truth, maps = simulate_field(
        512, seed=11, bands=["r"], star_density=1200, galaxy_density=300, realism=realism, return_maps=True
    )
    return images["r"], truth, maps["r"]["psf"]


def test_psf_measured_from_a_simulated_image_is_within_5_percent_in_fwhm(aberrated_field):
    image, truth, true_psf = aberrated_field
    band_image = read_images({"r": image}, ["r"])["r"]
    psf = measure_psf(
        band_image.data,
        np.asarray(truth["x"]),
        np.asarray(truth["y"]),
        noise=band_image.noise,
        saturation=band_image.saturation,
    )
    truth_grid = PSFModel(
        true_psf["PSF"].data,
        np.column_stack([true_psf["NODES"].data["x"], true_psf["NODES"].data["y"]]),
        oversampling=true_psf["PSF"].header["OVERSAMP"],
        origin="array",
    )
    nearest = truth_grid.node_of(psf.nodes[:, 0], psf.nodes[:, 1])
    ratio = psf.fwhm / truth_grid.fwhm[nearest]
    assert np.all(np.abs(ratio - 1) < 0.05), ratio
    assert psf.origin == "measured" and psf.n_stars.min() >= 8


def test_the_simulators_psf_grid_is_read_as_given_and_its_nodes_kept(aberrated_field, tmp_path):
    _, _, true_psf = aberrated_field
    path = tmp_path / "r.psf.fits"
    true_psf.writeto(path)
    psf = read_psf_file(path)
    assert len(psf) == len(true_psf["NODES"].data)
    np.testing.assert_allclose(psf.nodes[:, 0], true_psf["NODES"].data["x"])
    assert psf.oversampling == true_psf["PSF"].header["OVERSAMP"]


def test_too_few_stars_is_an_error_naming_the_count():
    image = np.random.default_rng(0).normal(size=(100, 100))
    with pytest.raises(PSFMeasurementError, match="only 0 isolated"):
        measure_psf(image, np.array([50.0]), np.array([50.0]), noise=1.0)


def test_every_psf_star_carries_a_label_so_photutils_can_name_one_it_excludes(monkeypatch):
    # photutils' EPSFBuilder reports a star whose fit fails after three iterations as
    # ``star.id_label - 1``; an unlabelled star made that report a TypeError.
    from photutils.psf import EPSFBuilder

    built = []
    original = EPSFBuilder.__call__

    def spy(self, stars):
        built.append([star.id_label for star in stars.all_stars])
        return original(self, stars)

    monkeypatch.setattr(EPSFBuilder, "__call__", spy)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :200]
    x, y = (np.mgrid[20:200:30, 20:200:30] + rng.uniform(-0.5, 0.5, (2, 6, 6))).reshape(2, -1)
    image = rng.normal(0, 1, (200, 200))
    for xs, ys in zip(x, y, strict=True):
        image += 3000 * np.exp(-((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * 0.9**2)) / (2 * np.pi * 0.81)
    measure_psf(image, x, y, noise=1.0)
    assert built
    for labels in built:
        assert all(isinstance(label, int) for label in labels)
        assert len(set(labels)) == len(labels)
        assert min(labels) >= 1


def test_psfex_model_is_evaluated_as_its_polynomial_in_the_fitted_area(tmp_path):
    yy, xx = np.mgrid[:25, :25] - 12.0
    constant = np.exp(-(xx**2 + yy**2) / (2 * 3.0**2))
    slope = 0.2 * np.exp(-(xx**2 + yy**2) / (2 * 4.5**2))  # the PSF widens towards +x
    basis = np.stack([constant, slope, np.zeros_like(constant)])  # 1, x, y for degree 1
    table = Table({"PSF_MASK": basis[None]})
    hdu = fits.table_to_hdu(table)
    hdu.name = "PSF_DATA"
    for key, value in {
        "POLNAXIS": 2,
        "POLNAME1": "X_IMAGE",
        "POLNAME2": "Y_IMAGE",
        "POLZERO1": 1000.5,
        "POLZERO2": 1000.5,
        "POLSCAL1": 2000.0,
        "POLSCAL2": 2000.0,
        "POLDEG1": 1,
        "PSF_SAMP": 0.5,
    }.items():
        hdu.header[key] = value
    path = tmp_path / "model.psf"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)

    psf = read_psfex(path)

    assert psf.oversampling == 2.0 and psf.origin == "psfex"
    left, right = np.argmin(psf.nodes[:, 0]), np.argmax(psf.nodes[:, 0])
    assert psf.fwhm[right] > psf.fwhm[left]  # wider at +x, as the x term says
    scaled = (psf.nodes[left, 0] + 1 - 1000.5) / 2000.0
    expected = constant + scaled * slope
    np.testing.assert_allclose(
        psf.images[left] / psf.images[left].sum(), expected / expected.sum(), atol=1e-12
    )


def test_galsim_profile_is_drawn_with_the_pixel():
    psf = psf_from_galsim(galsim.Gaussian(fwhm=0.12), PIXEL_SCALE)
    pixel_sigma = 1 / np.sqrt(12)  # a box pixel's rms, in pixels
    expected = 2.3548 * np.hypot(0.12 / 2.3548 / PIXEL_SCALE, pixel_sigma)  # Gaussian approximation
    assert abs(psf.fwhm[0] / expected - 1) < 0.03
    assert psf.ellipticity[0] < 0.01


def test_ellipticity_and_fwhm_of_an_elongated_psf():
    yy, xx = np.mgrid[:81, :81] - 40.0
    image = np.exp(-(xx**2 / (2 * 8.0**2) + yy**2 / (2 * 6.0**2)))
    assert abs(psf_ellipticity(image, 4) - (64 - 36) / (64 + 36)) < 0.005
    assert 2.3548 * 6.0 / 4 < psf_fwhm(image, 4) < 2.3548 * 8.0 / 4


def test_a_bad_psf_is_refused_naming_the_band():
    with pytest.raises(ValueError, match="band 'r'"):
        as_psf_model(np.ones((4, 5)), "r", PIXEL_SCALE)
    with pytest.raises(TypeError, match="band 'g'"):
        as_psf_model({"not": "a psf"}, "g", PIXEL_SCALE)


# --------------------------------------------------------------------------
# The PSF against the model's range
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_with_range(model_dir, tmp_path_factory):
    """The test model, its validity range set: r-band PSF FWHM 0.05-0.10" (the fields' is 0.147")."""
    directory = tmp_path_factory.mktemp("ranged")
    shutil.copytree(model_dir, directory, dirs_exist_ok=True)
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["validity"] = {"psf_fwhm": {"r": [0.05, 0.10]}, "psf_ellipticity_max": {"r": 0.05}}
    metadata["reference_psf_fwhm"] = {"r": 0.13}
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    return directory


def test_psf_outside_the_models_range_is_a_warning_and_a_flag_on_every_source_on_the_image(
    model_with_range, field, field_psf
):
    with pytest.warns(
        StarGalaxyWarning, match=r"outside the range the model was trained on \(r: FWHM 0.14\d"
    ):
        result = classify_sources(
            field.table(), field.images(), weights=model_with_range, device="cpu", psf=field_psf
        )
    flags = np.asarray(result["sg_flags"])
    assert np.all((flags & SourceFlag.PSF_OUT_OF_RANGE) != 0)
    assert np.isfinite(result["p_star"]).all()  # flagged, still classified


def test_psf_inside_the_range_is_not_flagged(model_dir, field, field_psf):
    directory = model_dir.parent / "wide_range"
    shutil.copytree(model_dir, directory, dirs_exist_ok=True)
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["validity"] = {"psf_fwhm": {"r": [0.10, 0.20]}, "psf_ellipticity_max": {"r": 0.05}}
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StarGalaxyWarning)
        result = classify_sources(
            field.table(), field.images(), weights=directory, device="cpu", psf=field_psf
        )
    assert not np.any(np.asarray(result["sg_flags"]) & SourceFlag.PSF_OUT_OF_RANGE)


def test_too_few_stars_is_said_and_flagged_when_no_band_can_be_measured(model_with_range, field):
    with pytest.warns(StarGalaxyWarning, match="could not be measured from the table's sources"):
        result = classify_sources(field.table(), field.images(), weights=model_with_range, device="cpu")
    flags = np.asarray(result["sg_flags"])
    on_image = (flags & SourceFlag.OFF_IMAGE) == 0
    assert np.all((flags[on_image] & SourceFlag.PSF_UNMEASURED) != 0)


def test_a_psf_for_a_band_the_model_lacks_is_refused(classify, field):
    with pytest.raises(ValueError, match="psf names band"):
        classify(field.table(), field.images(), psf={"Ks": np.ones((5, 5))})


# --------------------------------------------------------------------------
# Features against the PSF
# --------------------------------------------------------------------------


def _psf_tables(sigma=0.8, stamp_size=32):
    yy, xx = np.mgrid[:61, :61] - 30.0
    image = np.exp(-(xx**2 + yy**2) / (2 * (4 * sigma) ** 2))
    return PSFTables.from_psf(PSFModel(image, [[0.0, 0.0]], oversampling=4, origin="array"), stamp_size)


def _source(sigma, flux=2000.0, size=32, centre=15.6):
    yy, xx = np.mgrid[:size, :size]
    return flux * np.exp(-((xx - centre) ** 2 + (yy - centre) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)


def test_a_point_source_matches_its_psf_and_an_extended_one_does_not():
    tables = _psf_tables()
    stamps = np.stack([_source(0.8), _source(1.6)]).astype(np.float32)
    position = np.full(2, 15.6)
    features, _, _ = measure_features(
        stamps, position, position, noise=1.0, zeropoint=25.0, psf_tables=tables, psf_node=np.zeros(2, int)
    )
    named = dict(zip(FEATURE_NAMES + PSF_FEATURE_NAMES, features.T, strict=True))
    assert abs(named["spread_model"][0]) < 0.002 < named["spread_model"][1]
    assert abs(named["size_excess"][0]) < 0.05 and named["size_excess"][1] > 1.0
    assert abs(named["psf_minus_aper"][0]) < 0.02 and named["psf_minus_aper"][1] > 0.2
    assert abs(named["concentration_excess"][0]) < 0.03 < named["concentration_excess"][1]
    assert named["psf_fwhm"][0] == pytest.approx(2.3548 * 0.8, rel=0.02)


def test_torch_psf_features_equal_numpy_ones():
    from astro_stargal.pipeline import measure_features_torch

    tables = _psf_tables()
    rng = np.random.default_rng(3)
    stamps = np.stack([_source(s, centre=15 + rng.uniform()) for s in (0.8, 1.0, 1.5, 2.5)]).astype(
        np.float32
    )
    stamps += rng.normal(0, 1, stamps.shape).astype(np.float32)
    x = rng.uniform(15.0, 16.0, 4)
    y = rng.uniform(15.0, 16.0, 4)
    node = np.zeros(4, int)
    reference, _, _ = measure_features(
        stamps, x, y, noise=1.0, zeropoint=25.0, psf_tables=tables, psf_node=node
    )
    result, _, _ = measure_features_torch(
        stamps, x, y, noise=1.0, zeropoint=25.0, psf_tables=tables.to("cpu"), psf_node=torch.from_numpy(node)
    )
    np.testing.assert_allclose(result.numpy(), reference, rtol=2e-4, atol=2e-4)


# --------------------------------------------------------------------------
# A PSF-conditioned model
# --------------------------------------------------------------------------


def test_a_model_asking_for_an_unknown_feature_is_refused_naming_it(classify, field, model_dir, tmp_path):
    directory = tmp_path / "future"
    shutil.copytree(model_dir, directory)
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["feature_names"][-1] = "sersic_index_from_the_future"
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=r"unknown catalog feature.*sersic_index_from_the_future"):
        classify(field.table(), field.images(), weights=directory)


def test_inconsistent_metadata_is_refused_with_a_clear_error(model_dir, tmp_path):
    directory = tmp_path / "broken"
    shutil.copytree(model_dir, directory)
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["feature_names"] = metadata["feature_names"][:4]
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=r"feature_names lists 4 feature.*n_features=6"):
        load_model(directory, device="cpu")


def test_a_model_with_psf_features_classifies_with_the_given_psf(
    model_dir, field, field_psf, tmp_path, bands
):
    from astro_stargal.models import save_weights

    torch.manual_seed(1)
    names = list(FEATURE_NAMES + PSF_FEATURE_NAMES)
    net = StarGalaxyNet(len(bands), len(names), backbone="resnet18")
    metadata = {"name": "psf-test", "bands": list(bands), "stamp_size": 32, "feature_names": names}
    directory = save_weights(net, tmp_path / "psf_model", metadata=metadata)
    result = classify_sources(field.table(), field.images(), weights=directory, device="cpu", psf=field_psf)
    assert np.isfinite(result["p_star"][:3]).all()
    model = load_model(directory, device="cpu")
    assert model.feature_names == tuple(names)
