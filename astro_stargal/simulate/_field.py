"""Simulating fields and tiles: one field in several bands, or many tiles written to disk."""

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

import numpy as np
from astropy.io import fits
from astropy.table import vstack

from .._version import __version__
from ..instrument import (
    CSST_BANDS,
    PIXEL_SCALE,
    band_order,
)
from ._conditions import draw_field_conditions
from ._galsim import import_galsim, make_gsparams
from ._populations import DEFAULT_GALAXY_DENSITY, DEFAULT_STAR_DENSITY, draw_catalog, make_wcs
from ._psf import build_band_psf
from ._render import band_header, observe, render_band

_TILE_SPACING = 1.05  # tile centres are 5 percent further apart than the tile size


def _band(name):
    try:
        return CSST_BANDS[name]
    except KeyError:
        msg = f"unknown band {name!r}; expected one of {band_order()}"
        raise ValueError(msg) from None


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
    galsim = import_galsim()
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
        "package_version": __version__,
    }

    # Streams: catalog, conditions, noise per band, then stellar SEDs (last, so
    # that adding it left the earlier streams and so the nominal fields unchanged).
    seeds = np.random.SeedSequence(int(seed)).spawn(3 + len(CSST_BANDS))
    conditions = draw_field_conditions(np.random.default_rng(seeds[1]), variation)
    wcs = make_wcs(shape, float(ra), float(dec))
    truth, render = draw_catalog(
        np.random.default_rng(seeds[0]),
        np.random.default_rng(seeds[-1]),
        shape,
        star_density,
        galaxy_density,
        conditions,
        wcs,
    )
    gsparams = make_gsparams(galsim)
    images = {}
    for band in bands:
        band_psf = build_band_psf(galsim, band, conditions, gsparams)
        noiseless = render_band(galsim, shape, band, band_psf, truth, render, gsparams)
        sky_rate = CSST_BANDS[band].sky_rate * conditions.sky_scale[band]
        noise_rng = np.random.default_rng(seeds[2 + band_order().index(band)])
        data = observe(noiseless, band, sky_rate, noise_rng)
        header = band_header(band, wcs, conditions, band_psf, sky_rate, provenance)
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
    import_galsim()
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
    truth.meta["package_version"] = __version__
    truth.meta["tile_seeds"] = tile_seeds
    truth.meta["tile_centres"] = [list(centre) for centre in centres]
    truth.write(os.path.join(outdir, "truth.ecsv"), overwrite=overwrite)
    return truth
