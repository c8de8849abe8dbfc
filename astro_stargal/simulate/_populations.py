"""Source populations: stars and galaxies with magnitudes, colours, sizes and shapes, and the truth table."""

import numpy as np
from astropy import units as u
from astropy.table import Table
from astropy.wcs import WCS
from scipy import special, stats

from ..instrument import (
    CSST_BANDS,
    PIXEL_SCALE,
    band_order,
)
from ._seds import (
    CWW_TEMPLATES,
    MAX_REDSHIFT,
    draw_stellar_absorption_strengths,
    fluxes_to_mags,
    foreground_reddening,
    galaxy_colour_grid,
    interpolate_rows,
    modified_black_body_fluxes,
    star_colour_grid,
)

#: Default surface densities in sources per square arcminute.
DEFAULT_STAR_DENSITY = 150.0

DEFAULT_GALAXY_DENSITY = 450.0

_R_BAND_RANGE_STARS = (17.0, 27.5)

_R_BAND_RANGE_GALAXIES = (17.5, 27.5)

BULGE_TO_DISK_RADIUS = 0.5

_COMPACT_GALAXY_FRACTION = 0.1

_SERSIC_INDEX_STEP = 0.25  # quantised so GalSim can reuse its Sersic tables


def _draw_magnitudes(rng, n, mag_range, slope):
    """Draw magnitudes with ``dN/dm ~ 10**(slope * m)`` within ``mag_range``."""
    low, high = (10 ** (slope * m) for m in mag_range)
    return np.log10(low + rng.uniform(size=n) * (high - low)) / slope


def draw_stars(rng, n, conditions, sed_rng):
    """Draw stars: r magnitudes, temperatures, spectra and the magnitudes in every band.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The catalog stream.
    n : int
        Number of stars.
    conditions : `FieldConditions`
        Chooses black bodies or modified black bodies with reddening.
    sed_rng : `numpy.random.Generator`
        Stream of the per-star SED strengths, apart so that the rest of the field does not move.

    Returns
    -------
    stars : dict
        ``mags`` (``(n, 7)`` AB magnitudes in band order), ``temperature`` (K)
        and ``ebv`` (mag).

    Examples
    --------
    >>> from astro_stargal.simulate import FieldConditions
    >>> stars = draw_stars(np.random.default_rng(1), 3, FieldConditions(), np.random.default_rng(2))
    >>> stars["mags"].shape
    (3, 7)
    """
    mag_r = _draw_magnitudes(rng, n, _R_BAND_RANGE_STARS, slope=0.12)
    # Beta(1.5, 4) in log T from 3000 K to 30000 K: mostly K and M dwarfs.
    temperature = 3000.0 * 10 ** rng.beta(1.5, 4.0, size=n)
    if conditions.star_sed_model == "black_body":
        temperature_grid, ratio_grid = star_colour_grid()
        relative_flux = interpolate_rows(temperature_grid, ratio_grid, temperature)
        ebv = np.zeros(n)
    else:
        strengths = draw_stellar_absorption_strengths(sed_rng, temperature, conditions.star_ebv_mean)
        relative_flux = modified_black_body_fluxes(temperature, strengths)
        ebv = strengths[:, 3]
    # The drawn r magnitude is the observed one: dust changes colours, not the r counts.
    return {
        "mags": fluxes_to_mags(relative_flux, mag_r),
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
        inside = _circularised_half_light_fraction(middle, bulge_fraction, BULGE_TO_DISK_RADIUS, 1.0)
        low = np.where(inside < 0.5, middle, low)
        high = np.where(inside < 0.5, high, middle)
    return 0.5 * (low + high)


def draw_galaxies(rng, n, conditions):
    """Draw galaxies: magnitudes, redshifts, sizes, profiles, shapes and band magnitudes.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The catalog stream.
    n : int
        Number of galaxies.
    conditions : `FieldConditions`
        Sets the SED mix, the single-Sersic fraction and the foreground reddening.

    Returns
    -------
    galaxies : dict
        ``mags`` (``(n, 7)``), ``redshift``, ``half_light_radius`` (arcsec,
        r band, circularised), ``disk_radius``, ``bulge_fraction``,
        ``bulge_fraction_bands``, ``sersic_index`` (NaN for bulge+disk),
        ``axis_ratio``, ``position_angle`` (deg), ``sed_type`` and ``compact``.

    Examples
    --------
    >>> from astro_stargal.simulate import FieldConditions
    >>> galaxies = draw_galaxies(np.random.default_rng(1), 4, FieldConditions())
    >>> galaxies["mags"].shape, bool((galaxies["redshift"] > 0).all())
    ((4, 7), True)
    """
    mag_r = _draw_magnitudes(rng, n, _R_BAND_RANGE_GALAXIES, slope=0.33)
    # Redshift: p(z) ~ z^2 exp(-(z/z0)^1.5) with the median rising with
    # magnitude, truncated at z = 3.5 by inverse-CDF sampling of Gamma(2).
    median_redshift = 0.25 + 0.17 * (mag_r - 18.0)
    z0 = median_redshift / 1.412
    upper_cdf = stats.gamma.cdf((MAX_REDSHIFT / z0) ** 1.5, 2.0)
    gamma_draw = stats.gamma.ppf(rng.uniform(size=n) * upper_cdf, 2.0)
    redshift = np.clip(z0 * gamma_draw ** (2 / 3), 0.01, MAX_REDSHIFT)

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
    disk_sed = rng.choice(len(CWW_TEMPLATES), size=n, p=conditions.disk_sed_weights)

    redshift_grid, ratio_grids = galaxy_colour_grid()
    bulge_ratio = interpolate_rows(redshift_grid, ratio_grids["E"], redshift)
    disk_ratio = np.empty_like(bulge_ratio)
    for index, template in enumerate(CWW_TEMPLATES):
        chosen = disk_sed == index
        disk_ratio[chosen] = interpolate_rows(redshift_grid, ratio_grids[template], redshift[chosen])
    bulge_relative = bulge_fraction_r[:, None] * bulge_ratio
    disk_relative = (1 - bulge_fraction_r)[:, None] * disk_ratio
    total_relative = bulge_relative + disk_relative
    with np.errstate(invalid="ignore", divide="ignore"):
        bulge_fraction_bands = np.nan_to_num(bulge_relative / total_relative)
    if conditions.galaxy_ebv > 0:
        total_relative = total_relative * foreground_reddening(conditions.galaxy_ebv)

    disk_radius = half_light_radius / _composite_half_light_radius(bulge_fraction_r)
    return {
        "mags": fluxes_to_mags(total_relative, mag_r),
        "bulge_fraction_bands": bulge_fraction_bands,
        "redshift": redshift,
        "half_light_radius": half_light_radius,
        "disk_radius": np.where(single_sersic, half_light_radius, disk_radius),
        "bulge_fraction": bulge_fraction_r,
        "sersic_index": sersic_index,
        "axis_ratio": axis_ratio,
        "position_angle": position_angle,
        "sed_type": np.array([CWW_TEMPLATES[k] for k in disk_sed], dtype="U3"),
        "compact": compact,
    }


def make_wcs(shape, ra, dec):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    wcs.wcs.cd = np.array([[-PIXEL_SCALE, 0.0], [0.0, PIXEL_SCALE]]) / 3600.0
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    return wcs


def draw_catalog(rng, sed_rng, shape, star_density, galaxy_density, conditions, wcs):
    area_arcmin2 = shape[0] * shape[1] * (PIXEL_SCALE / 60.0) ** 2
    n_stars = rng.poisson(star_density * area_arcmin2)
    n_galaxies = rng.poisson(galaxy_density * area_arcmin2)
    stars = draw_stars(rng, n_stars, conditions, sed_rng)
    galaxies = draw_galaxies(rng, n_galaxies, conditions)
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
