"""Positions as catalogs give them: each source recentred on its own light, within a bounded radius.

Positions from another catalog (another band's detection, Gaia at another
epoch, another astrometric solution) are routinely off by a fraction of a
CSST pixel, and a stamp cut off-centre looks extended. `refine_positions`
moves each source to the windowed centroid of its light (SExtractor's XWIN:
Gaussian-weighted first moments, iterated) in the band where the source has
the highest S/N, then uses that position in every band. The centroid may move
at most `MAX_SHIFT` arcsec; a source whose centroid cannot be measured (too
faint, a masked core, or a centroid that runs further, towards another
source) keeps its table position and gets ``CENTROID_FAILED``; a source too
faint to centroid (3 x 3 pixel S/N below `MIN_CENTROID_SNR`) keeps it
without a flag (``LOW_SNR`` says it is hard to judge); a shift beyond
`LARGE_SHIFT` arcsec gets ``LARGE_SHIFT`` (worth checking the cross-match).
"""

import numpy as np
from astropy.coordinates import SkyCoord

from ..flags import SourceFlag
from ..io import SourcePositions
from ._inputs import pixel_positions_by_band
from ._neighbours import box_fluxes

__all__ = ["LARGE_SHIFT", "MAX_SHIFT", "MIN_CENTROID_SNR", "refine_positions", "windowed_centroids"]

#: Farthest the centroid may move from the table position, in arcsec (2.7 CSST pixels).
MAX_SHIFT = 0.2

#: Shifts beyond this (arcsec) set the LARGE_SHIFT flag.
LARGE_SHIFT = 0.1

#: Sources whose best 3 x 3 pixel S/N is below this keep their table position.
MIN_CENTROID_SNR = 5.0

#: Gaussian window (sigma, pixels) of the centroid: about the CSST PSF's sigma.
WINDOW_SIGMA = 1.0

#: Iterations of the windowed centroid (it converges to 0.01 px in a handful).
ITERATIONS = 10


def windowed_centroids(data, x, y, *, max_shift, mask=None):
    """Windowed (XWIN-like) centroids of many sources, within ``max_shift`` pixels of the start.

    Parameters
    ----------
    data : 2D `~numpy.ndarray`
        The image (background-subtracted).
    x, y : 1D `~numpy.ndarray`
        0-based starting positions (finite, on the image).
    max_shift : float
        Largest accepted move in pixels.
    mask : 2D bool `~numpy.ndarray`, optional
        True for bad pixels.

    Returns
    -------
    x_centroid, y_centroid : 1D `~numpy.ndarray`
        NaN where the centroid failed (no positive weighted flux, a masked or
        off-image pixel within two window sigmas, or a move beyond ``max_shift``).

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> image = np.exp(-((xx - 20.3) ** 2 + (yy - 19.6) ** 2) / (2 * 0.9**2))
    >>> x_c, y_c = windowed_centroids(image, np.array([19.5]), np.array([20.2]), max_shift=2.0)
    >>> round(float(x_c[0]), 2), round(float(y_c[0]), 2)
    (20.3, 19.6)
    """
    half = int(np.ceil(max_shift)) + int(np.ceil(3 * WINDOW_SIGMA))
    offsets = np.arange(-half, half + 1)
    ny, nx = data.shape
    x_start, y_start = np.rint(x).astype(np.intp), np.rint(y).astype(np.intp)
    rows = y_start[:, None] + offsets
    columns = x_start[:, None] + offsets
    on_image = ((rows >= 0) & (rows < ny))[:, :, None] & ((columns >= 0) & (columns < nx))[:, None, :]
    boxes = np.asarray(
        data[np.clip(rows, 0, ny - 1)[:, :, None], np.clip(columns, 0, nx - 1)[:, None, :]], dtype=np.float64
    )
    usable = on_image & np.isfinite(boxes)
    if mask is not None:
        usable &= ~np.asarray(mask)[
            np.clip(rows, 0, ny - 1)[:, :, None], np.clip(columns, 0, nx - 1)[:, None, :]
        ]
    boxes = np.where(usable, boxes, 0.0)
    grid_x = (columns - x_start[:, None]).astype(np.float64)[:, None, :]
    grid_y = (rows - y_start[:, None]).astype(np.float64)[:, :, None]
    cx, cy = x - x_start, y - y_start
    for _ in range(ITERATIONS):
        dx, dy = grid_x - cx[:, None, None], grid_y - cy[:, None, None]
        weighted = boxes * np.exp(-(dx**2 + dy**2) / (2 * WINDOW_SIGMA**2))
        total = weighted.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            # The factor 2 makes a Gaussian source converge in one step (SExtractor's XWIN does the same).
            cx = cx + 2 * (weighted * dx).sum(axis=(1, 2)) / total
            cy = cy + 2 * (weighted * dy).sum(axis=(1, 2)) / total
        cx = np.clip(np.nan_to_num(cx), -half, half)
        cy = np.clip(np.nan_to_num(cy), -half, half)
    dx, dy = grid_x - cx[:, None, None], grid_y - cy[:, None, None]
    core = (dx**2 + dy**2) <= (2 * WINDOW_SIGMA) ** 2
    failed = (total <= 0) | ~np.isfinite(total) | (core & ~usable).any(axis=(1, 2))
    failed |= np.hypot(x_start + cx - x, y_start + cy - y) > max_shift
    return np.where(failed, np.nan, x_start + cx), np.where(failed, np.nan, y_start + cy)


def refine_positions(band_images, positions, bands, *, pixel_scale, max_shift=MAX_SHIFT):
    """Move each source to its windowed centroid in its highest-S/N band.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`.
    positions : `~astro_stargal.io.SourcePositions`
        The table's positions.
    bands : sequence of str
        The bands to look in (those without an image are skipped).
    pixel_scale : float
        Arcsec per pixel, for pixel positions and the flags' thresholds.
    max_shift : float, optional
        Largest move in arcsec.

    Returns
    -------
    refined : `~astro_stargal.io.SourcePositions`
        Same kind (sky or pixel) as ``positions``; unchanged where the centroid failed.
    shift : 1D float32 `~numpy.ndarray`
        Distance moved in arcsec; NaN where no centroid was measured.
    flags : 1D int32 `~numpy.ndarray`
        ``LARGE_SHIFT`` and ``CENTROID_FAILED`` bits.

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> yy, xx = np.mgrid[:60, :60]
    >>> image = 500 * np.exp(-((xx - 30.2) ** 2 + (yy - 29.9) ** 2) / (2 * 0.9**2))
    >>> images = read_images({"r": (image + np.random.default_rng(1).normal(size=image.shape), None)},
    ...                      ["r"], zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([29.5]), y=np.array([30.4]), valid=np.array([True]))
    >>> refined, shift, flags = refine_positions(images, where, ["r"], pixel_scale=0.074)
    >>> round(float(refined.x[0]), 1), round(float(refined.y[0]), 1), flags.tolist()
    (30.2, 29.9, [0])
    """
    n_sources = len(positions)
    shift = np.full(n_sources, np.nan, dtype=np.float32)
    flags = np.zeros(n_sources, dtype=np.int32)
    pixels = pixel_positions_by_band(band_images, positions, bands)
    if not pixels or n_sources == 0:
        return positions, shift, flags
    flux, noise = box_fluxes(band_images, pixels)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(np.isfinite(flux), flux / noise, -np.inf)
    best = np.argmax(snr, axis=1)
    bright = snr[np.arange(n_sources), best] >= MIN_CENTROID_SNR
    measurable = positions.valid & np.isfinite(flux).any(axis=1)
    new_x, new_y = np.full(n_sources, np.nan), np.full(n_sources, np.nan)
    band_names = list(pixels)
    for column, band in enumerate(band_names):
        rows = np.flatnonzero(measurable & bright & (best == column))
        if len(rows) == 0:
            continue
        x, y = pixels[band]
        image = band_images[band]
        x_c, y_c = windowed_centroids(
            image.data,
            x[rows],
            y[rows],
            max_shift=max_shift / _band_pixel_scale(image, pixel_scale),
            mask=image.mask,
        )
        good = np.isfinite(x_c)
        new_x[rows[good]], new_y[rows[good]] = x_c[good], y_c[good]
        moved = np.hypot(x_c - x[rows], y_c - y[rows]) * _band_pixel_scale(image, pixel_scale)
        shift[rows[good]] = moved[good]
        if positions.sky is not None and good.any():
            moved_rows = rows[good]
            frame = positions.sky.frame.replicate_without_data()
            sky = image.wcs.pixel_to_world(x_c[good], y_c[good]).transform_to(frame)
            new_x[moved_rows], new_y[moved_rows] = sky.spherical.lon.deg, sky.spherical.lat.deg
    refined_rows = np.isfinite(new_x)
    # Faint sources keep their table position unflagged: LOW_SNR already says they are hard to judge.
    flags[measurable & bright & ~refined_rows] |= SourceFlag.CENTROID_FAILED
    flags[refined_rows & (shift > LARGE_SHIFT)] |= SourceFlag.LARGE_SHIFT
    return _with_new_positions(positions, refined_rows, new_x, new_y), shift, flags


def _band_pixel_scale(image, default):
    """Arcsec per pixel of a band's image: from its WCS, else ``default``."""
    return image.pixel_scale or default


def _with_new_positions(positions, rows, first, second):
    """``positions`` with rows ``rows`` moved to ``(first, second)`` (pixels, or RA/Dec in degrees)."""
    if not rows.any():
        return positions
    if positions.sky is None:
        return SourcePositions(
            sky=None,
            x=np.where(rows, first, positions.x),
            y=np.where(rows, second, positions.y),
            valid=positions.valid,
        )
    spherical = positions.sky.spherical
    ra = np.where(rows, first, spherical.lon.deg)
    dec = np.where(rows, second, spherical.lat.deg)
    frame = positions.sky.frame.replicate_without_data()
    return SourcePositions(
        sky=SkyCoord(ra, dec, unit="deg", frame=frame), x=None, y=None, valid=positions.valid
    )
