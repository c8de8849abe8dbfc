"""CSST-like multi-band sky simulator built on GalSim.

The simulator renders fields (not isolated stamps) of stars and bulge+disk
galaxies in the seven CSST survey bands with the CSST public instrument figures
of `astro_stargal.instrument`: 0.074 arcsec pixels, a wavelength-dependent
PSF, photon-counting AB zero points from throughput, aperture and band edges,
sky, dark current and read noise for the wide-survey exposures (2 x 150 s, or
4 x 150 s in NUV and y), and saturation at the detector full well.

Images are background-subtracted count rates (``BUNIT = 'electron/s'``) with a
celestial TAN WCS; the truth table lists every source with its true AB
magnitudes, redshift, size and shape.

Conventions
-----------
* Pixel coordinates in the truth table follow astropy (0-based, the centre of
  the first pixel is ``(0, 0)``).
* ``mag = MAGZERO - 2.5 log10(flux in electron/s)``.
* ``half_light_radius`` is the circularised half-light radius in the r band
  (arcsec); ``position_angle`` is measured from the image +x axis towards +y
  (degrees); ``ellipticity`` is ``1 - b/a`` of the disk (or single Sersic).
* True magnitudes fainter than 40 (no flux in the band, e.g. blueward of the
  Lyman limit of a high-redshift galaxy) are stored as 40.

Depth definition
----------------
`measure_depth` reports the 5-sigma point-source depth as the total magnitude
of a point source whose flux in a circular aperture of radius 2.5 pixels
(0.185 arcsec, about three times the r-band PSF FWHM in diameter) is five times
the standard deviation of sky-aperture sums. The aperture-to-total correction
``APFRAC`` of the field's PSF is written to every image header. With the
nominal PSF this definition reproduces the CSST table depths to about 0.15 mag
in all bands (smaller apertures give deeper numbers, larger ones shallower).

Generalisation (``variation=True``)
-----------------------------------
Science fields default to the nominal instrument (``variation=False``) so that
they are reproducible and comparable with the CSST table. Training sets should
use ``variation=True``: each field then draws its own PSF model (Airy+Gaussian
jitter, Moffat with beta 2.5-5, or centrally obscured Airy+jitter) with a
FWHM between about 0.09 and 0.16 arcsec, a sky level within +-20 percent of
nominal per band, a different galaxy SED mix, and a population of
single-Sersic galaxies (n = 0.5-5) alongside the bulge+disk ones.

In three varied fields out of four, stars are not pure black bodies, so that a
classifier cannot lean on the black-body colour locus; the fourth keeps the
nominal black bodies, so that the limit of weak departures stays in the
training data. In the first kind, each star's spectrum is a black body times UV line blanketing blueward of
450 nm (stronger for cooler stars), a Balmer jump at 364.6 nm (for about
6500-15000 K, deepest near 9500 K), TiO troughs below 4200 K (495-560,
620-720 and 760-800 nm, deepening as the star cools) and interstellar
reddening, with random strengths per star. The stars' ``E(B-V)`` is
exponential with a mean drawn per field between 0 and 0.15; galaxies get a
smaller foreground ``E(B-V)`` (0-0.05) per field. Extinction follows
Cardelli, Clayton & Mathis (1989) with ``R_V = 3.1``. The drawn r magnitude is
the observed one, so dust changes colours, not r-band counts. The truth table
of such a field gives stars ``sed_type = 'MBB'`` (modified black body); every
varied field's table has an extra ``ebv`` column (mag, zero for black-body
stars).

The drawn conditions are written to the headers (``STARSED``, ``EBVSTAR`` and
``EBVGAL`` for the stellar SEDs and reddening) and to the truth-table metadata.
"""

import functools
import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.stats import mad_std
from astropy.table import Table, vstack
from astropy.wcs import WCS
from scipy import ndimage, special, stats

from astro_stargal.instrument import (
    APERTURE_DIAMETER,
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

__all__ = [
    "DEPTH_APERTURE_RADIUS",
    "cli_simulate",
    "make_demo_data",
    "measure_depth",
    "simulate_field",
    "simulate_tiles",
    "validate_field",
    "write_field",
]

#: Radius in pixels of the circular aperture that defines the 5-sigma depth.
DEPTH_APERTURE_RADIUS = 2.5

#: Default surface densities in sources per square arcminute.
DEFAULT_STAR_DENSITY = 150.0
DEFAULT_GALAXY_DENSITY = 450.0

_PLANCK = 6.62607015e-34  # J s
_SPEED_OF_LIGHT = 2.99792458e8  # m / s
_BOLTZMANN = 1.380649e-23  # J / K
_ARCSEC_PER_RADIAN = 206264.80624709636
_MAX_TRUE_MAG = 40.0

_R_BAND_RANGE_STARS = (17.0, 27.5)
_R_BAND_RANGE_GALAXIES = (17.5, 27.5)
_MAX_REDSHIFT = 3.5
_CWW_TEMPLATES = ("E", "Sbc", "Scd", "Im")
_NOMINAL_DISK_SED_WEIGHTS = (0.15, 0.35, 0.30, 0.20)
_NOMINAL_JITTER_FWHM = 0.10  # arcsec; puts the star FWHM at 0.10-0.15" across bands
_BULGE_TO_DISK_RADIUS = 0.5
_COMPACT_GALAXY_FRACTION = 0.1
_SERSIC_INDEX_STEP = 0.25  # quantised so GalSim can reuse its Sersic tables
_PSF_OVERSAMPLING = 4
_PSF_IMAGE_SIZE = 256  # oversampled pixels, i.e. 4.7 arcsec on a side
_TILE_SPACING = 1.05  # tile centres are 5 percent further apart than the tile size
_R_V = 3.1  # ratio of total to selective extinction, A_V / E(B-V)
_STAR_SED_WAVELENGTHS_NM = np.linspace(200.0, 1150.0, 951)  # 1 nm steps for per-star SEDs
_STAR_SED_CHUNK = 256  # stars per block of per-star SEDs: 1 MB float32 blocks stay in cache
_UV_BLANKETING_ONSET_NM = 450.0
_BALMER_LIMIT_NM = 364.6
_TIO_BANDS_NM = ((495.0, 560.0), (620.0, 720.0), (760.0, 800.0))  # TiO band groups in g, r and i
_TIO_EDGE_NM = 3.0
_MAX_STAR_EBV_MEAN = 0.15
_MAX_GALAXY_EBV = 0.05
_BLACK_BODY_STAR_FIELD_FRACTION = 0.25  # varied fields that keep the nominal black-body stars


def _import_galsim():
    """Import GalSim or explain how to install it."""
    try:
        import galsim
    except ImportError as exc:
        msg = "The simulator needs GalSim, an optional dependency: pip install astro_stargal[sim]"
        raise ImportError(msg) from exc
    return galsim


def _gsparams(galsim):
    """The GalSim accuracy settings of every profile the simulator draws."""
    return galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)


def _package_version():
    """Return the astro_stargal version for provenance records."""
    from astro_stargal import __version__

    return __version__


def _band(name):
    try:
        return CSST_BANDS[name]
    except KeyError:
        msg = f"unknown band {name!r}; expected one of {band_order()}"
        raise ValueError(msg) from None


# --------------------------------------------------------------------------
# Spectral energy distributions -> band fluxes
# --------------------------------------------------------------------------


def _band_fluxes_of_sed(wavelength_nm, flambda):
    """Return AB-normalised photon-counting band fluxes of SEDs.

    ``flambda`` holds one SED per row sampled on the fine grid
    ``wavelength_nm``. The flux in each band is ``int f_lambda lambda
    dlambda / (c int dlambda / lambda)`` over the band edges, i.e. proportional
    to ``f_nu`` of a flat-spectrum source with the same photon rate. Only
    ratios between bands are used.
    """
    flambda = np.atleast_2d(flambda)
    fluxes = []
    for name in band_order():
        props = CSST_BANDS[name]
        inside = (wavelength_nm >= props.blue_edge) & (wavelength_nm <= props.red_edge)
        grid = wavelength_nm[inside]
        photons = np.trapezoid(flambda[:, inside] * grid, grid, axis=1)
        fluxes.append(photons / (_SPEED_OF_LIGHT * np.trapezoid(1 / grid, grid)))
    return np.array(fluxes).T


def _igm_transmission(observed_nm, redshift):
    """Mean intergalactic transmission: Lyman-alpha forest plus Lyman limit."""
    rest_nm = observed_nm / (1 + redshift)
    tau_forest = 0.0036 * (observed_nm / 121.567) ** 3.46
    transmission = np.where(rest_nm < 121.567, np.exp(-tau_forest), 1.0)
    return np.where(rest_nm < 91.2, 0.0, transmission)


@functools.lru_cache(maxsize=1)
def _galaxy_colour_grid():
    """Band fluxes relative to r of the CWW templates on a redshift grid."""
    galsim = _import_galsim()
    redshifts = np.linspace(0.0, _MAX_REDSHIFT + 0.05, 356)
    observed_nm = np.linspace(200.0, 1150.0, 3000)
    ratios = {}
    for template in _CWW_TEMPLATES:
        path = os.path.join(galsim.meta_data.share_dir, "SEDs", f"CWW_{template}_ext.sed")
        rest_angstrom, rest_flambda = np.loadtxt(path, unpack=True)
        rest_nm = rest_angstrom / 10
        seds = np.array(
            [
                np.interp(observed_nm / (1 + z), rest_nm, rest_flambda, left=0.0, right=0.0)
                * _igm_transmission(observed_nm, z)
                for z in redshifts
            ]
        )
        fluxes = _band_fluxes_of_sed(observed_nm, seds)
        ratios[template] = fluxes / fluxes[:, [band_order().index("r")]]
    return redshifts, ratios


@functools.lru_cache(maxsize=1)
def _star_colour_grid():
    """Band fluxes relative to r of black bodies on a temperature grid."""
    temperatures = np.geomspace(2500.0, 40000.0, 300)
    wavelength_nm = np.linspace(200.0, 1150.0, 3000)
    wavelength_m = wavelength_nm[None, :] * 1e-9
    exponent = _PLANCK * _SPEED_OF_LIGHT / (wavelength_m * _BOLTZMANN * temperatures[:, None])
    flambda = wavelength_m**-5 / np.expm1(exponent)
    fluxes = _band_fluxes_of_sed(wavelength_nm, flambda)
    return temperatures, fluxes / fluxes[:, [band_order().index("r")]]


def _ccm89_extinction(wavelength_nm, r_v=_R_V):
    """Return ``A_lambda / E(B-V)`` of the Cardelli, Clayton & Mathis (1989) curve.

    The infrared (0.3-1.1 / micron), optical (1.1-3.3 / micron) and
    ultraviolet (3.3-8 / micron) pieces of CCM89 (ApJ 345, 245, eqs. 2-5);
    ``A_lambda / A_V = a(x) + b(x) / R_V`` with ``x`` in inverse microns, so
    valid from 125 nm to 3.3 micron.
    """
    x = 1000.0 / np.asarray(wavelength_nm, dtype=float)
    y = x - 1.82
    optical_a = np.polynomial.polynomial.polyval(
        y, [1.0, 0.17699, -0.50447, -0.02427, 0.72085, 0.01979, -0.77530, 0.32999]
    )
    optical_b = np.polynomial.polynomial.polyval(
        y, [0.0, 1.41338, 2.28305, 1.07233, -5.38434, -0.62251, 5.30260, -2.09002]
    )
    far = np.clip(x - 5.9, 0.0, None)
    uv_a = 1.752 - 0.316 * x - 0.104 / ((x - 4.67) ** 2 + 0.341) - 0.04473 * far**2 - 0.009779 * far**3
    uv_b = -3.090 + 1.825 * x + 1.206 / ((x - 4.62) ** 2 + 0.263) + 0.2130 * far**2 + 0.1207 * far**3
    a = np.select([x < 1.1, x <= 3.3], [0.574 * x**1.61, optical_a], uv_a)
    b = np.select([x < 1.1, x <= 3.3], [-0.527 * x**1.61, optical_b], uv_b)
    return r_v * a + b


@functools.lru_cache(maxsize=1)
def _stellar_absorption_profiles():
    """Optical-depth profiles, per unit strength, of the departures from a black body.

    Rows on `_STAR_SED_WAVELENGTHS_NM`: UV line blanketing (rising blueward of
    450 nm), Balmer continuum (below 364.6 nm, falling as ``lambda**3``), TiO
    troughs, and interstellar dust per unit ``E(B-V)``.
    """
    wavelength_nm = _STAR_SED_WAVELENGTHS_NM
    blanketing = np.clip(_UV_BLANKETING_ONSET_NM / wavelength_nm - 1.0, 0.0, None)
    balmer = np.where(wavelength_nm < _BALMER_LIMIT_NM, (wavelength_nm / _BALMER_LIMIT_NM) ** 3, 0.0)
    tio = sum(
        special.expit((wavelength_nm - blue) / _TIO_EDGE_NM)
        * special.expit((red - wavelength_nm) / _TIO_EDGE_NM)
        for blue, red in _TIO_BANDS_NM
    )
    dust = 0.4 * math.log(10.0) * _ccm89_extinction(wavelength_nm)
    profiles = np.array([blanketing, balmer, tio, dust])
    profiles.flags.writeable = False
    return profiles


def _modified_black_body_fluxes(temperature, strengths):
    """Band fluxes relative to r of black bodies times ``exp(-strengths @ profiles)``.

    ``strengths`` has one row per star and one column per profile of
    `_stellar_absorption_profiles` (blanketing, Balmer, TiO, E(B-V)).
    """
    # Single precision: five times faster exponentials, errors below 1e-5 mag.
    wavelength_nm = _STAR_SED_WAVELENGTHS_NM.astype(np.float32)
    profiles = _stellar_absorption_profiles()
    planck_per_temperature = (_PLANCK * _SPEED_OF_LIGHT / _BOLTZMANN * 1e9 / temperature).astype(np.float32)
    wavelength_power = (wavelength_nm / 1000) ** -5
    relative_flux = np.empty((len(temperature), len(CSST_BANDS)))
    r_index = band_order().index("r")
    for start in range(0, len(temperature), _STAR_SED_CHUNK):
        block = slice(start, start + _STAR_SED_CHUNK)
        black_body = wavelength_power / np.expm1(planck_per_temperature[block, None] / wavelength_nm)
        optical_depth = (strengths[block] @ profiles).astype(np.float32)
        flambda = black_body * np.exp(-optical_depth)
        fluxes = _band_fluxes_of_sed(wavelength_nm, flambda).astype(float)
        relative_flux[block] = fluxes / fluxes[:, [r_index]]
    return relative_flux


def _draw_stellar_absorption_strengths(rng, temperature, ebv_mean):
    """Per-star strengths of the departures from a black body (columns as the profiles).

    UV blanketing grows as ``T**-1.5`` towards cool stars (u-g about 0.5 mag
    redder than a black body at 5800 K); the Balmer jump peaks near 9500 K
    (about 1 mag at 364.6 nm, giving Vega-like NUV-u and u-g) and fades below
    6500 K and above 15000 K; TiO troughs appear below 4200 K and deepen to
    3000 K; ``E(B-V)`` is exponential with mean ``ebv_mean``. Each temperature
    law is scaled by a per-star factor in [0.5, 1.5), standing in for
    metallicity, gravity and spectral-type scatter.
    """
    scatter = rng.uniform(0.5, 1.5, size=(3, len(temperature)))
    blanketing = 2.0 * scatter[0] * (5800.0 / temperature) ** 1.5
    balmer = scatter[1] * np.exp(-0.5 * (np.log10(temperature / 9500.0) / 0.1) ** 2)
    tio = 0.8 * scatter[2] * np.clip((4200.0 - temperature) / 1200.0, 0.0, 1.0)
    ebv = rng.exponential(ebv_mean, size=len(temperature))
    return np.column_stack([blanketing, balmer, tio, ebv])


def _foreground_reddening(ebv):
    """Band flux factors relative to r of ``E(B-V) = ebv`` on a flat-spectrum source."""
    flat = _STAR_SED_WAVELENGTHS_NM**-2.0
    dust = _stellar_absorption_profiles()[3]
    factors = _band_fluxes_of_sed(_STAR_SED_WAVELENGTHS_NM, flat * np.exp(-ebv * dust))[0]
    factors /= _band_fluxes_of_sed(_STAR_SED_WAVELENGTHS_NM, flat)[0]
    return factors / factors[band_order().index("r")]


def _interpolate_rows(x_grid, table, x):
    """Linearly interpolate each column of ``table`` (rows on ``x_grid``) at ``x``."""
    return np.column_stack([np.interp(x, x_grid, column) for column in table.T])


def _fluxes_to_mags(relative_flux, mag_r):
    with np.errstate(divide="ignore"):
        mags = mag_r[:, None] - 2.5 * np.log10(relative_flux)
    return np.minimum(mags, _MAX_TRUE_MAG)


# --------------------------------------------------------------------------
# Field conditions (nominal or randomised) and PSF
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldConditions:
    """Per-field instrument and population settings."""

    psf_model: str = "airy_gaussian"
    jitter_fwhm: float = _NOMINAL_JITTER_FWHM
    moffat_beta: float = float("nan")
    obscuration: float = 0.0
    sky_scale: dict = field(default_factory=lambda: dict.fromkeys(CSST_BANDS, 1.0))
    disk_sed_weights: tuple = _NOMINAL_DISK_SED_WEIGHTS
    single_sersic_fraction: float = 0.0
    star_sed_model: str = "black_body"
    star_ebv_mean: float = 0.0
    galaxy_ebv: float = 0.0

    @property
    def nominal_seds(self):
        """True when stars are unreddened black bodies and galaxies unreddened (as in nominal fields)."""
        return self.star_sed_model == "black_body" and self.star_ebv_mean == 0.0 and self.galaxy_ebv == 0.0


def _draw_field_conditions(rng, variation):
    if not variation:
        return _FieldConditions()
    psf_model = str(rng.choice(["airy_gaussian", "moffat", "obscured_airy"]))
    conditions = _FieldConditions(
        psf_model=psf_model,
        jitter_fwhm=float(rng.uniform(0.085, 0.115)),
        moffat_beta=float(rng.uniform(2.5, 5.0)) if psf_model == "moffat" else float("nan"),
        obscuration=float(rng.uniform(0.2, 0.4)) if psf_model == "obscured_airy" else 0.0,
        sky_scale={name: float(rng.uniform(0.8, 1.2)) for name in band_order()},
        disk_sed_weights=tuple(float(w) for w in rng.dirichlet(np.full(4, 2.0))),
        single_sersic_fraction=float(rng.uniform(0.2, 0.8)),
        star_sed_model="modified_black_body",
        star_ebv_mean=float(rng.uniform(0.0, _MAX_STAR_EBV_MEAN)),
        galaxy_ebv=float(rng.uniform(0.0, _MAX_GALAXY_EBV)),
    )
    # Drawn last, so the other conditions of a field do not depend on it.
    if rng.uniform() < _BLACK_BODY_STAR_FIELD_FRACTION:
        conditions = replace(conditions, star_sed_model="black_body", star_ebv_mean=0.0)
    return conditions


def _optical_psf(galsim, band, conditions, gsparams):
    """Return the GalSim PSF (without the pixel) of a band in arcsec units."""
    lam_over_diam = CSST_BANDS[band].effective_wavelength * 1e-9 / APERTURE_DIAMETER * _ARCSEC_PER_RADIAN
    if conditions.psf_model == "moffat":
        fwhm = math.hypot(1.029 * lam_over_diam, conditions.jitter_fwhm)
        return galsim.Moffat(beta=conditions.moffat_beta, fwhm=fwhm, gsparams=gsparams)
    airy = galsim.Airy(lam_over_diam=lam_over_diam, obscuration=conditions.obscuration, gsparams=gsparams)
    jitter = galsim.Gaussian(fwhm=conditions.jitter_fwhm, gsparams=gsparams)
    return galsim.Convolve(airy, jitter, gsparams=gsparams)


@dataclass
class _BandPSF:
    """The pixel-convolved PSF of one band, tabulated once per field."""

    effective: object  # galsim.InterpolatedImage, PSF x pixel
    fwhm: float  # arcsec, of the optical PSF
    aperture_fraction: float  # point-source flux inside DEPTH_APERTURE_RADIUS


def _build_band_psf(galsim, band, conditions, gsparams):
    from photutils.aperture import CircularAperture

    optical = _optical_psf(galsim, band, conditions, gsparams)
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
    return _BandPSF(effective, float(fwhm), float(np.mean(fractions)))


# --------------------------------------------------------------------------
# Source populations
# --------------------------------------------------------------------------


def _draw_magnitudes(rng, n, mag_range, slope):
    """Draw magnitudes with ``dN/dm ~ 10**(slope * m)`` within ``mag_range``."""
    low, high = (10 ** (slope * m) for m in mag_range)
    return np.log10(low + rng.uniform(size=n) * (high - low)) / slope


def _draw_stars(rng, n, conditions, sed_rng):
    """Draw stars; their SED strengths come from ``sed_rng`` so the rest of the field does not move."""
    mag_r = _draw_magnitudes(rng, n, _R_BAND_RANGE_STARS, slope=0.12)
    # Beta(1.5, 4) in log T from 3000 K to 30000 K: mostly K and M dwarfs.
    temperature = 3000.0 * 10 ** rng.beta(1.5, 4.0, size=n)
    if conditions.star_sed_model == "black_body":
        temperature_grid, ratio_grid = _star_colour_grid()
        relative_flux = _interpolate_rows(temperature_grid, ratio_grid, temperature)
        ebv = np.zeros(n)
    else:
        strengths = _draw_stellar_absorption_strengths(sed_rng, temperature, conditions.star_ebv_mean)
        relative_flux = _modified_black_body_fluxes(temperature, strengths)
        ebv = strengths[:, 3]
    # The drawn r magnitude is the observed one: dust changes colours, not the r counts.
    return {
        "mags": _fluxes_to_mags(relative_flux, mag_r),
        "temperature": temperature,
        "ebv": ebv,
    }


def _circularised_half_light_fraction(radius, bulge_fraction, bulge_radius, disk_radius):
    """Fraction of light inside ``radius`` for a de Vaucouleurs + exponential galaxy."""
    bulge_b = special.gammaincinv(8.0, 0.5)
    disk_b = special.gammaincinv(2.0, 0.5)
    bulge = special.gammainc(8.0, bulge_b * (radius / bulge_radius) ** 0.25)
    disk = special.gammainc(2.0, disk_b * radius / disk_radius)
    return bulge_fraction * bulge + (1 - bulge_fraction) * disk


def _composite_half_light_radius(bulge_fraction):
    """Half-light radius of bulge+disk in units of the disk half-light radius."""
    low = np.full_like(bulge_fraction, 1e-4)
    high = np.full_like(bulge_fraction, 2.0)
    for _ in range(40):
        middle = 0.5 * (low + high)
        inside = _circularised_half_light_fraction(middle, bulge_fraction, _BULGE_TO_DISK_RADIUS, 1.0)
        low = np.where(inside < 0.5, middle, low)
        high = np.where(inside < 0.5, high, middle)
    return 0.5 * (low + high)


def _draw_galaxies(rng, n, conditions):
    mag_r = _draw_magnitudes(rng, n, _R_BAND_RANGE_GALAXIES, slope=0.33)
    # Redshift: p(z) ~ z^2 exp(-(z/z0)^1.5) with the median rising with
    # magnitude, truncated at z = 3.5 by inverse-CDF sampling of Gamma(2).
    median_redshift = 0.25 + 0.17 * (mag_r - 18.0)
    z0 = median_redshift / 1.412
    upper_cdf = stats.gamma.cdf((_MAX_REDSHIFT / z0) ** 1.5, 2.0)
    gamma_draw = stats.gamma.ppf(rng.uniform(size=n) * upper_cdf, 2.0)
    redshift = np.clip(z0 * gamma_draw ** (2 / 3), 0.01, _MAX_REDSHIFT)

    # Half-light radius falls with magnitude (0.25 dex log-normal scatter),
    # plus a population of compact galaxies smaller than the PSF.
    half_light_radius = 0.8 * 10 ** (-0.13 * (mag_r - 20.0) + rng.normal(0.0, 0.25, size=n))
    compact = rng.uniform(size=n) < _COMPACT_GALAXY_FRACTION
    half_light_radius[compact] = np.exp(rng.uniform(np.log(0.02), np.log(0.07), size=compact.sum()))
    half_light_radius = np.clip(half_light_radius, 0.02, 4.0)

    bulge_fraction_r = rng.beta(1.0, 2.5, size=n)
    single_sersic = rng.uniform(size=n) < conditions.single_sersic_fraction
    sersic_index = np.where(
        single_sersic,
        np.round(rng.uniform(0.5, 5.0, size=n) / _SERSIC_INDEX_STEP) * _SERSIC_INDEX_STEP,
        np.nan,
    )
    bulge_fraction_r[single_sersic] = 0.0
    axis_ratio = np.clip(rng.beta(2.5, 1.5, size=n), 0.15, 1.0)
    position_angle = rng.uniform(0.0, 180.0, size=n)
    disk_sed = rng.choice(len(_CWW_TEMPLATES), size=n, p=conditions.disk_sed_weights)

    redshift_grid, ratio_grids = _galaxy_colour_grid()
    bulge_ratio = _interpolate_rows(redshift_grid, ratio_grids["E"], redshift)
    disk_ratio = np.empty_like(bulge_ratio)
    for index, template in enumerate(_CWW_TEMPLATES):
        chosen = disk_sed == index
        disk_ratio[chosen] = _interpolate_rows(redshift_grid, ratio_grids[template], redshift[chosen])
    bulge_relative = bulge_fraction_r[:, None] * bulge_ratio
    disk_relative = (1 - bulge_fraction_r)[:, None] * disk_ratio
    total_relative = bulge_relative + disk_relative
    with np.errstate(invalid="ignore", divide="ignore"):
        bulge_fraction_bands = np.nan_to_num(bulge_relative / total_relative)
    if conditions.galaxy_ebv > 0:
        total_relative = total_relative * _foreground_reddening(conditions.galaxy_ebv)

    disk_radius = half_light_radius / _composite_half_light_radius(bulge_fraction_r)
    return {
        "mags": _fluxes_to_mags(total_relative, mag_r),
        "bulge_fraction_bands": bulge_fraction_bands,
        "redshift": redshift,
        "half_light_radius": half_light_radius,
        "disk_radius": np.where(single_sersic, half_light_radius, disk_radius),
        "bulge_fraction": bulge_fraction_r,
        "sersic_index": sersic_index,
        "axis_ratio": axis_ratio,
        "position_angle": position_angle,
        "sed_type": np.array([_CWW_TEMPLATES[k] for k in disk_sed], dtype="U3"),
        "compact": compact,
    }


def _make_wcs(shape, ra, dec):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    wcs.wcs.cd = np.array([[-PIXEL_SCALE, 0.0], [0.0, PIXEL_SCALE]]) / 3600.0
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    return wcs


def _draw_catalog(rng, sed_rng, shape, star_density, galaxy_density, conditions, wcs):
    area_arcmin2 = shape[0] * shape[1] * (PIXEL_SCALE / 60.0) ** 2
    n_stars = rng.poisson(star_density * area_arcmin2)
    n_galaxies = rng.poisson(galaxy_density * area_arcmin2)
    stars = _draw_stars(rng, n_stars, conditions, sed_rng)
    galaxies = _draw_galaxies(rng, n_galaxies, conditions)
    n_total = n_stars + n_galaxies
    x = rng.uniform(-0.5, shape[1] - 0.5, size=n_total)
    y = rng.uniform(-0.5, shape[0] - 0.5, size=n_total)
    ra, dec = wcs.all_pix2world(x, y, 0)

    def stack(star_values, galaxy_values):
        return np.concatenate([star_values, galaxy_values])

    zeros, nans = np.zeros(n_stars), np.full(n_stars, np.nan)
    truth = Table()
    truth["id"] = np.arange(1, n_total + 1)
    truth["ra"] = ra * u.deg
    truth["dec"] = dec * u.deg
    truth["x"] = x * u.pix
    truth["y"] = y * u.pix
    truth["label"] = np.array(["star"] * n_stars + ["galaxy"] * n_galaxies, dtype="U6")
    all_mags = np.concatenate([stars["mags"], galaxies["mags"]])
    for index, name in enumerate(band_order()):
        truth[f"mag_{name}"] = all_mags[:, index] * u.mag
    truth["redshift"] = stack(zeros, galaxies["redshift"])
    truth["half_light_radius"] = stack(zeros, galaxies["half_light_radius"]) * u.arcsec
    truth["bulge_fraction"] = stack(zeros, galaxies["bulge_fraction"])
    truth["sersic_index"] = stack(nans, galaxies["sersic_index"])
    truth["ellipticity"] = stack(zeros, 1 - galaxies["axis_ratio"])
    truth["position_angle"] = stack(zeros, galaxies["position_angle"]) * u.deg
    truth["temperature"] = stack(stars["temperature"], np.zeros(n_galaxies)) * u.K
    black_body = conditions.star_sed_model == "black_body"
    star_sed_type = "BB" if black_body else "MBB"
    truth["sed_type"] = np.concatenate([np.full(n_stars, star_sed_type, dtype="U3"), galaxies["sed_type"]])
    truth["compact"] = stack(np.zeros(n_stars, bool), galaxies["compact"])
    if not conditions.nominal_seds:
        truth["ebv"] = stack(stars["ebv"], np.full(n_galaxies, conditions.galaxy_ebv)) * u.mag
    render = {
        "bulge_fraction_bands": np.concatenate(
            [np.zeros((n_stars, len(CSST_BANDS))), galaxies["bulge_fraction_bands"]]
        ),
        "disk_radius": stack(zeros, galaxies["disk_radius"]),
    }
    return truth, render


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def _star_stamp_half_size(mag):
    if mag < 19.0:
        return 32
    if mag < 23.0:
        return 16
    return 8


def _galaxy_profile(galsim, source, bulge_flux_fraction, gsparams):
    """Return the unit-flux GalSim profile of one galaxy in one band."""
    disk_radius = source["disk_radius"]
    shear = galsim.Shear(q=1 - source["ellipticity"], beta=source["position_angle"] * galsim.degrees)
    if np.isfinite(source["sersic_index"]):
        profile = galsim.Sersic(n=source["sersic_index"], half_light_radius=disk_radius, gsparams=gsparams)
        return profile.shear(shear)
    disk = galsim.Exponential(half_light_radius=disk_radius, gsparams=gsparams)
    if bulge_flux_fraction <= 0.0:
        return disk.shear(shear)
    bulge_radius = _BULGE_TO_DISK_RADIUS * disk_radius
    bulge = galsim.DeVaucouleurs(half_light_radius=bulge_radius, trunc=10 * bulge_radius, gsparams=gsparams)
    return galsim.Add(bulge.withFlux(bulge_flux_fraction), disk.withFlux(1 - bulge_flux_fraction)).shear(
        shear
    )


def _render_band(galsim, shape, band, band_psf, truth, render, gsparams):
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
        if mags[index] >= _MAX_TRUE_MAG:
            continue
        source = {name: values[index].item() for name, values in columns.items()}
        flux = 10 ** (-0.4 * (mags[index] - zero_point))
        # GalSim pixels are 1-based: astropy pixel (x, y) is GalSim (x + 1, y + 1).
        center = galsim.PositionD(source["x"] + 1.0, source["y"] + 1.0)
        if source["label"] == "star":
            profile = band_psf.effective.withFlux(flux)
            half_size = _star_stamp_half_size(mags[index])
        else:
            galaxy = _galaxy_profile(galsim, source, bulge_flux_fractions[index], gsparams)
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


def _observe(noiseless_rate, band, sky_rate, rng):
    """Add sky, dark, Poisson and read noise, saturate, and return e-/s minus background."""
    props = CSST_BANDS[band]
    background_rate = sky_rate + DARK_CURRENT
    expected = (np.clip(noiseless_rate, 0.0, None) + background_rate) * props.exptime
    electrons = rng.poisson(expected).astype(np.float64)
    electrons += rng.normal(0.0, READ_NOISE * math.sqrt(props.n_visits), size=electrons.shape)
    # Each visit saturates at the full well; identical visits stack to n times it.
    electrons = np.minimum(electrons, FULL_WELL * props.n_visits)
    return (electrons / props.exptime - background_rate).astype(np.float32)


def _band_header(band, wcs, conditions, band_psf, sky_rate, provenance):
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


def _validate_shape(shape_or_size):
    shape = (shape_or_size, shape_or_size) if np.isscalar(shape_or_size) else tuple(shape_or_size)
    if len(shape) != 2 or any(int(n) != n or n < 8 for n in shape):
        msg = f"shape_or_size must be an integer >= 8 or (ny, nx) of such; got {shape_or_size!r}"
        raise ValueError(msg)
    return int(shape[0]), int(shape[1])


def _validate_bands(bands):
    if bands is None:
        return band_order()
    bands = (bands,) if isinstance(bands, str) else tuple(bands)
    for name in bands:
        _band(name)
    return bands


def _validate_density(name, value):
    if not np.isfinite(value) or value < 0:
        msg = f"{name} must be a non-negative number of sources per arcmin^2; got {value!r}"
        raise ValueError(msg)
    return float(value)


def _format_call(function_name, parameters):
    arguments = ", ".join(f"{key}={value!r}" for key, value in parameters.items())
    return f"astro_stargal.simulate.{function_name}({arguments})"


def simulate_field(
    shape_or_size,
    *,
    seed,
    bands=None,
    star_density=DEFAULT_STAR_DENSITY,
    galaxy_density=DEFAULT_GALAXY_DENSITY,
    ra=150.0,
    dec=2.0,
    variation=False,
):
    """Simulate one CSST-like field in several bands.

    Parameters
    ----------
    shape_or_size : int or tuple of int
        Image size in pixels: an integer for a square field or ``(ny, nx)``.
    seed : int
        Seed; the same seed (and parameters) gives bit-identical images and
        truth. The catalog does not depend on ``bands``.
    bands : str or sequence of str, optional
        Bands to render; all seven CSST bands by default.
    star_density, galaxy_density : float, optional
        Mean surface densities in sources per square arcminute (r <= 27.5).
    ra, dec : float, optional
        Sky position of the field centre in degrees (ICRS).
    variation : bool, optional
        If `True`, randomise the PSF model and width, sky level, galaxy SED
        mix and galaxy profiles per field, and give stars non-black-body
        SEDs and both stars and galaxies interstellar reddening (see the
        module docstring).

    Returns
    -------
    images : dict of str to `~astropy.io.fits.ImageHDU`
        One float32 image per band in electron/s with a celestial TAN WCS.
    truth : `~astropy.table.Table`
        One row per source (see the module docstring for conventions).

    Raises
    ------
    ImportError
        If GalSim is not installed.
    ValueError
        If the shape, a band or a density is invalid.

    Examples
    --------
    >>> images, truth = simulate_field(128, seed=1, bands=['r'])  # doctest: +SKIP
    >>> images['r'].header['BUNIT']  # doctest: +SKIP
    'electron/s'
    """
    galsim = _import_galsim()
    shape = _validate_shape(shape_or_size)
    bands = _validate_bands(bands)
    star_density = _validate_density("star_density", star_density)
    galaxy_density = _validate_density("galaxy_density", galaxy_density)
    parameters = {
        "shape_or_size": shape,
        "seed": int(seed),
        "bands": list(bands),
        "star_density": star_density,
        "galaxy_density": galaxy_density,
        "ra": float(ra),
        "dec": float(dec),
        "variation": bool(variation),
    }
    provenance = {
        "call": _format_call("simulate_field", parameters),
        "seed": int(seed),
        "package_version": _package_version(),
    }

    # Streams: catalog, conditions, noise per band, then stellar SEDs (last, so
    # that adding it left the earlier streams and so the nominal fields unchanged).
    seeds = np.random.SeedSequence(int(seed)).spawn(3 + len(CSST_BANDS))
    conditions = _draw_field_conditions(np.random.default_rng(seeds[1]), variation)
    wcs = _make_wcs(shape, float(ra), float(dec))
    truth, render = _draw_catalog(
        np.random.default_rng(seeds[0]),
        np.random.default_rng(seeds[-1]),
        shape,
        star_density,
        galaxy_density,
        conditions,
        wcs,
    )
    gsparams = _gsparams(galsim)
    images = {}
    for band in bands:
        band_psf = _build_band_psf(galsim, band, conditions, gsparams)
        noiseless = _render_band(galsim, shape, band, band_psf, truth, render, gsparams)
        sky_rate = CSST_BANDS[band].sky_rate * conditions.sky_scale[band]
        noise_rng = np.random.default_rng(seeds[2 + band_order().index(band)])
        data = _observe(noiseless, band, sky_rate, noise_rng)
        header = _band_header(band, wcs, conditions, band_psf, sky_rate, provenance)
        images[band] = fits.ImageHDU(data=data, header=header, name=band)

    truth.meta["simulate_call"] = provenance["call"]
    truth.meta["package_version"] = provenance["package_version"]
    truth.meta["parameters"] = parameters
    truth.meta["field_conditions"] = asdict(conditions)
    truth.meta["conventions"] = (
        "x, y: 0-based astropy pixel coordinates; mags: true AB (40 = no flux); "
        "half_light_radius: circularised, r band; position_angle: from +x towards +y"
    )
    return images, truth


def write_field(outdir, shape_or_size, *, seed, overwrite=False, **kwargs):
    """Simulate one field and write ``OUTDIR/{band}.fits`` and ``OUTDIR/truth.ecsv``.

    Parameters
    ----------
    outdir : str or path-like
        Output directory (created if needed).
    shape_or_size : int or tuple of int
        Image size, as in `simulate_field`.
    seed : int
        Seed, as in `simulate_field`.
    overwrite : bool, optional
        Replace existing files.
    **kwargs
        Further keyword arguments of `simulate_field`.

    Returns
    -------
    truth : `~astropy.table.Table`
        The truth table that was written.

    Examples
    --------
    >>> truth = write_field('field1', 256, seed=3)  # doctest: +SKIP
    """
    images, truth = simulate_field(shape_or_size, seed=seed, **kwargs)
    os.makedirs(outdir, exist_ok=True)
    for band, hdu in images.items():
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(
            os.path.join(outdir, f"{band}.fits"), overwrite=overwrite
        )
    truth.write(os.path.join(outdir, "truth.ecsv"), overwrite=overwrite)
    return truth


def _tile_centres(n_tiles, size, ra, dec):
    """Tile centres on a square grid around ``(ra, dec)``, tiles not overlapping."""
    side = math.ceil(math.sqrt(n_tiles))
    spacing_deg = _TILE_SPACING * size * PIXEL_SCALE / 3600.0
    centres = []
    for k in range(n_tiles):
        column, row = k % side, k // side
        tile_dec = dec + (row - (side - 1) / 2) * spacing_deg
        tile_ra = ra + (column - (side - 1) / 2) * spacing_deg / math.cos(math.radians(tile_dec))
        centres.append((tile_ra % 360.0, tile_dec))
    return centres


def _write_tile(task):
    outdir, tile, size, seed, ra, dec, overwrite, kwargs = task
    images, truth = simulate_field(size, seed=seed, ra=ra, dec=dec, **kwargs)
    for band, hdu in images.items():
        hdu.header["TILE"] = (tile, "tile index")
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(
            os.path.join(outdir, f"tile{tile}_{band}.fits"), overwrite=overwrite
        )
    truth.meta = {}
    truth.add_column(np.full(len(truth), tile), name="tile", index=1)
    return truth


def simulate_tiles(
    outdir,
    n_tiles,
    *,
    size,
    seed,
    n_jobs=1,
    ra=150.0,
    dec=2.0,
    overwrite=False,
    **kwargs,
):
    """Simulate several tiles and write images and one truth table.

    With one tile the files are ``OUTDIR/{band}.fits`` (identical to
    `write_field` with the same seed); with several they are
    ``OUTDIR/tile{k}_{band}.fits``, and ``OUTDIR/truth.ecsv`` gains a ``tile``
    column. Tile seeds are derived from ``seed`` with
    `numpy.random.SeedSequence`, and tiles sit on a grid of distinct,
    non-overlapping sky positions around ``(ra, dec)``, so the output does not
    depend on ``n_jobs``.

    Parameters
    ----------
    outdir : str or path-like
        Output directory (created if needed).
    n_tiles : int
        Number of tiles.
    size : int or tuple of int
        Tile size, as ``shape_or_size`` in `simulate_field`.
    seed : int
        Master seed.
    n_jobs : int, optional
        Number of worker processes.
    ra, dec : float, optional
        Centre of the tile grid in degrees.
    overwrite : bool, optional
        Replace existing files.
    **kwargs
        Further keyword arguments of `simulate_field`.

    Returns
    -------
    truth : `~astropy.table.Table`
        The truth table of all tiles, with ids unique across tiles.

    Examples
    --------
    >>> truth = simulate_tiles('train', 40, size=2048, seed=7, n_jobs=16,
    ...                        variation=True)  # doctest: +SKIP
    """
    if int(n_tiles) != n_tiles or n_tiles < 1:
        msg = f"n_tiles must be a positive integer; got {n_tiles!r}"
        raise ValueError(msg)
    if int(n_jobs) != n_jobs or n_jobs < 1:
        msg = f"n_jobs must be a positive integer; got {n_jobs!r}"
        raise ValueError(msg)
    if n_tiles == 1:
        return write_field(outdir, size, seed=seed, ra=ra, dec=dec, overwrite=overwrite, **kwargs)
    _import_galsim()
    size = _validate_shape(size)
    os.makedirs(outdir, exist_ok=True)
    tile_seeds = [
        int(child.generate_state(1)[0]) for child in np.random.SeedSequence(int(seed)).spawn(n_tiles)
    ]
    centres = _tile_centres(n_tiles, max(size), ra, dec)
    tasks = [(outdir, k, size, tile_seeds[k], *centres[k], overwrite, kwargs) for k in range(n_tiles)]
    if n_jobs == 1:
        tables = [_write_tile(task) for task in tasks]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=int(n_jobs), mp_context=context) as executor:
            tables = list(executor.map(_write_tile, tasks))
    truth = vstack(tables, metadata_conflicts="silent")
    truth["id"] = np.arange(1, len(truth) + 1)
    parameters = {
        "n_tiles": int(n_tiles),
        "size": size,
        "seed": int(seed),
        "ra": float(ra),
        "dec": float(dec),
        **kwargs,
    }
    truth.meta["simulate_call"] = _format_call("simulate_tiles", parameters)
    truth.meta["package_version"] = _package_version()
    truth.meta["tile_seeds"] = tile_seeds
    truth.meta["tile_centres"] = [list(centre) for centre in centres]
    truth.write(os.path.join(outdir, "truth.ecsv"), overwrite=overwrite)
    return truth


# --------------------------------------------------------------------------
# Depth measurement
# --------------------------------------------------------------------------


def measure_depth(data, header, *, seed=0, n_apertures=2000):
    """Measure the 5-sigma point-source depth of a simulated image.

    Circular apertures of radius ``APRAD`` pixels are placed at random
    positions that avoid sources (detected at 3 sigma on the smoothed image and grown by the
    aperture radius plus two pixels) and saturated pixels. Five times the
    robust (MAD) standard deviation of the aperture sums is divided by the
    point-source flux fraction ``APFRAC`` of the aperture and converted to a
    total AB magnitude with ``MAGZERO``.

    Parameters
    ----------
    data : 2D `~numpy.ndarray`
        Background-subtracted image in the units of ``MAGZERO``.
    header : `~astropy.io.fits.Header`
        Header with ``MAGZERO``, ``APRAD`` and ``APFRAC`` (``SATURATE`` is
        used when present), as written by `simulate_field`.
    seed : int, optional
        Seed for the aperture positions.
    n_apertures : int, optional
        Number of random positions tried (apertures touching sources are
        discarded).

    Returns
    -------
    depth : float
        5-sigma point-source depth (AB mag).

    Raises
    ------
    ValueError
        If a header keyword is missing or fewer than 50 clean apertures fit.

    Examples
    --------
    >>> images, _ = simulate_field(512, seed=2, bands=['g'])  # doctest: +SKIP
    >>> measure_depth(images['g'].data, images['g'].header)  # doctest: +SKIP
    26.4...
    """
    from photutils.aperture import CircularAperture
    from photutils.segmentation import detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    missing = [key for key in ("MAGZERO", "APRAD", "APFRAC") if key not in header]
    if missing:
        msg = f"header lacks the keywords {missing} needed to measure the depth"
        raise ValueError(msg)
    data = np.asarray(data, dtype=float)
    radius = float(header["APRAD"])
    smoothed = ndimage.gaussian_filter(data, 1.0)
    smoothed_noise = mad_std(smoothed, ignore_nan=True)
    # 3 sigma and 10 pixels: few noise peaks get masked, which would bias sigma low.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segments = detect_sources(smoothed, 3.0 * smoothed_noise, n_pixels=10)
    mask = np.zeros(data.shape, bool) if segments is None else segments.data > 0
    if "SATURATE" in header:
        mask |= data >= float(header["SATURATE"])
    mask |= ~np.isfinite(data)
    grow = math.ceil(radius) + 2
    yy, xx = np.mgrid[-grow : grow + 1, -grow : grow + 1]
    mask = ndimage.binary_dilation(mask, structure=xx**2 + yy**2 <= grow**2)

    rng = np.random.default_rng(seed)
    margin = grow
    if min(data.shape) <= 2 * margin + 1:
        msg = f"image of shape {data.shape} is too small for depth apertures"
        raise ValueError(msg)
    x = rng.integers(margin, data.shape[1] - margin, size=n_apertures)
    y = rng.integers(margin, data.shape[0] - margin, size=n_apertures)
    clean = ~mask[y, x]
    if clean.sum() < 50:
        msg = f"only {clean.sum()} source-free apertures fit (need 50); use a larger image"
        raise ValueError(msg)
    positions = np.column_stack([x[clean], y[clean]]).astype(float)
    sums, _ = CircularAperture(positions, radius).do_photometry(data, method="exact")
    five_sigma = 5 * mad_std(sums)
    return float(header["MAGZERO"]) - 2.5 * math.log10(five_sigma / float(header["APFRAC"]))


def _isolated_bright_stars(truth, band, separation_arcsec=1.0):
    """Indices of unsaturated stars with S/N above ~80 and no neighbour within 1 arcsec."""
    props = CSST_BANDS[band]
    mags = np.asarray(truth[f"mag_{band}"])
    x, y = np.asarray(truth["x"]), np.asarray(truth["y"])
    candidates = np.flatnonzero(
        (np.asarray(truth["label"]) == "star")
        & (mags > props.saturation_mag + 1.0)
        & (mags < props.depth_5sigma - 3.0)
    )
    limit_px = separation_arcsec / PIXEL_SCALE
    isolated = [index for index in candidates if np.sum(np.hypot(x - x[index], y - y[index]) < limit_px) == 1]
    return np.array(isolated, dtype=int)


def validate_field(images, truth, *, seed=0):
    """Measure depth, star FWHM and bright-star photometry of simulated images.

    Parameters
    ----------
    images : dict of str to `~astropy.io.fits.ImageHDU`
        Images from `simulate_field`.
    truth : `~astropy.table.Table`
        The matching truth table.
    seed : int, optional
        Seed for the depth apertures.

    Returns
    -------
    report : `~astropy.table.Table`
        Per band: ``depth`` (from `measure_depth`), ``depth_table`` (CSST
        table), ``star_fwhm`` (arcsec, median Gaussian-PRF fit of isolated
        bright stars), ``photometry_offset`` (median of aperture magnitude
        corrected with ``APFRAC`` minus true magnitude) and ``n_stars``.
        FWHM and offset are NaN when no isolated bright star is present.

    Examples
    --------
    >>> images, truth = simulate_field(512, seed=4, star_density=600)  # doctest: +SKIP
    >>> validate_field(images, truth)['depth']  # doctest: +SKIP
    """
    from photutils.aperture import CircularAperture
    from photutils.psf import fit_fwhm

    rows = []
    for band, hdu in images.items():
        header = hdu.header
        data = np.asarray(hdu.data, dtype=float)
        props = CSST_BANDS[band]
        stars = _isolated_bright_stars(truth, band)
        x, y = np.asarray(truth["x"])[stars], np.asarray(truth["y"])[stars]
        inside = (x > 4) & (y > 4) & (x < data.shape[1] - 5) & (y < data.shape[0] - 5)
        stars, x, y = stars[inside], x[inside], y[inside]
        fwhm, offset = np.nan, np.nan
        if len(stars):
            positions = np.column_stack([x, y])
            fwhm = float(np.median(fit_fwhm(data, xypos=positions, fit_shape=7))) * PIXEL_SCALE
            sums, _ = CircularAperture(positions, float(header["APRAD"])).do_photometry(data, method="exact")
            measured = float(header["MAGZERO"]) - 2.5 * np.log10(sums / float(header["APFRAC"]))
            offset = float(np.median(measured - np.asarray(truth[f"mag_{band}"])[stars]))
        depth = measure_depth(data, header, seed=seed)
        rows.append((band, depth, props.depth_5sigma, fwhm, offset, len(stars)))
    names = ("band", "depth", "depth_table", "star_fwhm", "photometry_offset", "n_stars")
    report = Table(rows=rows, names=names)
    report["depth"].unit = report["depth_table"].unit = u.mag
    report["photometry_offset"].unit = u.mag
    report["star_fwhm"].unit = u.arcsec
    return report


# --------------------------------------------------------------------------
# Command line and bundled demo data
# --------------------------------------------------------------------------


def cli_simulate(args):
    """Run ``astro-stargal simulate`` from parsed command-line arguments.

    Parameters
    ----------
    args : `argparse.Namespace`
        With ``outdir``, ``size``, ``seed``, ``tiles``, ``n_jobs``,
        ``star_density``, ``galaxy_density`` and ``variation``.

    Returns
    -------
    exit_code : int
        0 on success.

    Examples
    --------
    Shell usage::

        astro-stargal simulate OUTDIR --size 2048 --seed 1 --tiles 40 --n-jobs 16
    """
    optional = {
        key: getattr(args, key)
        for key in ("star_density", "galaxy_density")
        if getattr(args, key, None) is not None
    }
    truth = simulate_tiles(
        args.outdir,
        args.tiles or 1,
        size=args.size,
        seed=args.seed,
        n_jobs=args.n_jobs or 1,
        variation=bool(args.variation),
        overwrite=bool(getattr(args, "overwrite", False)),
        **optional,
    )
    n_stars = int(np.sum(truth["label"] == "star"))
    print(f"wrote {len(truth)} sources ({n_stars} stars) to {args.outdir}")
    return 0


_DEMO_SEED = 20260101
_DEMO_SIZE = 400


def make_demo_data(outdir=None):
    """Regenerate the bundled demo field and its truth table.

    Writes ``demo_field.fits`` (the seven bands as tile-compressed image
    extensions named after the bands) and ``demo_truth.ecsv`` for a
    400 x 400 pixel field at the default densities with a fixed seed.

    Parameters
    ----------
    outdir : str or path-like, optional
        Output directory; ``astro_stargal/data`` by default.

    Returns
    -------
    paths : tuple of str
        The image file and the truth table.

    Examples
    --------
    >>> make_demo_data('/tmp/demo')  # doctest: +SKIP
    ('/tmp/demo/demo_field.fits', '/tmp/demo/demo_truth.ecsv')
    """
    if outdir is None:
        outdir = os.path.join(os.path.dirname(__file__), "data")
    images, truth = simulate_field(_DEMO_SIZE, seed=_DEMO_SEED)
    hdus = [fits.PrimaryHDU()]
    for band, image in images.items():
        # Dithered quantisation to 1/16 of the noise keeps the file small.
        hdus.append(
            fits.CompImageHDU(
                data=image.data,
                header=image.header,
                name=band,
                compression_type="RICE_1",
                quantize_level=16.0,
                quantize_method=1,
                dither_seed=1,
            )
        )
    os.makedirs(outdir, exist_ok=True)
    image_path = os.path.join(outdir, "demo_field.fits")
    truth_path = os.path.join(outdir, "demo_truth.ecsv")
    fits.HDUList(hdus).writeto(image_path, overwrite=True)
    truth.write(truth_path, overwrite=True)
    return image_path, truth_path
