"""Drawing the sources of a band, observing them (noise, saturation) and describing the image in its header."""

import math

import numpy as np

from ..instrument import (
    CSST_BANDS,
    DARK_CURRENT,
    FULL_WELL,
    GAIN,
    PIXEL_SCALE,
    READ_NOISE,
    VISIT_EXPTIME,
    ab_zeropoint,
    band_order,
)
from ._coadd import EXPOSURE_MARGIN, coadd_exposures, draw_exposures, saturation_level
from ._defects import DefectFlag, bleed_along_columns, exposure_defect_maker, flag_defects, sky_residual
from ._depth import DEPTH_APERTURE_RADIUS
from ._populations import BULGE_TO_DISK_RADIUS
from ._seds import MAX_TRUE_MAG

#: Single Sersic profiles end at this many half-light radii (n = 6 draws 5-20 times faster than untruncated).
SERSIC_TRUNCATION = 8.0


def galaxy_profile(galsim, source, bulge_flux_fraction, gsparams, clumps=None, band_index=None):
    """Return the unit-flux GalSim profile of one galaxy in one band.

    ``clumps`` (from the realistic populations) adds Gaussian knots that take
    their band's share of the light; they are placed in the galaxy's own
    frame, so the shear that makes the galaxy elliptical moves them with it.
    """
    disk_radius = source["disk_radius"]
    shear = galsim.Shear(q=1 - source["ellipticity"], beta=source["position_angle"] * galsim.degrees)
    if np.isfinite(source["sersic_index"]):
        # Truncated far out, so high-n profiles need no huge FFT; radius and flux are the truncated ones'.
        profile = galsim.Sersic(
            n=source["sersic_index"],
            half_light_radius=disk_radius,
            trunc=SERSIC_TRUNCATION * disk_radius,
            flux_untruncated=False,
            gsparams=gsparams,
        )
    else:
        profile = galsim.Exponential(half_light_radius=disk_radius, gsparams=gsparams)
        if bulge_flux_fraction > 0.0:
            bulge_radius = BULGE_TO_DISK_RADIUS * disk_radius
            bulge = galsim.DeVaucouleurs(
                half_light_radius=bulge_radius, trunc=10 * bulge_radius, gsparams=gsparams
            )
            profile = galsim.Add(
                bulge.withFlux(bulge_flux_fraction), profile.withFlux(1 - bulge_flux_fraction)
            )
    if clumps is not None and clumps["share"][band_index] > 0:
        share = float(clumps["share"][band_index])
        knots = [
            galsim.Gaussian(sigma=sigma, flux=weight, gsparams=gsparams).shift(dx, dy)
            for dx, dy, sigma, weight in zip(
                clumps["dx"], clumps["dy"], clumps["sigma"], clumps["weight"], strict=True
            )
        ]
        profile = galsim.Add(profile.withFlux(1 - share), galsim.Add(knots).withFlux(share))
    return profile.shear(shear)


def render_band(galsim, shape, band, band_psf, truth, render, gsparams):
    """Draw the noiseless count-rate image (e-/s) of one band."""
    image = galsim.ImageF(shape[1], shape[0], scale=PIXEL_SCALE)
    zero_point = ab_zeropoint(band)
    band_index = band_order().index(band)
    columns = {
        name: np.asarray(truth[name])
        for name in (
            "x",
            "y",
            "label",
            "half_light_radius",
            "ellipticity",
            "position_angle",
            "sersic_index",
        )
    }
    columns["disk_radius"] = render["disk_radius"]
    mags = np.asarray(truth[f"mag_{band}"])
    bulge_flux_fractions = render["bulge_fraction_bands"][:, band_index]
    clumps = render.get("clumps", [None] * len(truth))
    for index in range(len(truth)):
        if mags[index] >= MAX_TRUE_MAG:
            continue
        source = {name: values[index].item() for name, values in columns.items()}
        flux = 10 ** (-0.4 * (mags[index] - zero_point))
        # GalSim pixels are 1-based: astropy pixel (x, y) is GalSim (x + 1, y + 1).
        center = galsim.PositionD(source["x"] + 1.0, source["y"] + 1.0)
        if source["label"] != "galaxy":  # stars and QSOs are point sources
            profile, half_size = band_psf.point_source(source["x"], source["y"], flux, mags[index])
        else:
            galaxy = galaxy_profile(
                galsim, source, bulge_flux_fractions[index], gsparams, clumps[index], band_index
            )
            psf = band_psf.at(source["x"], source["y"])
            profile = galsim.Convolve(galaxy.withFlux(flux), psf, gsparams=gsparams)
            major_axis = source["half_light_radius"] / math.sqrt(1 - source["ellipticity"])
            margin = band_psf.galaxy_stamp_margin
            half_size = int(np.clip(math.ceil((6 * major_axis + margin) / PIXEL_SCALE), 8, 64))
        ix, iy = round(center.x), round(center.y)
        bounds = galsim.BoundsI(ix - half_size, ix + half_size, iy - half_size, iy + half_size)
        bounds = bounds & image.bounds
        if not bounds.isDefined():
            continue
        profile.drawImage(image=image[bounds], add_to_image=True, center=center, method="no_pixel")
    return image.array


def observe(noiseless_rate, band, sky_rate, rng):
    """Add sky, dark, Poisson and read noise, saturate, and return e-/s minus background."""
    props = CSST_BANDS[band]
    background_rate = sky_rate + DARK_CURRENT
    expected = (np.clip(noiseless_rate, 0.0, None) + background_rate) * props.exptime
    electrons = rng.poisson(expected).astype(np.float64)
    electrons += rng.normal(0.0, READ_NOISE * math.sqrt(props.n_visits), size=electrons.shape)
    # Each visit saturates at the full well; identical visits stack to n times it.
    electrons = np.minimum(electrons, FULL_WELL * props.n_visits)
    return (electrons / props.exptime - background_rate).astype(np.float32)


def band_header(band, wcs, conditions, band_psf, sky_rate, provenance, realistic=None):
    """The image header: units, zero point, noise, PSF and provenance (``realistic`` adds `realism_keywords`)."""
    props = CSST_BANDS[band]
    header = wcs.to_header()
    n_visits = props.n_visits if realistic is None else realistic["n_exposures"]
    header["BUNIT"] = ("electron/s", "background-subtracted count rate")
    header["BAND"] = (band, "CSST band")
    header["TELESCOP"] = ("CSST", "simulated (astro_stargal.simulate)")
    header["EXPTIME"] = (n_visits * VISIT_EXPTIME, "[s] total exposure time")
    header["NVISITS"] = (n_visits, "number of 150 s visits")
    header["MAGZERO"] = (round(ab_zeropoint(band), 6), "AB mag of 1 electron/s")
    header["SATURATE"] = (
        FULL_WELL / VISIT_EXPTIME - sky_rate - DARK_CURRENT,
        "[electron/s] saturation level",
    )
    header["GAIN"] = (n_visits * VISIT_EXPTIME, "[e-/(electron/s)] effective gain = EXPTIME")
    header["DETGAIN"] = (GAIN, "[e-/ADU] detector gain")
    header["RDNOISE"] = (READ_NOISE, "[e-] read noise per read")
    header["DARKCUR"] = (DARK_CURRENT, "[e-/s/px] dark current (subtracted)")
    header["SKYRATE"] = (sky_rate, "[e-/s/px] sky level (subtracted)")
    header["FULLWELL"] = (FULL_WELL, "[e-] full well per visit")
    if realistic is None or realistic["psf"] is None:
        fwhm = band_psf.fwhm if realistic is None else band_psf.fwhm[0]
        header["PSFMODEL"] = (conditions.psf_model, "PSF model")
        header["PSFFWHM"] = (round(fwhm, 5), "[arcsec] FWHM of the optical PSF")
        header["PSFJITTR"] = (round(conditions.jitter_fwhm, 5), "[arcsec] jitter/seeing FWHM term")
        if conditions.psf_model == "moffat":
            header["PSFBETA"] = (round(conditions.moffat_beta, 4), "Moffat beta")
        header["PSFOBSC"] = (round(conditions.obscuration, 4), "Airy central obscuration")
    if realistic is not None:
        header.update(realism_keywords(realistic, band_psf))
    if not conditions.nominal_seds:
        header["STARSED"] = (conditions.star_sed_model, "stellar SED model")
        header["EBVSTAR"] = (round(conditions.star_ebv_mean, 5), "[mag] mean stellar E(B-V) (exponential)")
        header["EBVGAL"] = (round(conditions.galaxy_ebv, 5), "[mag] foreground E(B-V) of galaxies")
    header["APRAD"] = (DEPTH_APERTURE_RADIUS, "[px] radius of the depth aperture")
    header["APFRAC"] = (
        round(band_psf.aperture_fraction, 6),
        "point-source flux fraction inside APRAD",
    )
    header["DEPTHTAB"] = (props.depth_5sigma, "CSST table 5-sigma point-source depth")
    header["SIMVERS"] = (provenance["package_version"], "astro_stargal version")
    header["SIMSEED"] = (provenance["seed"], "simulation seed")
    header["SIMCALL"] = provenance["call"]
    return header


def realism_keywords(realistic, grid):
    """Header cards that record a realistic band's PSF, co-add and defects.

    ``realistic`` holds the resolved `Realism` (``psf``, ``coadd``,
    ``defects``), the band's ``exposures``, ``n_exposures``, ``kernel`` and
    ``pixel_variance_factor``; ``grid`` is the band's `PSFGrid`.
    """
    cards = []
    centre = grid.centre
    options = realistic["psf"]
    if options is not None:
        cards += [
            ("PSFMODEL", "optical", "GalSim OpticalPSF x elliptical Gaussian jitter"),
            ("PSFFWHM", round(float(grid.fwhm[centre]), 5), "[arcsec] FWHM optics x jitter, tile centre"),
            ("PSFRFWHM", round(options.r_fwhm, 5), "[arcsec] r-band PSFFWHM asked for"),
            ("PSFJITTR", round(grid.jitter_fwhm, 5), "[arcsec] jitter FWHM (geometric mean)"),
            ("PSFJELL", round(options.jitter_ellipticity, 5), "jitter 1 - b/a"),
            ("PSFJPA", round(options.jitter_angle, 3), "[deg] jitter major axis from +x"),
            ("PSFOBSC", round(options.obscuration, 4), "linear central obscuration"),
            ("PSFNSTRT", int(options.n_struts), "number of struts"),
            ("PSFSTRTW", round(options.strut_thickness, 4), "strut thickness / pupil diameter"),
            ("PSFSTRTA", round(options.strut_angle, 3), "[deg] first strut from +y towards +x"),
            ("PSFFVAR", round(options.field_variation, 5), "[waves@620nm] RMS aberration change over tile"),
        ]
        cards += [
            (f"PSFZ{noll}", round(float(value), 5), f"[waves] Zernike Noll {noll} at tile centre")
            for noll, value in zip(range(4, 12), grid.zernikes[centre], strict=True)
        ]
    cards += [
        ("PSFFWHMC", round(float(grid.coadd_fwhm[centre]), 5), "[arcsec] FWHM with resampling, centre"),
        ("PSFGFWHM", round(grid.gaussian_fwhm, 5), "[arcsec] fit_fwhm of the noiseless PSF, centre"),
        ("PSFELL", round(float(grid.ellipticity[centre]), 5), "PSF 1 - b/a (adaptive moments), centre"),
        ("PSFNODES", grid.nodes, "PSF grid nodes per side (.psf.fits)"),
    ]
    coadd = realistic["coadd"]
    cards += [
        ("COADD", coadd is not None, "resampled co-add of dithered exposures"),
        ("NEXPOSE", realistic["n_exposures"], "exposures (150 s each)"),
        ("RESAMPL", realistic["kernel"] or "none", "resampling kernel"),
        ("PIXVARWT", round(realistic["pixel_variance_factor"], 5), "pixel variance x weight, full coverage"),
    ]
    for number, exposure in enumerate(realistic["exposures"], start=1):
        cards += [
            (f"DITHX{number}", round(exposure["dither_x"], 4), f"[px] exposure {number} x offset"),
            (f"DITHY{number}", round(exposure["dither_y"], 4), f"[px] exposure {number} y offset"),
        ]
    defects = realistic["defects"]
    if defects is not None:
        cards += [
            ("CRRATE", round(defects.cosmic_ray_rate, 3), "[/arcmin2] cosmic rays per exposure"),
            ("CRSURV", round(defects.cosmic_ray_survival, 5), "cosmic rays surviving rejection"),
            ("HOTFRAC", float(f"{defects.hot_pixel_fraction:.4g}"), "fraction of warm pixels unmasked"),
            ("BLEED", bool(defects.bleed_trails), "charge bleeds along columns"),
            ("SKYRESID", round(defects.sky_residual, 5), "sky residual RMS / pixel noise"),
        ]
    return cards


def _aligned_exposures(band):
    """Stand-ins for the visits of a realistic field without co-adds: same grid, no gaps."""
    return [{"dither_x": 0.0, "dither_y": 0.0, "gap": None} for _ in range(CSST_BANDS[band].n_visits)]


def observe_realistic(noiseless_rate, band, sky_rate, realism, rngs):
    """Observe a band through exposures (co-added or stacked), with defects and saturation.

    Parameters
    ----------
    noiseless_rate : 2D `~numpy.ndarray`
        The sky in electron/s, drawn with the band's (co-add) PSF.
    band : str
        CSST band.
    sky_rate : float
        Sky level (electron/s per pixel).
    realism : `Realism`
        Resolved realism options.
    rngs : dict
        The band's ``exposures``, ``noise`` and ``defects`` generators.

    Returns
    -------
    data : 2D `~numpy.ndarray`
        float32 image in electron/s, background subtracted.
    weight : 2D `~numpy.ndarray`
        Inverse variance of the background, (electron/s)^-2 (zero: no data).
    n_exposures : 2D `~numpy.ndarray`
        Exposures contributing to each pixel.
    flags : 2D `~numpy.ndarray`
        `DefectFlag` bits.
    details : dict
        ``exposures``, ``n_exposures``, ``kernel`` and ``pixel_variance_factor``.
    """
    shape = noiseless_rate.shape
    if realism.coadd is not None:
        exposures = draw_exposures(rngs["exposures"], band, realism.coadd, shape)
        kernel = realism.coadd.resampling
    else:
        exposures, kernel = _aligned_exposures(band), None
    background = sky_rate + DARK_CURRENT
    electrons = (np.clip(noiseless_rate, 0.0, None) + background) * VISIT_EXPTIME
    defects = realism.defects
    if defects is not None and defects.bleed_trails:
        electrons, saturated = bleed_along_columns(electrons, FULL_WELL)
        bleed = (electrons >= FULL_WELL) & ~saturated
    else:
        saturated, bleed = electrons > FULL_WELL, np.zeros(shape, bool)
    signal = np.minimum(electrons, FULL_WELL) / VISIT_EXPTIME - background
    defect_maker = None
    if defects is not None:
        defect_maker = exposure_defect_maker(rngs["defects"], defects, shape, exposures, EXPOSURE_MARGIN)
    noise, weight, n_exposures, defect_rates, variance_factor = coadd_exposures(
        signal, band, sky_rate, exposures, kernel, rngs["noise"], defect_maker
    )
    covered = weight > 0
    with np.errstate(divide="ignore"):
        pixel_noise = np.where(covered, np.sqrt(variance_factor / np.where(covered, weight, 1.0)), 0.0)
    data = np.where(covered, signal + noise, 0.0)
    flags = np.zeros(shape, np.uint8)
    if defects is not None:
        if covered.any():
            data += np.where(
                covered,
                sky_residual(rngs["defects"], shape, defects.sky_residual * np.median(pixel_noise[covered])),
                0.0,
            )
        flags |= flag_defects(defect_rates, pixel_noise)
    # A pipeline masks what saturated: the pixel holds the saturation level and no weight.
    full = saturated | bleed
    data[full] = saturation_level(sky_rate)
    weight[full] = 0.0
    flags[saturated] |= np.uint8(DefectFlag.SATURATED)
    flags[bleed] |= np.uint8(DefectFlag.BLEED_TRAIL)
    flags[~covered & ~full] |= np.uint8(DefectFlag.NO_DATA)
    details = {
        "exposures": exposures,
        "n_exposures": len(exposures),
        "kernel": kernel,
        "pixel_variance_factor": variance_factor,
    }
    return data.astype(np.float32), weight.astype(np.float32), n_exposures, flags, details
