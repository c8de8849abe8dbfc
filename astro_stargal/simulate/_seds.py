"""Spectral energy distributions of stars and galaxies, and their fluxes in the CSST bands."""

import functools
import math
import os

import numpy as np
from astropy import constants
from scipy import special

from ..instrument import (
    CSST_BANDS,
    band_order,
)
from ._galsim import import_galsim

_PLANCK = float(constants.h.si.value)  # J s; Python floats keep NumPy float32 arithmetic in float32

_SPEED_OF_LIGHT = float(constants.c.si.value)  # m / s

_BOLTZMANN = float(constants.k_B.si.value)  # J / K

MAX_TRUE_MAG = 40.0

MAX_REDSHIFT = 3.5

CWW_TEMPLATES = ("E", "Sbc", "Scd", "Im")

_R_V = 3.1  # ratio of total to selective extinction, A_V / E(B-V)

_STAR_SED_WAVELENGTHS_NM = np.linspace(200.0, 1150.0, 951)  # 1 nm steps for per-star SEDs

_STAR_SED_CHUNK = 256  # stars per block of per-star SEDs: 1 MB float32 blocks stay in cache

_UV_BLANKETING_ONSET_NM = 450.0

_BALMER_LIMIT_NM = 364.6

_TIO_BANDS_NM = ((495.0, 560.0), (620.0, 720.0), (760.0, 800.0))  # TiO band groups in g, r and i

_TIO_EDGE_NM = 3.0


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
def galaxy_colour_grid():
    """Band fluxes relative to r of the CWW templates on a redshift grid."""
    galsim = import_galsim()
    redshifts = np.linspace(0.0, MAX_REDSHIFT + 0.05, 356)
    observed_nm = np.linspace(200.0, 1150.0, 3000)
    ratios = {}
    for template in CWW_TEMPLATES:
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
def star_colour_grid():
    """Band fluxes relative to r of black bodies on a temperature grid."""
    temperatures = np.geomspace(2500.0, 40000.0, 300)
    wavelength_nm = np.linspace(200.0, 1150.0, 3000)
    wavelength_m = wavelength_nm[None, :] * 1e-9
    exponent = _PLANCK * _SPEED_OF_LIGHT / (wavelength_m * _BOLTZMANN * temperatures[:, None])
    flambda = wavelength_m**-5 / np.expm1(exponent)
    fluxes = _band_fluxes_of_sed(wavelength_nm, flambda)
    return temperatures, fluxes / fluxes[:, [band_order().index("r")]]


def ccm89_extinction(wavelength_nm, r_v=_R_V):
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
    dust = 0.4 * math.log(10.0) * ccm89_extinction(wavelength_nm)
    profiles = np.array([blanketing, balmer, tio, dust])
    profiles.flags.writeable = False
    return profiles


def modified_black_body_fluxes(temperature, strengths, profiles=None):
    """Band fluxes relative to r of black bodies times ``exp(-strengths @ profiles)``.

    ``strengths`` has one row per star and one column per profile of
    `_stellar_absorption_profiles` (blanketing, Balmer, TiO, E(B-V)), or of
    ``profiles`` when given (rows on the same wavelength grid).
    """
    # Single precision: five times faster exponentials, errors below 1e-5 mag.
    wavelength_nm = _STAR_SED_WAVELENGTHS_NM.astype(np.float32)
    if profiles is None:
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


def draw_stellar_absorption_strengths(rng, temperature, ebv_mean):
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


def foreground_reddening(ebv):
    """Band flux factors relative to r of ``E(B-V) = ebv`` on a flat-spectrum source."""
    flat = _STAR_SED_WAVELENGTHS_NM**-2.0
    dust = _stellar_absorption_profiles()[3]
    factors = _band_fluxes_of_sed(_STAR_SED_WAVELENGTHS_NM, flat * np.exp(-ebv * dust))[0]
    factors /= _band_fluxes_of_sed(_STAR_SED_WAVELENGTHS_NM, flat)[0]
    return factors / factors[band_order().index("r")]


def interpolate_rows(x_grid, table, x):
    """Linearly interpolate each column of ``table`` (rows on ``x_grid``) at ``x``."""
    return np.column_stack([np.interp(x, x_grid, column) for column in table.T])


def fluxes_to_mags(relative_flux, mag_r):
    with np.errstate(divide="ignore"):
        mags = mag_r[:, None] - 2.5 * np.log10(relative_flux)
    return np.minimum(mags, MAX_TRUE_MAG)


# --- Spectra of the realistic populations (``Realism.populations``) ---------------------------------

# Molecular bands of M dwarfs beyond the TiO groups above: more TiO (alpha,
# gamma' and gamma systems) and CaH in g and r, and VO, which appears in i
# below about 3300 K.
_M_DWARF_EXTRA_BANDS_NM = ((470.0, 520.0), (540.0, 560.0), (580.0, 600.0), (615.0, 640.0), (655.0, 700.0))

_VO_BANDS_NM = ((735.0, 760.0), (785.0, 800.0), (845.0, 870.0))

#: Rest wavelength (nm) and rest equivalent width (nm) of the broad QSO lines,
#: after the SDSS composite of Vanden Berk et al. (2001, AJ 122, 549).
QSO_LINES = (
    (121.6, 9.2),  # Lyman alpha + N V
    (154.9, 2.4),  # C IV
    (190.9, 2.2),  # C III]
    (279.8, 3.3),  # Mg II
    (434.0, 1.2),  # H gamma
    (486.1, 4.6),  # H beta
    (500.7, 1.4),  # [O III]
    (656.3, 19.5),  # H alpha
)

_QSO_LINE_VELOCITY_FWHM = 4000.0  # km/s

_QSO_WAVELENGTHS_NM = np.linspace(200.0, 1150.0, 3801)  # 0.25 nm: resolves the narrowest line


def _band_profile(wavelength_nm, bands):
    return sum(
        special.expit((wavelength_nm - blue) / _TIO_EDGE_NM)
        * special.expit((red - wavelength_nm) / _TIO_EDGE_NM)
        for blue, red in bands
    )


@functools.lru_cache(maxsize=1)
def stellar_profiles_with_molecules():
    """The absorption profiles of `modified_black_body_fluxes` plus M-dwarf TiO/CaH and VO (six rows)."""
    wavelength_nm = _STAR_SED_WAVELENGTHS_NM
    molecular = np.array(
        [_band_profile(wavelength_nm, _M_DWARF_EXTRA_BANDS_NM), _band_profile(wavelength_nm, _VO_BANDS_NM)]
    )
    profiles = np.vstack([_stellar_absorption_profiles(), molecular])
    profiles.flags.writeable = False
    return profiles


def m_dwarf_strengths(rng, temperature, ebv):
    """Per-star strengths (columns of `stellar_profiles_with_molecules`) for M dwarfs.

    TiO and CaH deepen from 3900 K down to 3000 K; VO appears below 3300 K.
    At the mean strengths (per-star scatter in [0.8, 1.2)) r - i in the CSST
    bands rises from 0.74 at 3900 K to 2.0 at 3000 K, i - z from 0.49 to
    1.15 and g - r stays at 1.0-1.2: roughly the SDSS M-dwarf sequence (West,
    Walkowicz & Hawley 2005, PASP 117, 706), where black bodies give r - i
    of 0.55-0.9 and i - z of 0.34-0.64.
    """
    scatter = rng.uniform(0.8, 1.2, size=(2, len(temperature)))
    coolness = np.clip((3900.0 - temperature) / 900.0, 0.0, 1.2)
    blanketing = 2.0 * (5800.0 / temperature) ** 1.5
    tio = (0.3 + 0.8 * coolness) * scatter[0]
    tio_extra = (0.2 + 1.5 * coolness) * scatter[0]
    vo = 0.6 * np.clip((3300.0 - temperature) / 600.0, 0.0, 1.0) * scatter[1]
    return np.column_stack([blanketing, np.zeros(len(temperature)), tio, ebv, tio_extra, vo])


def white_dwarf_strengths(rng, temperature, ebv):
    """Per-star strengths (columns of `stellar_profiles_with_molecules`) for white dwarfs.

    Near black bodies: no line blanketing or molecules, and a Balmer jump at
    most a third as deep as a main-sequence star's (pressure broadening fills
    it in at high gravity), strongest near 12000 K.
    """
    balmer = 0.33 * rng.uniform(0.5, 1.5, size=len(temperature))
    balmer *= np.exp(-0.5 * (np.log10(temperature / 12000.0) / 0.15) ** 2)
    zeros = np.zeros(len(temperature))
    return np.column_stack([zeros, balmer, zeros, ebv, zeros, zeros])


def black_body_band_fluxes(temperature):
    """Photon-counting band fluxes of black bodies of unit area (only ratios between stars are meaningful)."""
    temperature = np.atleast_1d(np.asarray(temperature, float))
    wavelength_m = _STAR_SED_WAVELENGTHS_NM[None, :] * 1e-9
    exponent = _PLANCK * _SPEED_OF_LIGHT / (wavelength_m * _BOLTZMANN * temperature[:, None])
    flambda = wavelength_m**-5 / np.expm1(exponent) * 1e-30
    return _band_fluxes_of_sed(_STAR_SED_WAVELENGTHS_NM, flambda)


def qso_fluxes(redshift, slope, line_scale):
    """Band fluxes relative to r of QSO spectra.

    A power law ``f_nu ~ nu**slope`` plus the broad lines of `QSO_LINES`
    (Gaussian, 4000 km/s FWHM, equivalent widths times ``line_scale``), seen
    through the mean intergalactic Lyman-alpha forest and Lyman limit at the
    QSO's redshift.

    Parameters
    ----------
    redshift, slope, line_scale : `~numpy.ndarray`
        One value per QSO.

    Returns
    -------
    relative_flux : `~numpy.ndarray`
        ``(n, 7)`` fluxes relative to r in band order.
    """
    observed_nm = _QSO_WAVELENGTHS_NM
    redshift = np.asarray(redshift, float)[:, None]
    rest_nm = observed_nm[None, :] / (1 + redshift)
    continuum = rest_nm ** (-2.0 - np.asarray(slope, float)[:, None])
    lines = np.zeros_like(continuum)
    for centre, equivalent_width in QSO_LINES:
        sigma = centre * _QSO_LINE_VELOCITY_FWHM / 2.998e5 / (2 * math.sqrt(2 * math.log(2)))
        at_line = centre ** (-2.0 - np.asarray(slope, float)[:, None])
        shape = np.exp(-0.5 * ((rest_nm - centre) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        lines += np.asarray(line_scale, float)[:, None] * equivalent_width * at_line * shape
    flambda = (continuum + lines) * _igm_transmission(observed_nm[None, :], redshift)
    fluxes = _band_fluxes_of_sed(observed_nm, flambda)
    return fluxes / fluxes[:, [band_order().index("r")]]
