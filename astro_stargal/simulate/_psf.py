"""The PSF of each band: an optical model convolved with the pixel, tabulated once per field."""

import math
from dataclasses import dataclass

import numpy as np

from ..instrument import (
    APERTURE_DIAMETER,
    CSST_BANDS,
    PIXEL_SCALE,
)
from ._depth import DEPTH_APERTURE_RADIUS
from ._galsim import ARCSEC_PER_RADIAN

_PSF_OVERSAMPLING = 4

_PSF_IMAGE_SIZE = 256  # oversampled pixels, i.e. 4.7 arcsec on a side


def optical_psf(galsim, band, conditions, gsparams):
    """Return the GalSim PSF (without the pixel) of a band in arcsec units."""
    lam_over_diam = CSST_BANDS[band].effective_wavelength * 1e-9 / APERTURE_DIAMETER * ARCSEC_PER_RADIAN
    if conditions.psf_model == "moffat":
        fwhm = math.hypot(1.029 * lam_over_diam, conditions.jitter_fwhm)
        return galsim.Moffat(beta=conditions.moffat_beta, fwhm=fwhm, gsparams=gsparams)
    airy = galsim.Airy(lam_over_diam=lam_over_diam, obscuration=conditions.obscuration, gsparams=gsparams)
    jitter = galsim.Gaussian(fwhm=conditions.jitter_fwhm, gsparams=gsparams)
    return galsim.Convolve(airy, jitter, gsparams=gsparams)


@dataclass
class BandPSF:
    """The pixel-convolved PSF of one band, tabulated once per field.

    Attributes
    ----------
    effective : ``galsim.InterpolatedImage``
        PSF convolved with the pixel, oversampled 4 times.
    fwhm : float
        FWHM of the optical PSF (arcsec).
    aperture_fraction : float
        Point-source flux fraction inside the depth aperture
        (`DEPTH_APERTURE_RADIUS`), averaged over sub-pixel positions.

    Examples
    --------
    >>> from astro_stargal.simulate import FieldConditions, import_galsim, make_gsparams
    >>> galsim = import_galsim()
    >>> psf = build_band_psf(galsim, "r", FieldConditions(), make_gsparams(galsim))
    >>> 0.1 < psf.fwhm < 0.16
    True
    """

    effective: object  # galsim.InterpolatedImage, PSF x pixel
    fwhm: float  # arcsec, of the optical PSF
    aperture_fraction: float  # point-source flux inside DEPTH_APERTURE_RADIUS


def build_band_psf(galsim, band, conditions, gsparams):
    """Tabulate a band's PSF for a field (the optical PSF convolved with the pixel).

    Parameters
    ----------
    galsim : module
        GalSim, from `import_galsim`.
    band : str
        CSST band name.
    conditions : `FieldConditions`
        The field's PSF model.
    gsparams : ``galsim.GSParams``
        From `make_gsparams`.

    Returns
    -------
    psf : `BandPSF`

    Examples
    --------
    >>> from astro_stargal.simulate import FieldConditions, import_galsim, make_gsparams
    >>> galsim = import_galsim()
    >>> build_band_psf(galsim, "g", FieldConditions(), make_gsparams(galsim)).aperture_fraction < 1
    True
    """
    from photutils.aperture import CircularAperture

    optical = optical_psf(galsim, band, conditions, gsparams)
    with_pixel = galsim.Convolve(optical, galsim.Pixel(PIXEL_SCALE), gsparams=gsparams)
    tabulated = with_pixel.drawImage(
        nx=_PSF_IMAGE_SIZE,
        ny=_PSF_IMAGE_SIZE,
        scale=PIXEL_SCALE / _PSF_OVERSAMPLING,
        method="no_pixel",
    )
    effective = galsim.InterpolatedImage(tabulated, gsparams=gsparams)
    # Average over sub-pixel phases: sources fall anywhere within a pixel.
    fractions = []
    for offset in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (0.25, 0.25)):
        stamp = effective.drawImage(nx=25, ny=25, scale=PIXEL_SCALE, method="no_pixel", offset=offset)
        aperture = CircularAperture((12 + offset[0], 12 + offset[1]), DEPTH_APERTURE_RADIUS)
        fractions.append(aperture.do_photometry(stamp.array, method="exact")[0][0])
    fwhm = optical.calculateFWHM(size=256, scale=0.004)
    return BandPSF(effective, float(fwhm), float(np.mean(fractions)))
