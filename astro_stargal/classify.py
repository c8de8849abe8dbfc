"""The public API: `classify_sources` and the Table mixin."""

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy.table import QTable, Table

from ._columns import OUTPUT_COLUMNS, PROVENANCE_KEYS, output_columns, provenance, validate_threshold
from .exceptions import StarGalaxyWarning
from .flags import SourceFlag
from .instrument import PIXEL_SCALE
from .io import positions_from_table, read_images, resolve_band
from .models import load_model
from .pipeline import CHUNK_SIZE, band_psfs, find_blended, predict_sources, refine_positions

__all__ = [
    "OUTPUT_COLUMNS",
    "StarGalaxyMixin",
    "StarGalaxyQTable",
    "StarGalaxyTable",
    "classify_sources",
]


def classify_sources(
    table,
    images,
    *,
    weights=None,
    device=None,
    batch_size=None,
    progress=None,
    threshold=0.5,
    position_columns=None,
    zeropoints=None,
    header_bands=True,
    overwrite=False,
    chunk_size=CHUNK_SIZE,
    workers=None,
    threads=None,
    psf=None,
    recentre=True,
):
    """Classify the sources of a table as stars or galaxies.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        The sources. Positions come from a `~astropy.coordinates.SkyCoord`
        column, RA/Dec columns (``ra``/``dec``, ``RA``/``DEC``,
        ``ALPHA_J2000``/``DELTA_J2000``, ...; degrees when unitless) or 0-based
        pixel ``x``/``y`` columns when all images share one pixel grid.
    images : dict
        Band name -> image. A band name is the model's band exactly, or the
        one model band equal to it ignoring case and surrounding blanks
        (``'R'`` is ``r``; see `~astro_stargal.io.resolve_band`). An image is
        a FITS path (optionally ``'file.fits[ext]'``; without ``[ext]``, a
        file of several images gives the one whose header names the band), an
        HDU or HDUList, an `~astropy.nddata.NDData`/`~astropy.nddata.CCDData`
        (its mask and uncertainty are used) or an ``(array, WCS)`` pair. Any
        non-empty subset of the model's bands works; missing bands cost
        accuracy and set the ``BAND_MISSING`` flag. Any of these but a bare
        array may be paired with a per-pixel noise map, ``(image, weight)``:
        a weight (inverse variance) map as a FITS path, HDU or array, or a
        `~astro_stargal.io.NoiseMap` of variances or sigmas. A blank image
        (no finite, unmasked pixel of positive weight, or constant) is a
        missing band, with a warning.
    weights : str, `~pathlib.Path` or `~astro_stargal.models.LoadedModel`, optional
        The model: a registered name (default the bundled CSST model), a
        weights directory, or a model already loaded with
        `~astro_stargal.models.load_model`.
    device : str or `torch.device`, optional
        Default: CUDA if available, then Apple MPS, then CPU.
    batch_size : int, optional
        Network batch size (default 8192 on a GPU, 256 on a CPU; halved on a
        GPU out-of-memory error).
    progress : bool, optional
        Progress bar; by default shown when the call is expected to take
        more than a couple of seconds (from the number of sources, the device
        and ``threads``; `~astro_stargal.pipeline.expected_seconds`).
    threshold : float, optional
        ``sg_class`` is ``'star'`` where ``p_star >= threshold``.
    position_columns : str or tuple of 2 str, optional
        Name the position column(s) explicitly.
    zeropoints : dict, optional
        Band -> AB zero point, overriding the FITS headers.
    header_bands : bool, optional
        Read the band that FITS headers name (``FILTER``, ``BAND``,
        ``EXTNAME``) to choose the image of each band in a multi-image file,
        and refuse an image whose header names another band (an extension
        chosen with ``[ext]`` is used, with a warning). False ignores the
        headers' band names, for mislabelled headers.
    overwrite : bool, optional
        Replace existing ``p_star``/``sg_class``/``sg_flags`` columns.
    chunk_size : int, optional
        Sources prepared at a time; bounds memory, does not change results.
    psf : dict, optional
        Band -> the band's PSF, for bands whose PSF you know: a PSFEx ``.psf``
        path, a 2-D array (the effective PSF sampled at the image pixels,
        centred), a GalSim profile or an `~astro_stargal.psf.PSFModel`. Other
        bands' PSFs are measured from the table's isolated, unsaturated point
        sources (`~astro_stargal.psf.measure_psf`); where too few exist, a
        warning says so and the model's reference PSF stands in. Sources where
        the PSF is outside the model's validity range get ``PSF_OUT_OF_RANGE``.
    recentre : bool, optional
        Move each source to the centroid of its light, within 0.2", before
        cutting its stamps (`~astro_stargal.pipeline.refine_positions`); the
        shift is the ``sg_offset`` column. Catalog positions from another
        band, epoch or astrometric solution are routinely off by a fraction
        of a pixel, which makes a star look extended.
    workers : int, optional
        Threads preparing cutouts and features while the network runs
        (default: every core, up to 16, on a GPU; 1 on a CPU); 0 prepares in
        the calling thread. Does not change results.
    threads : int, optional
        PyTorch threads running the network during the call; the caller's
        setting (``torch.set_num_threads``) is restored afterwards. Default on
        a CPU: the cores this process may use that other processes leave
        free, at most ``torch.get_num_threads()`` (which follows
        ``OMP_NUM_THREADS``); see `~astro_stargal.pipeline.default_threads`.

    Returns
    -------
    result : same class as ``table``
        A copy of ``table`` (columns unchanged, same rows in the same order)
        with four new columns: ``p_star`` (float32, calibrated star
        probability, NaN where the source could not be classified),
        ``sg_class`` (``'star'``/``'galaxy'``, masked where ``p_star`` is NaN),
        ``sg_flags`` (`~astro_stargal.flags.SourceFlag` bits) and
        ``sg_offset`` (arcsec from the table position to the centroid the
        stamps were cut at; NaN where none was measured). Its ``meta`` is the
        table's, plus what made the columns (package version, model name and
        SHA-256, the bands and the image of each, threshold, device and date;
        the keys of `~astro_stargal.PROVENANCE_KEYS`).

    Raises
    ------
    TypeError
        If ``table`` is not an astropy Table or an image has an unsupported type.
    ValueError
        For bad positions columns, unknown bands, a file whose headers name
        other bands, unreadable images, tampered weights, or bad option
        values; the message names the input.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from astro_stargal import classify_sources
    >>> table = Table.read("sources.ecsv")  # doctest: +SKIP
    >>> out = classify_sources(table, {"g": "g.fits", "r": "r.fits", "i": "i.fits"})  # doctest: +SKIP
    >>> stars = out[out["sg_class"] == "star"]  # doctest: +SKIP
    """
    _validate_table(table)
    validate_threshold(threshold)
    _validate_chunk_size(chunk_size)
    if not overwrite:
        existing = [name for name in OUTPUT_COLUMNS if name in table.colnames]
        if existing:
            msg = f"the table already has column(s) {existing}; pass overwrite=True to replace them"
            raise ValueError(msg)

    model = load_model(weights, device=device)
    band_images = read_images(images, model.bands, zeropoints=zeropoints, header_bands=header_bands)
    positions = positions_from_table(table, position_columns=position_columns)
    _check_images_fit_positions(band_images, positions)
    _warn_about_pixel_scale(band_images, model.pixel_scale)
    offset = np.full(len(positions), np.nan, dtype=np.float32)
    if band_images and positions.valid.any():
        pixel_scale = model.pixel_scale or PIXEL_SCALE
        before = np.zeros(len(positions), dtype=np.int32)
        if recentre:
            positions, offset, before = refine_positions(
                band_images, positions, model.bands, pixel_scale=pixel_scale
            )
        psfs = band_psfs(
            band_images,
            positions,
            model.bands,
            pixel_scale=pixel_scale,
            given=psf,
            reference_fwhm=model.reference_psf_fwhm,
            validity=model.validity,
        )
        p_star, flags = _predict_with_neighbours(
            model,
            band_images,
            positions,
            batch_size=batch_size,
            progress=progress,
            chunk_size=chunk_size,
            workers=workers,
            threads=threads,
            psf_models=psfs.models,
        )
        flags |= before | psfs.flags
    else:
        # No source to classify, or every image was blank (read_images warned): none is on a usable pixel.
        p_star = np.full(len(positions), np.nan, dtype=np.float32)
        flags = np.where(positions.valid, SourceFlag.OFF_IMAGE, SourceFlag.BAD_POSITION).astype(np.int32)

    result = table.copy()
    for name, column in output_columns(p_star, flags, threshold, model.name, offset).items():
        if name in result.colnames:
            result.replace_column(name, column)
        else:
            result.add_column(column, name=name)
    used_images = {resolve_band(name, model.bands): image for name, image in images.items()}
    used_images = {band: used_images[band] for band in band_images}
    result.meta.update(provenance(model, used_images, threshold))
    return result


def _predict_with_neighbours(model, band_images, positions, **options):
    """`predict_sources`, with the neighbour search (`find_blended`) run beside it.

    Both run in NumPy, SciPy and PyTorch, which release the GIL.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pixel_scale = model.pixel_scale or PIXEL_SCALE
        blended = pool.submit(find_blended, band_images, positions, model.bands, pixel_scale)
        p_star, flags = predict_sources(model, band_images, positions, **options)
        flags[blended.result()] |= SourceFlag.BLENDED
    return p_star, flags


def _validate_table(table):
    if not isinstance(table, Table):
        msg = f"table must be an astropy Table or QTable, got {type(table).__name__}"
        raise TypeError(msg)


def _validate_chunk_size(chunk_size):
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        msg = f"chunk_size must be a positive integer, got {chunk_size!r}"
        raise ValueError(msg)


def _warn_about_pixel_scale(band_images, model_pixel_scale, tolerance=0.1):
    """Warn once when an image's pixel scale differs from the model's by more than ``tolerance``."""
    if not model_pixel_scale:
        return
    mismatched = {}
    for band, image in band_images.items():
        if image.wcs is None:
            continue
        scale = image.pixel_scale
        if abs(scale / model_pixel_scale - 1) > tolerance:
            mismatched[band] = round(scale, 4)
    if mismatched:
        warnings.warn(
            f"pixel scale (arcsec/px) {mismatched} differs from the model's {model_pixel_scale}; "
            "the model is outside its validity range there and p_star may be unreliable",
            StarGalaxyWarning,
            stacklevel=3,
        )


def _check_images_fit_positions(band_images, positions):
    if positions.sky is not None:
        without_wcs = [band for band, image in band_images.items() if image.wcs is None]
        if without_wcs:
            msg = (
                f"the table gives sky positions but the image(s) of band(s) {without_wcs} have no "
                "celestial WCS; give images with a WCS, or pixel x/y columns"
            )
            raise ValueError(msg)
        return
    shapes = {band: image.shape for band, image in band_images.items()}
    if len(set(shapes.values())) > 1:
        msg = f"pixel positions need all images on one pixel grid, but the shapes differ: {shapes}; give ra/dec instead"
        raise ValueError(msg)
    headers = {
        band: image.wcs.to_header_string() for band, image in band_images.items() if image.wcs is not None
    }
    if len(set(headers.values())) > 1:
        msg = f"pixel positions need all images on one pixel grid, but the WCS of bands {sorted(headers)} differ; give ra/dec instead"
        raise ValueError(msg)


class StarGalaxyMixin:
    """Mixin that gives any `~astropy.table.Table` subclass a ``classify_sources`` method.

    Examples
    --------
    >>> from astropy.table import Table
    >>> class SurveyTable(StarGalaxyMixin, Table):
    ...     pass
    >>> table = SurveyTable({"ra": [150.0], "dec": [2.0]})
    >>> table.classify_sources({"r": "r.fits"})  # doctest: +SKIP
    >>> table["p_star"]  # doctest: +SKIP
    """

    def classify_sources(self, images, **kwargs):
        """Add ``p_star``, ``sg_class`` and ``sg_flags`` to this table in place.

        Takes the same arguments as `astro_stargal.classify_sources` (except
        the table) and returns the table itself, its ``meta`` updated with the
        provenance (`~astro_stargal.PROVENANCE_KEYS`).
        """
        result = classify_sources(self, images, **kwargs)
        for name in OUTPUT_COLUMNS:
            if name in self.colnames:
                self.replace_column(name, result[name])
            else:
                self.add_column(result[name], name=name)
        self.meta.update({key: result.meta[key] for key in PROVENANCE_KEYS})
        return self


class StarGalaxyTable(StarGalaxyMixin, Table):
    """An astropy `~astropy.table.Table` with a ``classify_sources`` method.

    Examples
    --------
    >>> table = StarGalaxyTable({"ra": [150.0, 150.001], "dec": [2.0, 2.001]})
    >>> table.classify_sources({"r": "r.fits"}, device="cpu")  # doctest: +SKIP
    >>> table["sg_class"]  # doctest: +SKIP
    """


class StarGalaxyQTable(StarGalaxyMixin, QTable):
    """An astropy `~astropy.table.QTable` with a ``classify_sources`` method.

    Examples
    --------
    >>> import astropy.units as u
    >>> table = StarGalaxyQTable({"ra": [150.0] * u.deg, "dec": [2.0] * u.deg})
    >>> table.classify_sources({"r": "r.fits"}, device="cpu")  # doctest: +SKIP
    >>> table["p_star"]  # doctest: +SKIP
    """
