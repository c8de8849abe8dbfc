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
from ._defects import DefectFlag
from ._galsim import import_galsim, make_gsparams
from ._populations import DEFAULT_GALAXY_DENSITY, DEFAULT_STAR_DENSITY, draw_catalog, make_wcs
from ._psf import (
    aberrated_psf_grid,
    build_band_psf,
    draw_aberration_field,
    solve_jitter,
    uniform_psf_grid,
)
from ._realism import Realism, realism_metadata, resolve_realism
from ._render import band_header, observe, observe_realistic, render_band

_TILE_SPACING = 1.05  # tile centres are 5 percent further apart than the tile size

# Random streams, children of the field seed by index. Spawning more children
# leaves the earlier ones unchanged, so new streams go at the end and the
# nominal field stays bit-identical.
_CATALOG_STREAM = 0
_CONDITIONS_STREAM = 1
_NOISE_STREAM = 2  # one per band, in band order
_STAR_SED_STREAM = 2 + len(CSST_BANDS)
_REALISM_STREAM = _STAR_SED_STREAM + 1  # the realism options drawn with variation=True
_POPULATION_STREAM = _STAR_SED_STREAM + 2
_PSF_STREAM = _STAR_SED_STREAM + 3  # the aberration pattern over the tile
_EXPOSURE_STREAM = _STAR_SED_STREAM + 4  # dithers and gaps, one child per band
_DEFECT_STREAM = _STAR_SED_STREAM + 5  # cosmic rays, warm pixels, sky residual, one child per band
_N_STREAMS = _STAR_SED_STREAM + 6

#: Files written beside each realistic image: ``{band}.{kind}.fits``.
MAP_KINDS = ("weight", "psf", "defects")


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


def _validate_realism(realism):
    if realism is not None and not isinstance(realism, Realism):
        msg = f"realism must be a Realism instance or None; got {realism!r}"
        raise TypeError(msg)
    return realism


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
    realism=None,
    return_maps=False,
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
        module docstring); with ``realism``, also draw every realism option
        left unset.
    realism : `Realism`, optional
        Make the field look like a real co-add (aberrated PSF varying over
        the tile, dithered resampled exposures, defects, more populations);
        `None` (the default) gives the nominal field.
    return_maps : bool, optional
        Also return each band's weight map, PSF grid and defect map (only
        with ``realism``).

    Returns
    -------
    images : dict of str to `~astropy.io.fits.ImageHDU`
        One float32 image per band in electron/s with a celestial TAN WCS.
    truth : `~astropy.table.Table`
        One row per source (see the module docstring for conventions).
    maps : dict of str to dict of str to `~astropy.io.fits.HDUList`
        Only with ``return_maps``: per band, ``'weight'`` (WEIGHT, the
        inverse variance, and NEXP, the exposure count), ``'psf'`` (the PSF
        grid and a NODES table) and ``'defects'`` (`DefectFlag` bits).

    Raises
    ------
    ImportError
        If GalSim is not installed.
    ValueError
        If the shape, a band, a density or a realism option is invalid.
    TypeError
        If ``realism`` is not a `Realism`.

    Examples
    --------
    >>> images, truth = simulate_field(128, seed=1, bands=['r'])  # doctest: +SKIP
    >>> images['r'].header['BUNIT']  # doctest: +SKIP
    'electron/s'
    >>> images, truth, maps = simulate_field(
    ...     256, seed=1, bands=['r'], realism=Realism(), return_maps=True)  # doctest: +SKIP
    >>> maps['r']['weight']['WEIGHT'].header['BUNIT']  # doctest: +SKIP
    '(electron/s)**-2'
    """
    galsim = import_galsim()
    shape = _validate_shape(shape_or_size)
    bands = _validate_bands(bands)
    star_density = _validate_density("star_density", star_density)
    galaxy_density = _validate_density("galaxy_density", galaxy_density)
    realism = _validate_realism(realism)
    if return_maps and realism is None:
        msg = "return_maps=True needs realism: a nominal field has uniform maps and no PSF grid"
        raise ValueError(msg)
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
    if realism is not None:
        parameters["realism"] = realism
    provenance = {
        "call": _format_call("simulate_field", parameters),
        "seed": int(seed),
        "package_version": __version__,
    }
    if realism is not None:
        parameters["realism"] = repr(realism)  # as asked for; the resolved options go in meta["realism"]

    seeds = np.random.SeedSequence(int(seed)).spawn(_N_STREAMS)
    conditions = draw_field_conditions(np.random.default_rng(seeds[_CONDITIONS_STREAM]), variation)
    if realism is not None:
        realism = resolve_realism(realism, seeds[_REALISM_STREAM], variation)
    wcs = make_wcs(shape, float(ra), float(dec))
    truth, render = draw_catalog(
        np.random.default_rng(seeds[_CATALOG_STREAM]),
        np.random.default_rng(seeds[_STAR_SED_STREAM]),
        shape,
        star_density,
        galaxy_density,
        conditions,
        wcs,
        populations=None if realism is None else realism.populations,
        population_seed=seeds[_POPULATION_STREAM],
    )
    gsparams = make_gsparams(galsim)
    optics = None
    if realism is not None and realism.psf is not None:
        field = draw_aberration_field(np.random.default_rng(seeds[_PSF_STREAM]), realism.psf, shape)
        optics = (field, solve_jitter(galsim, realism.psf, field, gsparams))
    exposure_seeds = seeds[_EXPOSURE_STREAM].spawn(len(CSST_BANDS))
    defect_seeds = seeds[_DEFECT_STREAM].spawn(len(CSST_BANDS))
    images, maps, band_summaries = {}, {}, {}
    for band in bands:
        band_index = band_order().index(band)
        sky_rate = CSST_BANDS[band].sky_rate * conditions.sky_scale[band]
        noise_rng = np.random.default_rng(seeds[_NOISE_STREAM + band_index])
        if realism is None:
            band_psf = build_band_psf(galsim, band, conditions, gsparams)
            noiseless = render_band(galsim, shape, band, band_psf, truth, render, gsparams)
            data = observe(noiseless, band, sky_rate, noise_rng)
            header = band_header(band, wcs, conditions, band_psf, sky_rate, provenance)
            images[band] = fits.ImageHDU(data=data, header=header, name=band)
            continue
        kernel = None if realism.coadd is None else realism.coadd.resampling
        if optics is None:
            grid = uniform_psf_grid(galsim, band, shape, conditions, kernel, gsparams)
        else:
            grid = aberrated_psf_grid(galsim, band, shape, realism.psf, *optics, kernel, gsparams)
        noiseless = render_band(galsim, shape, band, grid, truth, render, gsparams)
        rngs = {
            "exposures": np.random.default_rng(exposure_seeds[band_index]),
            "noise": noise_rng,
            "defects": np.random.default_rng(defect_seeds[band_index]),
        }
        data, weight, n_exposures, flags, details = observe_realistic(
            noiseless, band, sky_rate, realism, rngs
        )
        realistic = {"psf": realism.psf, "coadd": realism.coadd, "defects": realism.defects, **details}
        header = band_header(band, wcs, conditions, grid, sky_rate, provenance, realistic)
        images[band] = fits.ImageHDU(data=data, header=header, name=band)
        maps[band] = _band_maps(band, wcs, grid, weight, n_exposures, flags, details)
        band_summaries[band] = _band_summary(grid, details)

    truth.meta["simulate_call"] = provenance["call"]
    truth.meta["package_version"] = provenance["package_version"]
    truth.meta["parameters"] = parameters
    truth.meta["field_conditions"] = asdict(conditions)
    truth.meta["conventions"] = (
        "x, y: 0-based astropy pixel coordinates; mags: true AB (40 = no flux); "
        "half_light_radius: circularised, r band; position_angle: from +x towards +y"
    )
    if realism is not None:
        truth.meta["realism"] = realism_metadata(realism)
        truth.meta["bands"] = band_summaries
        if optics is not None:
            truth.meta["aberration_field"] = {
                "centre": optics[0].centre.tolist(),
                "polynomial": optics[0].polynomial.tolist(),
                "jitter_fwhm": optics[1],
            }
    if return_maps:
        return images, truth, maps
    return images, truth


def _band_summary(grid, details):
    """What the truth-table metadata records of a realistic band."""
    centre = grid.centre
    return {
        "psf_fwhm": float(grid.fwhm[centre]),
        "psf_coadd_fwhm": float(grid.coadd_fwhm[centre]),
        "psf_ellipticity": float(grid.ellipticity[centre]),
        "psf_fwhm_range": [float(np.min(grid.coadd_fwhm)), float(np.max(grid.coadd_fwhm))],
        "n_exposures": details["n_exposures"],
        "kernel": details["kernel"],
        "pixel_variance_factor": details["pixel_variance_factor"],
        "exposures": [
            {**exposure, "gap": None if exposure["gap"] is None else list(exposure["gap"])}
            for exposure in details["exposures"]
        ],
    }


def _band_maps(band, wcs, grid, weight, n_exposures, flags, details):
    """The weight, PSF and defect files of one realistic band, as HDU lists."""
    header = wcs.to_header()
    header["BAND"] = (band, "CSST band")
    weight_header = header.copy()
    weight_header["BUNIT"] = ("(electron/s)**-2", "inverse variance of the image")
    weight_header["WGTTYPE"] = ("inverse variance", "sky, dark and read noise; not the sources")
    weight_header["PIXVARWT"] = (
        round(details["pixel_variance_factor"], 5),
        "pixel variance x weight (resampling)",
    )
    count_header = header.copy()
    count_header["BUNIT"] = ("", "exposures contributing to the pixel")
    weight_maps = fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(weight, header=weight_header, name="WEIGHT"),
            fits.ImageHDU(n_exposures, header=count_header, name="NEXP"),
        ]
    )
    defect_header = header.copy()
    for flag in DefectFlag:
        defect_header[f"MASK_{flag.value}"] = (flag.name, "defect bit")
    defects = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(flags, header=defect_header, name="DEFECTS")])
    return {"weight": weight_maps, "psf": grid.to_hdulist(), "defects": defects}


def write_field(outdir, shape_or_size, *, seed, overwrite=False, **kwargs):
    """Simulate one field and write ``OUTDIR/{band}.fits`` and ``OUTDIR/truth.ecsv``.

    A realistic field (``realism=`` in ``kwargs``) also gets
    ``OUTDIR/{band}.weight.fits``, ``{band}.psf.fits`` and
    ``{band}.defects.fits`` (see `simulate_field`).

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
    >>> truth = write_field('field2', 256, seed=3, realism=Realism())  # doctest: +SKIP
    """
    truth = _write_images(outdir, "", shape_or_size, seed, overwrite, kwargs)
    truth.write(os.path.join(outdir, "truth.ecsv"), overwrite=overwrite)
    return truth


def _write_images(outdir, prefix, shape_or_size, seed, overwrite, kwargs, extra_cards=()):
    """Write ``{prefix}{band}.fits`` (and the maps of a realistic field); return the truth."""
    realistic = kwargs.get("realism") is not None
    result = simulate_field(shape_or_size, seed=seed, return_maps=realistic, **kwargs)
    images, truth = result[:2]
    os.makedirs(outdir, exist_ok=True)
    for band, hdu in images.items():
        for key, value, comment in extra_cards:
            hdu.header[key] = (value, comment)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(
            os.path.join(outdir, f"{prefix}{band}.fits"), overwrite=overwrite
        )
        if realistic:
            for kind in MAP_KINDS:
                result[2][band][kind].writeto(
                    os.path.join(outdir, f"{prefix}{band}.{kind}.fits"), overwrite=overwrite
                )
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


_REALISTIC_TILE_META = ("field_conditions", "realism", "aberration_field", "bands")


def _write_tile(task):
    outdir, tile, size, seed, ra, dec, overwrite, kwargs = task
    cards = [("TILE", tile, "tile index")]
    truth = _write_images(
        outdir, f"tile{tile}_", size, seed, overwrite, {"ra": ra, "dec": dec, **kwargs}, cards
    )
    # What each realistic tile drew is kept; the rest is the same for all tiles or in the headers.
    drawn = {key: truth.meta[key] for key in _REALISTIC_TILE_META if key in truth.meta}
    truth.meta = {}
    truth.add_column(np.full(len(truth), tile), name="tile", index=1)
    return truth, drawn


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
    column. Realistic tiles also get ``.weight.fits``, ``.psf.fits`` and
    ``.defects.fits`` beside each image, and the truth metadata lists what
    each tile drew (``tile_conditions``). Tile seeds are derived from ``seed`` with
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
        results = [_write_tile(task) for task in tasks]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=int(n_jobs), mp_context=context) as executor:
            results = list(executor.map(_write_tile, tasks))
    truth = vstack([table for table, _ in results], metadata_conflicts="silent")
    new_ids = np.arange(1, len(truth) + 1)
    if "system" in truth.colnames:  # ids of systems move with the ids of their members
        truth["system"] += new_ids - np.asarray(truth["id"])
    truth["id"] = new_ids
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
    if kwargs.get("realism") is not None:
        truth.meta["tile_conditions"] = [drawn for _, drawn in results]
    truth.write(os.path.join(outdir, "truth.ecsv"), overwrite=overwrite)
    return truth
