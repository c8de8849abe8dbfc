"""Specifications of the realistic skies: aberrated PSFs, co-adds, defects and populations."""

import hashlib
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from photutils.aperture import CircularAperture

from astro_stargal.instrument import CSST_BANDS, PIXEL_SCALE, band_order
from astro_stargal.simulate import (
    AberratedPSF,
    Coadd,
    DefectFlag,
    Defects,
    Populations,
    Realism,
    simulate_field,
    simulate_tiles,
    write_field,
)
from astro_stargal.simulate._coadd import resample_to_tile, resampling_transfer
from astro_stargal.simulate._defects import bleed_along_columns
from astro_stargal.simulate._depth import _isolated_bright_stars
from astro_stargal.simulate._realism import resolve_realism

pytest.importorskip("galsim")

#: Only the stars, on a single image: what the optics and jitter deliver.
STARS_ONLY = {"star_density": 1500, "galaxy_density": 0}

#: Every population often enough to appear in a small field.
MANY_OF_EACH = Populations(
    white_dwarf_fraction=0.2,
    unresolved_binary_fraction=0.2,
    resolved_binary_fraction=0.2,
    merger_fraction=0.2,
    clumpy_fraction=0.8,
    qso_density=60.0,
    bright_star_density=0.0,
)


@pytest.fixture(scope="module")
def realistic_field():
    realism = Realism(psf=AberratedPSF(nodes=2), populations=MANY_OF_EACH)
    return simulate_field(256, seed=12, bands=["g", "r"], star_density=600, realism=realism, return_maps=True)


def _fit_fwhm_of_bright_stars(image, truth, band):
    from photutils.psf import fit_fwhm

    stars = _isolated_bright_stars(truth, band)
    x, y = np.asarray(truth["x"])[stars], np.asarray(truth["y"])[stars]
    ny, nx = image.shape
    inside = (x > 6) & (y > 6) & (x < nx - 7) & (y < ny - 7)
    assert inside.sum() >= 10, "the test needs bright isolated stars"
    positions = np.column_stack([x[inside], y[inside]])
    return float(np.median(fit_fwhm(image.astype(float), xypos=positions, fit_shape=7))) * PIXEL_SCALE


def test_nominal_field_pixels_are_those_from_before_realism_existed():
    # sha256 of this field's u and i pixels, computed with the package before the realism code.
    images, _ = simulate_field((48, 64), seed=5, bands=["u", "i"], star_density=2000)
    digest = hashlib.sha256(b"".join(images[band].data.tobytes() for band in ("u", "i"))).hexdigest()
    assert digest == "3d37b3a14c202a2caaeead81b586de14097a7e3e20b451c278cbbab0fd2f150c"
    assert "COADD" not in images["u"].header and "PSFGFWHM" not in images["u"].header


def test_realistic_field_is_reproducible_by_seed_and_differs_between_seeds():
    kwargs = {"bands": ["i"], "star_density": 800, "realism": Realism(psf=AberratedPSF(nodes=2))}
    for variation in (False, True):
        first = simulate_field(96, seed=3, variation=variation, return_maps=True, **kwargs)
        second = simulate_field(96, seed=3, variation=variation, return_maps=True, **kwargs)
        other = simulate_field(96, seed=4, variation=variation, return_maps=True, **kwargs)
        assert first[0]["i"].data.tobytes() == second[0]["i"].data.tobytes()
        for kind, extension in (("weight", "WEIGHT"), ("psf", "PSF"), ("defects", "DEFECTS")):
            assert np.array_equal(first[2]["i"][kind][extension].data, second[2]["i"][kind][extension].data)
        assert first[1].pformat(max_lines=-1, max_width=-1) == second[1].pformat(max_lines=-1, max_width=-1)
        assert not np.array_equal(first[0]["i"].data, other[0]["i"].data)


@pytest.mark.parametrize("r_fwhm", [0.12, 0.20])
def test_bright_stars_show_the_r_band_fwhm_asked_for(r_fwhm):
    realism = Realism(psf=AberratedPSF(r_fwhm=r_fwhm), coadd=None, defects=None, populations=None)
    images, truth = simulate_field(384, seed=4, bands=["r"], realism=realism, **STARS_ONLY)
    header = images["r"].header
    measured = _fit_fwhm_of_bright_stars(images["r"].data, truth, "r")
    assert header["PSFFWHM"] == pytest.approx(r_fwhm, rel=0.005)
    assert measured == pytest.approx(header["PSFGFWHM"], rel=0.03), "stars have the recorded PSF"
    # A Gaussian fit reads an undersampled Airy-like core 7 percent wide at 0.12", 3 percent at 0.2".
    assert measured == pytest.approx(r_fwhm, rel=0.05 if r_fwhm >= 0.2 else 0.08)


def test_coadded_stars_are_broader_by_the_resampling_and_match_the_recorded_psf():
    realism = Realism(psf=AberratedPSF(r_fwhm=0.12), coadd=Coadd(), defects=None, populations=None)
    images, truth = simulate_field(384, seed=4, bands=["r"], realism=realism, **STARS_ONLY)
    header = images["r"].header
    measured = _fit_fwhm_of_bright_stars(images["r"].data, truth, "r")
    assert header["PSFFWHMC"] > header["PSFFWHM"] * 1.05, "Lanczos3 resampling broadens a 1.6 px PSF"
    assert measured > 0.12 * 1.04
    assert measured == pytest.approx(header["PSFGFWHM"], rel=0.03)


def test_an_r_band_fwhm_narrower_than_the_optics_is_refused():
    with pytest.raises(ValueError, match=r"r_fwhm=0\.05"):
        simulate_field(32, seed=1, bands=["r"], realism=Realism(psf=AberratedPSF(r_fwhm=0.05)))


def test_psf_varies_over_the_tile_and_the_psf_file_records_each_node(realistic_field):
    _, _, maps = realistic_field
    with_variation = maps["r"]["psf"]
    nodes = Table(with_variation["NODES"].data)
    assert len(nodes) == 4 and with_variation["PSF"].data.shape == (4, 256, 256)
    assert np.ptp(nodes["coadd_fwhm"]) > 0.003 * np.median(nodes["coadd_fwhm"])
    assert np.ptp(nodes["ellipticity"]) > 0.003
    assert np.all((nodes["flux"] > 0.97) & (nodes["flux"] <= 1.0))
    assert sorted(set(np.round(nodes["x"], 1))) == [63.5, 191.5]

    realism = Realism(psf=AberratedPSF(nodes=2, field_variation=0.0), defects=None, populations=None)
    _, _, flat_maps = simulate_field(256, seed=12, bands=["r"], realism=realism, return_maps=True)
    flat = flat_maps["r"]["psf"]["PSF"].data
    assert all(np.array_equal(flat[0], plane) for plane in flat[1:])


def test_psf_widens_with_wavelength_and_its_aberrations_shrink_in_waves(realistic_field):
    images, _, maps = realistic_field
    g_nodes, r_nodes = (Table(maps[band]["psf"]["NODES"].data) for band in ("g", "r"))
    assert images["g"].header["PSFFWHM"] < images["r"].header["PSFFWHM"]
    ratio = CSST_BANDS["r"].effective_wavelength / CSST_BANDS["g"].effective_wavelength
    np.testing.assert_allclose(g_nodes["z5"], r_nodes["z5"] * ratio, rtol=1e-9)


def test_weight_map_is_the_inverse_variance_of_the_coadd_noise():
    realism = Realism(psf=None, coadd=Coadd(gap_probability=0.0), defects=None, populations=None)
    images, _, maps = simulate_field(
        384, seed=9, bands=["r"], star_density=0, galaxy_density=0, realism=realism, return_maps=True
    )
    data = images["r"].data.astype(float)[8:-8, 8:-8]
    weight_hdu = maps["r"]["weight"]["WEIGHT"]
    weight = float(np.median(weight_hdu.data))
    assert weight_hdu.header["BUNIT"] == "(electron/s)**-2"
    assert weight_hdu.header["PIXVARWT"] == images["r"].header["PIXVARWT"] < 1.0
    # Resampling lowers the single-pixel variance by PIXVARWT; sums over apertures keep 1/weight.
    assert data.var() * weight == pytest.approx(images["r"].header["PIXVARWT"], rel=0.03)
    positions = np.random.default_rng(0).uniform(20, 340, size=(1500, 2))
    aperture = CircularAperture(positions, 6.0)
    sums = aperture.do_photometry(images["r"].data.astype(float), method="center")[0]
    n_pixels = aperture.to_mask(method="center")[0].data.sum()
    assert np.std(sums) == pytest.approx(np.sqrt(n_pixels / weight), rel=0.1)


@pytest.mark.parametrize(("kernel", "least_correlation"), [("lanczos3", 0.04), ("bilinear", 0.1)])
def test_coadd_noise_is_correlated_between_neighbouring_pixels(kernel, least_correlation):
    def neighbour_correlation(realism):
        images, _ = simulate_field(
            256, seed=2, bands=["g"], star_density=0, galaxy_density=0, realism=realism
        )
        data = images["g"].data.astype(float)
        return np.corrcoef(data[:, 1:].ravel(), data[:, :-1].ravel())[0, 1]

    coadd = Realism(psf=None, coadd=Coadd(resampling=kernel), defects=None, populations=None)
    single = Realism(psf=None, coadd=None, defects=None, populations=None)
    assert neighbour_correlation(coadd) > least_correlation
    assert abs(neighbour_correlation(single)) < 0.02


def test_chip_gaps_leave_fewer_exposures_and_proportionally_less_weight():
    realism = Realism(
        psf=None, coadd=Coadd(gap_probability=1.0, gap_width=40.0), defects=None, populations=None
    )
    images, truth, maps = simulate_field(128, seed=6, bands=["y"], realism=realism, return_maps=True)
    n_exposures = maps["y"]["weight"]["NEXP"].data
    weight = maps["y"]["weight"]["WEIGHT"].data
    assert n_exposures.max() == CSST_BANDS["y"].n_visits == images["y"].header["NEXPOSE"]
    assert (n_exposures < CSST_BANDS["y"].n_visits).mean() > 0.1
    unsaturated = (maps["y"]["defects"]["DEFECTS"].data & DefectFlag.SATURATED) == 0
    per_exposure = weight[unsaturated] / np.maximum(n_exposures[unsaturated], 1)
    assert np.ptp(per_exposure[n_exposures[unsaturated] > 0]) < 1e-3 * per_exposure.max()
    assert len(truth.meta["bands"]["y"]["exposures"]) == 4


def test_cosmic_rays_survive_in_a_single_exposure_and_are_rejected_where_two_cover():
    def flagged(n_exposures, survival):
        realism = Realism(
            psf=None,
            coadd=Coadd(n_exposures=n_exposures, gap_probability=0.0),
            defects=Defects(cosmic_ray_rate=300.0, cosmic_ray_survival=survival, hot_pixel_fraction=0.0),
            populations=None,
        )
        _, _, maps = simulate_field(256, seed=3, bands=["r"], star_density=0, galaxy_density=0,
                                    realism=realism, return_maps=True)  # fmt: skip
        flags = maps["r"]["defects"]["DEFECTS"].data
        return (flags & DefectFlag.COSMIC_RAY) > 0, maps["r"]["weight"]["NEXP"].data

    single, _ = flagged(1, 0.0)
    rejected, n_exposures = flagged(2, 0.0)
    assert single.sum() > 100, "every cosmic ray of a single exposure stays"
    assert not rejected.any()
    assert (n_exposures == 1).sum() > 100, "rejected cosmic rays leave one exposure there"


def test_saturated_stars_bleed_along_columns_and_get_no_weight():
    realism = Realism(
        psf=AberratedPSF(nodes=1),
        defects=Defects(cosmic_ray_rate=0.0, hot_pixel_fraction=0.0, sky_residual=0.0),
        populations=Populations(bright_star_density=0.0),
    )
    images, truth, maps = simulate_field(
        160, seed=1, bands=["r"], star_density=0, galaxy_density=0, realism=realism, return_maps=True
    )
    assert len(truth) == 0
    bright = Populations(bright_star_density=150.0)
    images, truth, maps = simulate_field(
        160, seed=1, bands=["r"], star_density=0, galaxy_density=0,
        realism=Realism(psf=AberratedPSF(nodes=1), defects=realism.defects, populations=bright),
        return_maps=True,
    )  # fmt: skip
    flags = maps["r"]["defects"]["DEFECTS"].data
    saturated = (flags & DefectFlag.SATURATED) > 0
    bleed = (flags & DefectFlag.BLEED_TRAIL) > 0
    assert saturated.any() and bleed.any()
    _, columns = np.nonzero(bleed)
    assert np.all(np.isin(columns, np.nonzero(saturated.any(axis=0))[0])), "bleeding stays in its column"
    masked = saturated | bleed
    assert np.all(maps["r"]["weight"]["WEIGHT"].data[masked] == 0)
    assert np.all(images["r"].data[masked] == np.float32(images["r"].header["SATURATE"]))


def test_bleeding_conserves_charge_and_fills_pixels_to_the_full_well():
    electrons = np.zeros((9, 3))
    electrons[4, 1] = 55.0
    bled, saturated = bleed_along_columns(electrons, 10.0)
    assert bled.sum() == pytest.approx(55.0) and bled.max() == 10.0
    assert saturated.sum() == 1 and np.count_nonzero(bled[:, 1]) == 7 and not bled[:, [0, 2]].any()


def test_every_population_appears_with_its_label_and_columns(realistic_field):
    _, truth, _ = realistic_field
    for name in ("point_like", "population", "system", "separation", "n_clumps", "companion_temperature"):
        assert name in truth.colnames, name
    populations = set(truth["population"])
    assert {"star", "m_dwarf", "white_dwarf", "unresolved_binary", "qso", "galaxy"} <= populations
    assert set(truth["label"]) == {"star", "galaxy", "qso"}
    assert np.array_equal(truth["point_like"], truth["label"] != "galaxy")
    qsos = truth[truth["label"] == "qso"]
    assert np.all(qsos["population"] == "qso") and np.all(qsos["redshift"] > 0.25)
    assert np.all(qsos["half_light_radius"] == 0) and set(qsos["sed_type"]) == {"QSO"}
    galaxies = truth[truth["label"] == "galaxy"]
    assert np.isfinite(galaxies["sersic_index"]).any() and np.any(galaxies["n_clumps"] > 0)
    binaries = truth["population"] == "unresolved_binary"
    assert np.all((truth["companion_temperature"] > 0) == binaries)


def test_resolved_binaries_and_mergers_are_two_rows_sharing_a_system_id(realistic_field):
    _, truth, _ = realistic_field
    systems, counts = np.unique(truth["system"], return_counts=True)
    pairs = systems[counts == 2]
    assert set(counts) == {1, 2} and len(pairs) >= 5
    kinds = set()
    for system in pairs:
        members = truth[truth["system"] == system]
        assert system in members["id"], "the system id is its primary's id"
        distance = np.hypot(*(np.diff(np.asarray(members[name]))[0] for name in ("x", "y"))) * PIXEL_SCALE
        assert members["separation"][0] == members["separation"][1] == pytest.approx(distance)
        labels = set(members["label"])
        assert labels in ({"star"}, {"galaxy"})
        low, high = (0.05, 0.3) if labels == {"star"} else (0.2, 1.0)
        assert low <= distance <= high
        kinds |= labels
    assert kinds == {"star", "galaxy"}
    singles = systems[counts == 1]
    single_rows = np.isin(truth["system"], singles)
    assert np.array_equal(truth["system"][single_rows], truth["id"][single_rows])
    assert np.all(np.isnan(truth["separation"][single_rows]))


def test_m_dwarfs_are_redder_and_white_dwarfs_bluer_than_main_sequence_stars(realistic_field):
    _, truth, _ = realistic_field
    r_minus_i = np.asarray(truth["mag_r"] - truth["mag_i"])
    g_minus_r = np.asarray(truth["mag_g"] - truth["mag_r"])
    population = np.asarray(truth["population"])
    assert np.median(r_minus_i[population == "m_dwarf"]) > 0.9
    assert np.median(r_minus_i[population == "star"]) < 0.5
    white_dwarfs = g_minus_r[population == "white_dwarf"]
    assert np.median(white_dwarfs) < 0.0 < np.median(g_minus_r[population == "star"]) - 0.3
    assert np.all(white_dwarfs < 0.6)


def test_galaxies_span_sersic_indices_from_half_to_six_and_clumps_are_bluer_than_their_galaxy():
    from astro_stargal.simulate._conditions import FieldConditions
    from astro_stargal.simulate._populations import draw_catalog, make_wcs

    shape = (512, 512)
    options = resolve_realism(Realism(populations=MANY_OF_EACH), np.random.SeedSequence(1), False).populations
    truth, render = draw_catalog(
        np.random.default_rng(1), np.random.default_rng(2), shape, 0.0, 600.0, FieldConditions(),
        make_wcs(shape, 150.0, 2.0), populations=options, population_seed=np.random.SeedSequence(3),
    )  # fmt: skip
    sersic = np.asarray(truth["sersic_index"])[np.isfinite(truth["sersic_index"])]
    assert sersic.min() >= 0.5 and sersic.max() <= 6.0
    assert sersic.min() <= 0.75 and sersic.max() >= 5.75 and len(np.unique(sersic)) > 18
    shares = np.array([clumps["share"] for clumps in render["clumps"] if clumps is not None])
    nuv, g, r = (band_order().index(name) for name in ("NUV", "g", "r"))
    assert len(shares) > 20 and np.median(shares[:, g] / shares[:, r]) > 1.25
    assert np.median(shares[:, nuv] / shares[:, r]) > 1.6


def test_variation_draws_unset_options_per_field_and_keeps_the_ones_given():
    drawn = [resolve_realism(Realism(), np.random.SeedSequence(seed), True) for seed in range(40)]
    r_fwhm = np.array([realism.psf.r_fwhm for realism in drawn])
    assert r_fwhm.min() < 0.12 and r_fwhm.max() > 0.21 and np.all((r_fwhm >= 0.08) & (r_fwhm <= 0.25))
    assert {realism.coadd.resampling for realism in drawn} == {"lanczos3", "bilinear"}
    pinned = [
        resolve_realism(Realism(psf=AberratedPSF(r_fwhm=0.2)), np.random.SeedSequence(s), True)
        for s in range(5)
    ]
    for realism, free in zip(pinned, drawn, strict=False):
        assert realism.psf.r_fwhm == 0.2
        assert realism.psf.aberrations == free.psf.aberrations, "pinning one option moves no other"
        assert realism.coadd == free.coadd


def test_drawn_conditions_are_recorded_in_headers_and_truth_metadata():
    realism = Realism(psf=AberratedPSF(nodes=1))
    images, truth = simulate_field(64, seed=8, bands=["z"], realism=realism, variation=True)
    header, meta = images["z"].header, truth.meta
    assert header["PSFRFWHM"] == pytest.approx(meta["realism"]["psf"]["r_fwhm"], abs=1e-5)
    assert header["RESAMPL"] == meta["realism"]["coadd"]["resampling"] == meta["bands"]["z"]["kernel"]
    assert header["CRRATE"] == pytest.approx(meta["realism"]["defects"]["cosmic_ray_rate"], abs=1e-3)
    assert header["DITHX1"] == pytest.approx(meta["bands"]["z"]["exposures"][0]["dither_x"], abs=1e-4)
    assert len(meta["aberration_field"]["centre"]) == 8
    assert "Realism(psf=AberratedPSF(" in header["SIMCALL"]


def test_realism_options_and_arguments_are_validated_with_the_offending_value():
    with pytest.raises(ValueError, match=r"-0\.1"):
        AberratedPSF(r_fwhm=-0.1)
    with pytest.raises(ValueError, match="'nearest'"):
        Coadd(resampling="nearest")
    with pytest.raises(ValueError, match=r"1\.5"):
        Populations(qso_density=2.0, white_dwarf_fraction=1.5)
    with pytest.raises(TypeError, match="Coadd"):
        Realism(psf=Coadd())
    with pytest.raises(TypeError, match="'yes'"):
        simulate_field(32, seed=1, realism="yes")
    with pytest.raises(ValueError, match="return_maps"):
        simulate_field(32, seed=1, return_maps=True)


def test_resampling_keeps_flux_and_its_transfer_is_one_at_zero_frequency():
    image = np.zeros((21, 21))
    image[10, 10] = 1.0
    for kernel in ("lanczos3", "bilinear"):
        assert resample_to_tile(image, 0.3, 0.7, kernel).sum() == pytest.approx(1.0)
        assert resampling_transfer(kernel, np.array([0.0]))[0] == pytest.approx(1.0)
        assert resampling_transfer(kernel, np.array([0.5]))[0] < 0.7
    np.testing.assert_allclose(resample_to_tile(image, 0.0, 0.0, "lanczos3"), image, atol=1e-15)


def test_write_field_and_tiles_write_maps_beside_each_image(tmp_path):
    realism = Realism(psf=AberratedPSF(nodes=1), populations=MANY_OF_EACH)
    write_field(tmp_path / "one", 64, seed=2, bands=["r"], realism=realism)
    assert sorted(os.listdir(tmp_path / "one")) == [
        "r.defects.fits", "r.fits", "r.psf.fits", "r.weight.fits", "truth.ecsv"
    ]  # fmt: skip
    with fits.open(tmp_path / "one" / "r.weight.fits") as hdus:
        assert [hdu.name for hdu in hdus[1:]] == ["WEIGHT", "NEXP"]
    written = Table.read(tmp_path / "one" / "truth.ecsv")
    assert written.meta["realism"]["psf"]["nodes"] == 1

    truth = simulate_tiles(tmp_path / "tiles", 2, size=96, seed=5, bands=["r"], realism=realism)
    for tile in (0, 1):
        for kind in ("", ".weight", ".psf", ".defects"):
            assert (tmp_path / "tiles" / f"tile{tile}_r{kind}.fits").is_file()
    for system in np.unique(truth["system"]):
        members = truth[truth["system"] == system]
        assert system in members["id"] and len(set(members["tile"])) == 1
    tile_conditions = Table.read(tmp_path / "tiles" / "truth.ecsv").meta["tile_conditions"]
    assert [tile["realism"]["psf"]["nodes"] for tile in tile_conditions] == [1, 1]
    assert tile_conditions[0]["bands"]["r"]["exposures"] != tile_conditions[1]["bands"]["r"]["exposures"]


def test_command_line_psf_fwhm_makes_a_realistic_field(tmp_path):
    from astro_stargal.cli import main

    outdir = tmp_path / "field"
    assert main(["simulate", str(outdir), "--size", "48", "--seed", "1", "--psf-fwhm", "0.2"]) == 0
    header = fits.getheader(outdir / "r.fits", ext=1)
    assert header["PSFRFWHM"] == 0.2 and header["COADD"]
    assert (outdir / "r.psf.fits").is_file()
