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
    black_body_band_fluxes,
    draw_stellar_absorption_strengths,
    fluxes_to_mags,
    foreground_reddening,
    galaxy_colour_grid,
    interpolate_rows,
    m_dwarf_strengths,
    modified_black_body_fluxes,
    qso_fluxes,
    star_colour_grid,
    stellar_profiles_with_molecules,
    white_dwarf_strengths,
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


def draw_stars(rng, n, conditions, sed_rng, *, r_range=_R_BAND_RANGE_STARS):
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
    r_range : tuple of float, optional
        Range of r magnitudes.

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
    mag_r = _draw_magnitudes(rng, n, r_range, slope=0.12)
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


def draw_galaxies(
    rng, n, conditions, *, sersic_fraction=None, max_sersic_index=5.0, mag_r=None, redshift=None
):
    """Draw galaxies: magnitudes, redshifts, sizes, profiles, shapes and band magnitudes.

    The keyword options replace drawn values without changing which random
    numbers are drawn, so the rest of a field stays put.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The catalog stream.
    n : int
        Number of galaxies.
    conditions : `FieldConditions`
        Sets the SED mix, the single-Sersic fraction and the foreground reddening.
    sersic_fraction : float, optional
        Fraction drawn as one Sersic profile (default: the conditions' fraction).
    max_sersic_index : float, optional
        Upper end of the uniform Sersic index range (the lower end is 0.5).
    mag_r : `~numpy.ndarray`, optional
        r magnitudes to use instead of drawn ones (sizes and redshifts follow them).
    redshift : `~numpy.ndarray`, optional
        Redshifts to use instead of drawn ones (colours follow them).

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
    drawn_mag_r = _draw_magnitudes(rng, n, _R_BAND_RANGE_GALAXIES, slope=0.33)
    mag_r = drawn_mag_r if mag_r is None else np.asarray(mag_r, float)
    # Redshift: p(z) ~ z^2 exp(-(z/z0)^1.5) with the median rising with
    # magnitude, truncated at z = 3.5 by inverse-CDF sampling of Gamma(2).
    median_redshift = 0.25 + 0.17 * (mag_r - 18.0)
    z0 = median_redshift / 1.412
    upper_cdf = stats.gamma.cdf((MAX_REDSHIFT / z0) ** 1.5, 2.0)
    gamma_draw = stats.gamma.ppf(rng.uniform(size=n) * upper_cdf, 2.0)
    redshift = np.clip(z0 * gamma_draw ** (2 / 3), 0.01, MAX_REDSHIFT) if redshift is None else redshift

    # Half-light radius falls with magnitude (0.25 dex log-normal scatter),
    # plus a population of compact galaxies smaller than the PSF.
    half_light_radius = 0.8 * 10 ** (-0.13 * (mag_r - 20.0) + rng.normal(0.0, 0.25, size=n))
    compact = rng.uniform(size=n) < _COMPACT_GALAXY_FRACTION
    half_light_radius[compact] = np.exp(rng.uniform(np.log(0.02), np.log(0.07), size=compact.sum()))
    half_light_radius = np.clip(half_light_radius, 0.02, 4.0)

    bulge_fraction_r = rng.beta(1.0, 2.5, size=n)
    if sersic_fraction is None:
        sersic_fraction = conditions.single_sersic_fraction
    single_sersic = rng.uniform(size=n) < sersic_fraction
    sersic_index = np.where(
        single_sersic,
        np.round(rng.uniform(0.5, max_sersic_index, size=n) / _SERSIC_INDEX_STEP) * _SERSIC_INDEX_STEP,
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


def _star_group(stars, x, y, conditions):
    n = len(x)
    zeros = np.zeros(n)
    return {
        "x": x,
        "y": y,
        "label": np.full(n, "star", dtype="U6"),
        "mags": stars["mags"],
        "redshift": zeros,
        "half_light_radius": zeros,
        "bulge_fraction": zeros,
        "sersic_index": np.full(n, np.nan),
        "ellipticity": zeros,
        "position_angle": zeros,
        "temperature": stars["temperature"],
        "sed_type": np.full(n, "BB" if conditions.star_sed_model == "black_body" else "MBB", dtype="U3"),
        "compact": np.zeros(n, bool),
        "ebv": stars["ebv"],
        "disk_radius": zeros,
        "bulge_fraction_bands": np.zeros((n, len(CSST_BANDS))),
    }


def _galaxy_group(galaxies, x, y, conditions):
    n = len(x)
    return {
        "x": x,
        "y": y,
        "label": np.full(n, "galaxy", dtype="U6"),
        "mags": galaxies["mags"],
        "redshift": galaxies["redshift"],
        "half_light_radius": galaxies["half_light_radius"],
        "bulge_fraction": galaxies["bulge_fraction"],
        "sersic_index": galaxies["sersic_index"],
        "ellipticity": 1 - galaxies["axis_ratio"],
        "position_angle": galaxies["position_angle"],
        "temperature": np.zeros(n),
        "sed_type": galaxies["sed_type"],
        "compact": galaxies["compact"],
        "ebv": np.full(n, conditions.galaxy_ebv),
        "disk_radius": galaxies["disk_radius"],
        "bulge_fraction_bands": galaxies["bulge_fraction_bands"],
    }


def _assemble(groups, conditions, wcs):
    """The truth table and render columns of source groups, in order, with ids from 1."""
    columns = {name: np.concatenate([group[name] for group in groups]) for name in groups[0]}
    n_total = len(columns["x"])
    ra, dec = wcs.all_pix2world(columns["x"], columns["y"], 0)
    truth = Table()
    truth["id"] = np.arange(1, n_total + 1)
    truth["ra"] = ra * u.deg
    truth["dec"] = dec * u.deg
    truth["x"] = columns["x"] * u.pix
    truth["y"] = columns["y"] * u.pix
    truth["label"] = columns["label"]
    for index, name in enumerate(band_order()):
        truth[f"mag_{name}"] = columns["mags"][:, index] * u.mag
    truth["redshift"] = columns["redshift"]
    truth["half_light_radius"] = columns["half_light_radius"] * u.arcsec
    truth["bulge_fraction"] = columns["bulge_fraction"]
    truth["sersic_index"] = columns["sersic_index"]
    truth["ellipticity"] = columns["ellipticity"]
    truth["position_angle"] = columns["position_angle"] * u.deg
    truth["temperature"] = columns["temperature"] * u.K
    truth["sed_type"] = columns["sed_type"]
    truth["compact"] = columns["compact"]
    if not conditions.nominal_seds:
        truth["ebv"] = columns["ebv"] * u.mag
    render = {
        "bulge_fraction_bands": columns["bulge_fraction_bands"],
        "disk_radius": columns["disk_radius"],
    }
    return truth, render, columns


def draw_catalog(
    rng, sed_rng, shape, star_density, galaxy_density, conditions, wcs, populations=None, population_seed=None
):
    """Draw a field's sources: the truth table and what rendering needs beyond it.

    With ``populations`` (resolved `Populations` options and the field's
    population `numpy.random.SeedSequence`), galaxies take the Sersic
    options and the realistic populations are added (`add_populations`);
    the catalog stream draws the same numbers either way.
    """
    area_arcmin2 = shape[0] * shape[1] * (PIXEL_SCALE / 60.0) ** 2
    n_stars = rng.poisson(star_density * area_arcmin2)
    n_galaxies = rng.poisson(galaxy_density * area_arcmin2)
    stars = draw_stars(rng, n_stars, conditions, sed_rng)
    profiles = {}
    if populations is not None:
        profiles = {"sersic_fraction": populations.sersic_fraction, "max_sersic_index": _MAX_SERSIC_INDEX}
    galaxies = draw_galaxies(rng, n_galaxies, conditions, **profiles)
    n_total = n_stars + n_galaxies
    x = rng.uniform(-0.5, shape[1] - 0.5, size=n_total)
    y = rng.uniform(-0.5, shape[0] - 0.5, size=n_total)
    groups = [
        _star_group(stars, x[:n_stars], y[:n_stars], conditions),
        _galaxy_group(galaxies, x[n_stars:], y[n_stars:], conditions),
    ]
    if populations is None:
        truth, render, _ = _assemble(groups, conditions, wcs)
        return truth, render
    return add_populations(groups, stars, populations, population_seed, conditions, shape, wcs)


# --- Realistic populations (``Realism.populations``) -------------------------------------------------

_MAX_SERSIC_INDEX = 6.0

_M_DWARF_TEMPERATURE = 3900.0  # K: cooler stars get TiO, CaH and VO bands

_WHITE_DWARF_TEMPERATURE = (6000.0, 40000.0)  # K, log-uniform

_COMPANION_TEMPERATURE_RATIO = (0.55, 0.95)

_MIN_STAR_TEMPERATURE = 3000.0  # K: the coolest star drawn, and so the coolest companion

_RESOLVED_SEPARATION = (0.05, 0.3)  # arcsec

_MERGER_SEPARATION = (0.2, 1.0)  # arcsec

_MERGER_MAGNITUDE_GAP = 2.0  # companion up to this much fainter in r

_R_BAND_RANGE_BRIGHT_STARS = (13.0, 17.0)

_R_BAND_RANGE_QSOS = (17.0, 27.5)

_QSO_REDSHIFT = (0.3, 4.0)

_CLUMP_SIGMA = (0.01, 0.04)  # arcsec: point-like to small knots

_CLUMP_SHARE_R = (0.05, 0.25)  # of the galaxy's r-band light

_MAX_CLUMP_SHARE = 0.8

_CLUMPY_MIN_RADIUS = 0.08  # arcsec: smaller galaxies cannot show clumps

_POPULATION_STREAMS = (
    "seds",
    "white_dwarfs",
    "unresolved",
    "resolved",
    "clumps",
    "mergers",
    "qsos",
    "bright",
)


def _relative_to_r(mags):
    return 10 ** (-0.4 * (mags - mags[:, [band_order().index("r")]]))


def _main_sequence_fluxes(rng, temperature, ebv, conditions):
    """Band fluxes relative to r of stars hotter than M dwarfs, in the field's stellar model."""
    if conditions.star_sed_model == "black_body":
        temperature_grid, ratio_grid = star_colour_grid()
        return interpolate_rows(temperature_grid, ratio_grid, temperature)
    strengths = draw_stellar_absorption_strengths(rng, temperature, conditions.star_ebv_mean)
    strengths[:, 3] = ebv
    return modified_black_body_fluxes(temperature, strengths)


def _stellar_fluxes(rng, temperature, ebv, conditions):
    """Band fluxes relative to r: M dwarfs below 3900 K, the field's model above."""
    flux = np.empty((len(temperature), len(CSST_BANDS)))
    cool = temperature < _M_DWARF_TEMPERATURE
    if cool.any():
        strengths = m_dwarf_strengths(rng, temperature[cool], ebv[cool])
        flux[cool] = modified_black_body_fluxes(
            temperature[cool], strengths, stellar_profiles_with_molecules()
        )
    if (~cool).any():
        flux[~cool] = _main_sequence_fluxes(rng, temperature[~cool], ebv[~cool], conditions)
    return flux


def _companion(rng, temperature):
    """A cooler companion's temperature and its r-band flux relative to the primary's.

    Main-sequence radii grow about as ``T**0.8``, so the flux ratio is
    ``(T2/T1)**1.6`` times the ratio of black-body surface brightness in r.
    """
    companion = np.maximum(
        temperature * rng.uniform(*_COMPANION_TEMPERATURE_RATIO, size=len(temperature)), _MIN_STAR_TEMPERATURE
    )
    r_index = band_order().index("r")
    surface = black_body_band_fluxes(np.concatenate([temperature, companion]))[:, r_index]
    ratio = (companion / temperature) ** 1.6 * surface[len(temperature) :] / surface[: len(temperature)]
    return companion, ratio


def _stars_realistic(group, rngs, options, conditions):
    """Give a star group M-dwarf and white-dwarf spectra and unresolved binaries (in place)."""
    n = len(group["x"])
    mag_r = group["mags"][:, band_order().index("r")]
    temperature = group["temperature"].copy()
    population = np.where(temperature < _M_DWARF_TEMPERATURE, "m_dwarf", "star").astype("U17")
    white_dwarf = rngs["white_dwarfs"].uniform(size=n) < options.white_dwarf_fraction
    low, high = np.log(_WHITE_DWARF_TEMPERATURE)
    white_dwarf_temperature = np.exp(rngs["white_dwarfs"].uniform(low, high, size=n))
    temperature[white_dwarf] = white_dwarf_temperature[white_dwarf]
    population[white_dwarf] = "white_dwarf"

    flux = _stellar_fluxes(rngs["seds"], temperature, group["ebv"], conditions)
    if white_dwarf.any():
        strengths = white_dwarf_strengths(
            rngs["white_dwarfs"], temperature[white_dwarf], group["ebv"][white_dwarf]
        )
        flux[white_dwarf] = modified_black_body_fluxes(
            temperature[white_dwarf], strengths, stellar_profiles_with_molecules()
        )

    binary = (rngs["unresolved"].uniform(size=n) < options.unresolved_binary_fraction) & ~white_dwarf
    companion_temperature, ratio = _companion(rngs["unresolved"], temperature)
    companion_flux = _stellar_fluxes(rngs["unresolved"], companion_temperature, group["ebv"], conditions)
    combined = (flux + ratio[:, None] * companion_flux) / (1 + ratio[:, None])
    flux = np.where(binary[:, None], combined, flux)
    population[binary] = "unresolved_binary"

    group["temperature"] = temperature
    group["mags"] = fluxes_to_mags(flux, mag_r)
    sed_type = np.where(temperature < _M_DWARF_TEMPERATURE, "MD", group["sed_type"])
    group["sed_type"] = np.where(white_dwarf, "WD", sed_type).astype("U3")
    group["population"] = population
    group["companion_temperature"] = np.where(binary, companion_temperature, 0.0)
    return group


def _extra_columns(group, population):
    n = len(group["x"])
    group.setdefault("population", np.full(n, population, dtype="U17"))
    group.setdefault("companion_temperature", np.zeros(n))
    group.setdefault("n_clumps", np.zeros(n, int))
    group.setdefault("clumps", [None] * n)
    group.setdefault("primary", np.full(n, -1))
    group.setdefault("separation", np.full(n, np.nan))
    return group


def _offsets(rng, n, separation_range):
    separation = rng.uniform(*separation_range, size=n)
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    return separation, separation * np.cos(angle) / PIXEL_SCALE, separation * np.sin(angle) / PIXEL_SCALE


def _resolved_companions(stars, rng, options, conditions):
    """Rows for the companions of resolved binaries (the primaries are marked in ``stars``)."""
    n = len(stars["x"])
    chosen = np.flatnonzero(
        (rng.uniform(size=n) < options.resolved_binary_fraction)
        & (stars["population"] != "white_dwarf")
        & (stars["population"] != "unresolved_binary")
    )
    temperature, ratio = _companion(rng, stars["temperature"][chosen])
    separation, dx, dy = _offsets(rng, len(chosen), _RESOLVED_SEPARATION)
    ebv = stars["ebv"][chosen]
    mag_r = stars["mags"][chosen, band_order().index("r")] - 2.5 * np.log10(ratio)
    companions = _star_group(
        {
            "mags": fluxes_to_mags(_stellar_fluxes(rng, temperature, ebv, conditions), mag_r),
            "temperature": temperature,
            "ebv": ebv,
        },
        stars["x"][chosen] + dx,
        stars["y"][chosen] + dy,
        conditions,
    )
    companions["sed_type"] = np.where(
        temperature < _M_DWARF_TEMPERATURE, "MD", companions["sed_type"]
    ).astype("U3")
    companions["population"] = np.where(temperature < _M_DWARF_TEMPERATURE, "m_dwarf", "star").astype("U17")
    companions["separation"] = separation
    companions["primary"] = chosen
    stars["separation"][chosen] = separation
    return _extra_columns(companions, "star")


def _add_clumps(galaxies, rng, options, conditions):
    """Star-forming clumps in some disk galaxies: knots with a young, blue spectrum (in place).

    A clump's spectrum is the Im template at the galaxy's redshift tilted
    bluer by ``f_lambda ~ lambda**-1`` (young clusters of a few Myr have UV
    slopes about one steeper than a whole irregular galaxy), so the clumps take
    a larger share of the galaxy's light in blue bands than in r; the galaxy's
    total magnitudes are unchanged.
    """
    n = len(galaxies["x"])
    eligible = (galaxies["sed_type"] != "E") & (galaxies["half_light_radius"] >= _CLUMPY_MIN_RADIUS)
    clumpy = (rng.uniform(size=n) < options.clumpy_fraction) & eligible
    redshift_grid, ratio_grids = galaxy_colour_grid()
    wavelength = np.array([CSST_BANDS[name].effective_wavelength for name in band_order()])
    tilt = wavelength / CSST_BANDS["r"].effective_wavelength
    for index in np.flatnonzero(clumpy):
        n_clumps = 1 + min(int(rng.poisson(2.0)), 5)
        young = interpolate_rows(redshift_grid, ratio_grids["Im"], galaxies["redshift"][[index]])[0] / tilt
        if conditions.galaxy_ebv > 0:
            young = young * foreground_reddening(conditions.galaxy_ebv)
        whole = _relative_to_r(galaxies["mags"][[index]])[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.nan_to_num(rng.uniform(*_CLUMP_SHARE_R) * young / whole)
        # Clumps follow the exponential disk: radius ~ Gamma(2, scale length).
        radius = rng.gamma(2.0, galaxies["half_light_radius"][index] / 1.678, size=n_clumps)
        angle = rng.uniform(0.0, 2 * np.pi, size=n_clumps)
        galaxies["clumps"][index] = {
            "share": np.clip(share, 0.0, _MAX_CLUMP_SHARE),
            "dx": radius * np.cos(angle),
            "dy": radius * np.sin(angle),
            "sigma": rng.uniform(*_CLUMP_SIGMA, size=n_clumps),
            "weight": rng.dirichlet(np.ones(n_clumps)),
        }
        galaxies["n_clumps"][index] = n_clumps
    return galaxies


def _merger_companions(galaxies, rng, options, conditions, primary_offset):
    n = len(galaxies["x"])
    chosen = np.flatnonzero(rng.uniform(size=n) < options.merger_fraction)
    mag_r = galaxies["mags"][chosen, band_order().index("r")]
    companion_mag_r = np.minimum(mag_r + rng.uniform(0.0, _MERGER_MAGNITUDE_GAP, size=len(chosen)), 27.5)
    separation, dx, dy = _offsets(rng, len(chosen), _MERGER_SEPARATION)
    drawn = draw_galaxies(
        rng,
        len(chosen),
        conditions,
        sersic_fraction=options.sersic_fraction,
        max_sersic_index=_MAX_SERSIC_INDEX,
        mag_r=companion_mag_r,
        redshift=galaxies["redshift"][chosen],
    )
    companions = _galaxy_group(drawn, galaxies["x"][chosen] + dx, galaxies["y"][chosen] + dy, conditions)
    companions["separation"] = separation
    companions["primary"] = chosen + primary_offset
    galaxies["separation"][chosen] = separation
    return _extra_columns(companions, "galaxy")


def _qsos(rng, options, conditions, shape):
    area_arcmin2 = shape[0] * shape[1] * (PIXEL_SCALE / 60.0) ** 2
    n = rng.poisson(options.qso_density * area_arcmin2)
    mag_r = _draw_magnitudes(rng, n, _R_BAND_RANGE_QSOS, slope=0.25)
    redshift = rng.uniform(*_QSO_REDSHIFT, size=n)
    slope = rng.normal(-0.44, 0.3, size=n)  # f_nu ~ nu**slope, Vanden Berk et al. (2001)
    line_scale = np.exp(rng.normal(0.0, 0.3, size=n))
    flux = qso_fluxes(redshift, slope, line_scale)
    if conditions.galaxy_ebv > 0:
        flux = flux * foreground_reddening(conditions.galaxy_ebv)
    x = rng.uniform(-0.5, shape[1] - 0.5, size=n)
    y = rng.uniform(-0.5, shape[0] - 0.5, size=n)
    group = _star_group(
        {
            "mags": fluxes_to_mags(flux, mag_r),
            "temperature": np.zeros(n),
            "ebv": np.full(n, conditions.galaxy_ebv),
        },
        x,
        y,
        conditions,
    )
    group["label"] = np.full(n, "qso", dtype="U6")
    group["redshift"] = redshift
    group["sed_type"] = np.full(n, "QSO", dtype="U3")
    return _extra_columns(group, "qso")


def _bright_stars(rng, options, conditions, shape):
    area_arcmin2 = shape[0] * shape[1] * (PIXEL_SCALE / 60.0) ** 2
    n = rng.poisson(options.bright_star_density * area_arcmin2)
    stars = draw_stars(rng, n, conditions, rng, r_range=_R_BAND_RANGE_BRIGHT_STARS)
    x = rng.uniform(-0.5, shape[1] - 0.5, size=n)
    y = rng.uniform(-0.5, shape[0] - 0.5, size=n)
    group = _star_group(stars, x, y, conditions)
    mag_r = stars["mags"][:, band_order().index("r")]
    group["mags"] = fluxes_to_mags(
        _stellar_fluxes(rng, stars["temperature"], stars["ebv"], conditions), mag_r
    )
    cool = stars["temperature"] < _M_DWARF_TEMPERATURE
    group["sed_type"] = np.where(cool, "MD", group["sed_type"]).astype("U3")
    group["population"] = np.where(cool, "m_dwarf", "star").astype("U17")
    return _extra_columns(group, "star")


def add_populations(groups, stars, options, seed_sequence, conditions, shape, wcs):
    """Add the realistic populations to a field's stars and galaxies and assemble the truth table.

    Parameters
    ----------
    groups : list of dict
        The field's star and galaxy groups (from `draw_catalog`).
    stars : dict
        The stars as `draw_stars` returned them.
    options : `Populations`
        Resolved options.
    seed_sequence : `numpy.random.SeedSequence`
        The field's population stream; each population draws from its own child.
    conditions : `FieldConditions`
        The field's conditions.
    shape : tuple of int
        Field shape ``(ny, nx)``.
    wcs : `~astropy.wcs.WCS`
        The field's WCS.

    Returns
    -------
    truth : `~astropy.table.Table`
        With the columns ``point_like``, ``population``, ``system``,
        ``separation``, ``n_clumps`` and ``companion_temperature`` added.
    render : dict
        What rendering needs beyond the truth (with each galaxy's clumps).
    """
    rngs = {
        name: np.random.default_rng(child)
        for name, child in zip(
            _POPULATION_STREAMS, seed_sequence.spawn(len(_POPULATION_STREAMS)), strict=True
        )
    }
    star_group, galaxy_group = groups
    star_group = _extra_columns(_stars_realistic(star_group, rngs, options, conditions), "star")
    galaxy_group = _extra_columns(galaxy_group, "galaxy")
    galaxy_group = _add_clumps(galaxy_group, rngs["clumps"], options, conditions)
    n_stars = len(star_group["x"])
    parts = [
        star_group,
        galaxy_group,
        _resolved_companions(star_group, rngs["resolved"], options, conditions),
        _merger_companions(galaxy_group, rngs["mergers"], options, conditions, n_stars),
        _qsos(rngs["qsos"], options, conditions, shape),
        _bright_stars(rngs["bright"], options, conditions, shape),
    ]
    truth, render, columns = _assemble(parts, conditions, wcs)
    truth["point_like"] = truth["label"] != "galaxy"
    truth["population"] = columns["population"]
    system = np.array(truth["id"])
    companion = columns["primary"] >= 0
    system[companion] = columns["primary"][companion] + 1
    truth["system"] = system
    truth["separation"] = columns["separation"] * u.arcsec
    truth["n_clumps"] = columns["n_clumps"]
    truth["companion_temperature"] = columns["companion_temperature"] * u.K
    render["clumps"] = [clump for part in parts for clump in part["clumps"]]
    return truth, render
