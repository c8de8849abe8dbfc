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
from ._depth import DEPTH_APERTURE_RADIUS
from ._populations import BULGE_TO_DISK_RADIUS
from ._seds import MAX_TRUE_MAG


def _star_stamp_half_size(mag):
    if mag < 19.0:
        return 32
    if mag < 23.0:
        return 16
    return 8


def galaxy_profile(galsim, source, bulge_flux_fraction, gsparams):
    """Return the unit-flux GalSim profile of one galaxy in one band."""
    disk_radius = source["disk_radius"]
    shear = galsim.Shear(q=1 - source["ellipticity"], beta=source["position_angle"] * galsim.degrees)
    if np.isfinite(source["sersic_index"]):
        profile = galsim.Sersic(n=source["sersic_index"], half_light_radius=disk_radius, gsparams=gsparams)
        return profile.shear(shear)
    disk = galsim.Exponential(half_light_radius=disk_radius, gsparams=gsparams)
    if bulge_flux_fraction <= 0.0:
        return disk.shear(shear)
    bulge_radius = BULGE_TO_DISK_RADIUS * disk_radius
    bulge = galsim.DeVaucouleurs(half_light_radius=bulge_radius, trunc=10 * bulge_radius, gsparams=gsparams)
    return galsim.Add(bulge.withFlux(bulge_flux_fraction), disk.withFlux(1 - bulge_flux_fraction)).shear(
        shear
    )


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
    for index in range(len(truth)):
        if mags[index] >= MAX_TRUE_MAG:
            continue
        source = {name: values[index].item() for name, values in columns.items()}
        flux = 10 ** (-0.4 * (mags[index] - zero_point))
        # GalSim pixels are 1-based: astropy pixel (x, y) is GalSim (x + 1, y + 1).
        center = galsim.PositionD(source["x"] + 1.0, source["y"] + 1.0)
        if source["label"] == "star":
            profile = band_psf.effective.withFlux(flux)
            half_size = _star_stamp_half_size(mags[index])
        else:
            galaxy = galaxy_profile(galsim, source, bulge_flux_fractions[index], gsparams)
            profile = galsim.Convolve(galaxy.withFlux(flux), band_psf.effective, gsparams=gsparams)
            major_axis = source["half_light_radius"] / math.sqrt(1 - source["ellipticity"])
            half_size = int(np.clip(math.ceil((6 * major_axis + 0.3) / PIXEL_SCALE), 8, 64))
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


def band_header(band, wcs, conditions, band_psf, sky_rate, provenance):
    props = CSST_BANDS[band]
    header = wcs.to_header()
    header["BUNIT"] = ("electron/s", "background-subtracted count rate")
    header["BAND"] = (band, "CSST band")
    header["TELESCOP"] = ("CSST", "simulated (astro_stargal.simulate)")
    header["EXPTIME"] = (props.exptime, "[s] total exposure time")
    header["NVISITS"] = (props.n_visits, "number of 150 s visits")
    header["MAGZERO"] = (round(ab_zeropoint(band), 6), "AB mag of 1 electron/s")
    header["SATURATE"] = (
        FULL_WELL / VISIT_EXPTIME - sky_rate - DARK_CURRENT,
        "[electron/s] saturation level",
    )
    header["GAIN"] = (props.exptime, "[e-/(electron/s)] effective gain = EXPTIME")
    header["DETGAIN"] = (GAIN, "[e-/ADU] detector gain")
    header["RDNOISE"] = (READ_NOISE, "[e-] read noise per read")
    header["DARKCUR"] = (DARK_CURRENT, "[e-/s/px] dark current (subtracted)")
    header["SKYRATE"] = (sky_rate, "[e-/s/px] sky level (subtracted)")
    header["FULLWELL"] = (FULL_WELL, "[e-] full well per visit")
    header["PSFMODEL"] = (conditions.psf_model, "PSF model")
    header["PSFFWHM"] = (round(band_psf.fwhm, 5), "[arcsec] FWHM of the optical PSF")
    header["PSFJITTR"] = (round(conditions.jitter_fwhm, 5), "[arcsec] jitter/seeing FWHM term")
    if conditions.psf_model == "moffat":
        header["PSFBETA"] = (round(conditions.moffat_beta, 4), "Moffat beta")
    header["PSFOBSC"] = (round(conditions.obscuration, 4), "Airy central obscuration")
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
