"""CSST survey-camera figures shared by the simulator, the features and the model card.

The numbers are the CSST public instrument figures (CSST main-survey
simulation papers, arXiv 2511.06970 and 2511.10805, and the public
configuration of the CSST pipeline).
"""

import math
from dataclasses import dataclass

from astropy import constants

__all__ = ["CSST_BANDS", "PIXEL_SCALE", "Band", "ab_zeropoint", "band_order"]

#: Pixel scale of the CSST survey camera in arcsec per pixel.
PIXEL_SCALE = 0.074

#: Primary mirror diameter in metres (treated as an unobscured pupil).
APERTURE_DIAMETER = 2.0

#: Exposure time of one visit in seconds.
VISIT_EXPTIME = 150.0

#: Detector gain (e-/ADU), read noise (e- per read) and dark current (e-/s/px).
GAIN = 1.1
READ_NOISE = 5.0
DARK_CURRENT = 0.02

#: Full-well depth in e- per pixel per visit. With the nominal PSF, a point
#: source at a band's saturation magnitude centred on a pixel fills it in one
#: 150 s visit to within 0.15 mag in every band.
FULL_WELL = 1.5e5


@dataclass(frozen=True)
class Band:
    """One CSST imaging band.

    Attributes
    ----------
    name : str
        Band name as used in tables and headers (``'NUV'``, ``'u'``, ...).
    blue_edge, red_edge, effective_wavelength : float
        Wavelengths in nm.
    throughput : float
        Total system throughput (QE x optics x filter).
    sky_rate : float
        Sky background in e-/s/px.
    saturation_mag : float
        AB magnitude at which a point source saturates in one visit.
    depth_5sigma : float
        5-sigma point-source depth of the wide survey (AB).
    n_visits : int
        Number of 150 s visits in the wide survey.

    Examples
    --------
    >>> r_band = CSST_BANDS["r"]
    >>> r_band.effective_wavelength, r_band.exptime
    (620.0, 300.0)
    """

    name: str
    blue_edge: float
    red_edge: float
    effective_wavelength: float
    throughput: float
    sky_rate: float
    saturation_mag: float
    depth_5sigma: float
    n_visits: int

    @property
    def exptime(self):
        """Total wide-survey exposure time in seconds."""
        return self.n_visits * VISIT_EXPTIME


#: The seven CSST bands, ordered by wavelength.
CSST_BANDS = {
    band.name: band
    for band in (
        Band("NUV", 247.0, 327.0, 286.8, 0.140, 0.004, 15.7, 25.4, 4),
        Band("u", 312.0, 409.0, 360.1, 0.218, 0.021, 16.1, 25.4, 2),
        Band("g", 390.0, 562.0, 475.5, 0.464, 0.164, 17.2, 26.3, 2),
        Band("r", 537.0, 703.0, 620.0, 0.504, 0.207, 17.0, 26.0, 2),
        Band("i", 676.0, 855.0, 765.3, 0.496, 0.212, 16.7, 25.9, 2),
        Band("z", 824.0, 1100.0, 960.1, 0.200, 0.123, 15.7, 25.2, 2),
        Band("y", 913.0, 1100.0, 1005.1, 0.096, 0.037, 14.4, 24.4, 4),
    )
}


def band_order():
    """Return the CSST band names ordered by effective wavelength.

    Returns
    -------
    names : tuple of str
        From ``'NUV'`` (bluest) to ``'y'`` (reddest).

    Examples
    --------
    >>> band_order()
    ('NUV', 'u', 'g', 'r', 'i', 'z', 'y')
    """
    return tuple(sorted(CSST_BANDS, key=lambda name: CSST_BANDS[name].effective_wavelength))


def ab_zeropoint(band):
    """AB zero point of a CSST band for images in electron/s.

    A flat-spectrum (constant f_nu) source of AB magnitude 0 gives
    ``A * T * 3631 Jy / h * ln(red_edge / blue_edge)`` photo-electrons per
    second through a top-hat band of throughput ``T`` on a pupil of area ``A``;
    the zero point is 2.5 log10 of that rate.

    Parameters
    ----------
    band : str
        Band name, one of `CSST_BANDS`.

    Returns
    -------
    zeropoint : float
        Magnitude of a source giving 1 e-/s.

    Examples
    --------
    >>> round(ab_zeropoint("g"), 2)
    26.16
    """
    if band not in CSST_BANDS:
        msg = f"unknown band {band!r}; expected one of {band_order()}"
        raise ValueError(msg)
    spec = CSST_BANDS[band]
    area = math.pi * (APERTURE_DIAMETER / 2) ** 2
    jansky_over_planck = 1e-26 / float(constants.h.si.value)  # photons / s / m^2 per unit ln(lambda), per Jy
    rate = area * spec.throughput * 3631.0 * jansky_over_planck * math.log(spec.red_edge / spec.blue_edge)
    return 2.5 * math.log10(rate)
