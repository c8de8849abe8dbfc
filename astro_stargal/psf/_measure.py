"""Measuring a band's PSF from its own image: choose the stars, then build effective PSFs where they are.

The candidates are the sources the user asked to classify (their positions on
this band's grid), so no detection pass is needed. A candidate is a PSF star
when it is

1. bright and clean: aperture S/N of at least `MIN_SNR`, no pixel of its box
   masked, off the image or at a fifth of the saturation level or above;
2. isolated: no other source of the table within `ISOLATION_RADIUS` pixels;
3. on the point-source locus: its weighted second-moment size lies within
   `LOCUS_WIDTH` of the densest run of small sizes among the candidates (the
   stars' sequence, which galaxies only widen; see `_point_source_locus`).

The PSF is then built with photutils' `~photutils.psf.EPSFBuilder` (an
effective PSF oversampled `OVERSAMPLING` times) at the centres of a grid of
cells over the image: one cell per `NODE_SPACING` pixels along each axis (at
most `MAX_NODES_PER_SIDE`), fewer where there are too few stars, each node
from its nearest stars. Real PSFs change slowly across a tile, and this
follows them at the scale the stars allow.
"""

import warnings

import numpy as np
from scipy.spatial import cKDTree

from ._model import PSFModel

__all__ = [
    "ISOLATION_RADIUS",
    "MIN_PSF_STARS",
    "MIN_SNR",
    "NODE_SPACING",
    "PSFMeasurementError",
    "measure_psf",
    "select_psf_stars",
]

#: Fewest stars from which a PSF is built (per node, and in all).
MIN_PSF_STARS = 8

#: Candidates need at least this aperture S/N.
MIN_SNR = 40.0

#: No other source of the table within this many pixels (0.74" at the CSST scale).
ISOLATION_RADIUS = 10.0

#: Pixel boxes cut around each star (a CSST star's light is within 0.5" of it).
BOX_SIZE = 15

#: Samples per image pixel of the measured effective PSF. Three, not four: a 4x grid leaves
#: cells without a sample, and photutils fills them with a scipy Clough-Tocher interpolation
#: whose evaluation on that regular grid takes about a second per iteration (47 of the 51 s of
#: preparing a 7-band training tile on the 2-core CPU). The 3x grid leaves fewer empty (that
#: tile: 8.4 s to 0.45 s in r), though a band with few stars can still take seconds; the FWHM
#: moves by under 2% (0.1337" at 4x, 0.1358" at 3x on that tile).
OVERSAMPLING = 3

#: Pixels between PSF nodes along each axis (the PSF of a CSST-like tile varies over thousands).
NODE_SPACING = 1024

#: Most nodes along each axis.
MAX_NODES_PER_SIDE = 4

#: Candidates within this fractional size of the point-source locus are taken as stars.
LOCUS_WIDTH = 0.08

#: Most stars used per node (more buys little and costs time).
MAX_STARS_PER_NODE = 60

#: Gaussian weight (sigma, pixels) of the size measurement.
_SIZE_WEIGHT_SIGMA = 1.5


class PSFMeasurementError(ValueError):
    """The image has too few usable stars to measure its PSF.

    Examples
    --------
    >>> issubclass(PSFMeasurementError, ValueError)
    True
    """


def select_psf_stars(data, x, y, *, noise, saturation=np.inf, mask=None):
    """Pick the isolated, unsaturated, bright point sources among candidate positions.

    Parameters
    ----------
    data : 2D `~numpy.ndarray`
        The image (background-subtracted).
    x, y : 1D `~numpy.ndarray`
        0-based pixel positions of every source of the table (NaN allowed).
    noise : float
        Sky noise per pixel.
    saturation : float, optional
        Saturation level of the image.
    mask : 2D bool `~numpy.ndarray`, optional
        True for bad pixels.

    Returns
    -------
    stars : 1D int `~numpy.ndarray`
        Indices into ``x``/``y`` of the PSF stars.
    locus : float
        Weighted second-moment size (pixels) of the point-source locus (NaN if none).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:200, :200]
    >>> x, y = (np.mgrid[20:200:30, 20:200:30] + rng.uniform(-0.5, 0.5, (2, 6, 6))).reshape(2, -1)
    >>> image = rng.normal(0, 1, (200, 200))
    >>> for xs, ys in zip(x, y):  # 36 Gaussian stars, sigma 0.9 px
    ...     image += 3000 * np.exp(-((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * 0.9**2)) / (2 * np.pi * 0.81)
    >>> stars, locus = select_psf_stars(image, x, y, noise=1.0)
    >>> len(stars), round(locus, 2)  # the weighted size of a sigma = 0.9 px Gaussian
    (36, 0.77)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    half = BOX_SIZE // 2
    ny, nx = data.shape
    inside = finite & (x >= half) & (x < nx - half - 1) & (y >= half) & (y < ny - half - 1)
    candidates = np.flatnonzero(inside)
    if len(candidates) == 0:
        return candidates, float("nan")
    isolated = _isolated(x[finite], y[finite], np.flatnonzero(finite), candidates)
    candidates = candidates[isolated]
    boxes = _cut_boxes(data, mask, x[candidates], y[candidates])
    clean = np.isfinite(boxes).all(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        clean &= np.nanmax(boxes, axis=(1, 2)) < 0.2 * saturation
    candidates, boxes = candidates[clean], boxes[clean]
    if len(candidates) == 0:
        return candidates, float("nan")
    boxes = boxes - _border_median(boxes)[:, None, None]
    size, snr = _sizes_and_snr(boxes, noise)
    bright = (snr >= MIN_SNR) & np.isfinite(size)
    candidates, size = candidates[bright], size[bright]
    if len(candidates) == 0:
        return candidates, float("nan")
    locus = _point_source_locus(size)
    on_locus = np.abs(size / locus - 1) <= LOCUS_WIDTH
    return candidates[on_locus], locus


def measure_psf(data, x, y, *, noise, saturation=np.inf, mask=None, min_stars=MIN_PSF_STARS):
    """Measure the effective PSF of an image from the point sources among the given positions.

    Parameters
    ----------
    data : 2D `~numpy.ndarray`
        The image (background-subtracted).
    x, y : 1D `~numpy.ndarray`
        0-based pixel positions of the table's sources (NaN allowed).
    noise : float
        Sky noise per pixel.
    saturation : float, optional
        Saturation level.
    mask : 2D bool `~numpy.ndarray`, optional
        True for bad pixels.
    min_stars : int, optional
        Fewest PSF stars accepted, in all and per node.

    Returns
    -------
    psf : `PSFModel`
        With ``origin='measured'`` and the number of stars behind each node.

    Raises
    ------
    PSFMeasurementError
        If fewer than ``min_stars`` stars qualify.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:200, :200]
    >>> x, y = (np.mgrid[20:200:30, 20:200:30] + rng.uniform(-0.5, 0.5, (2, 6, 6))).reshape(2, -1)
    >>> image = rng.normal(0, 1, (200, 200))
    >>> for xs, ys in zip(x, y):  # 36 Gaussian stars, sigma 0.9 px
    ...     image += 3000 * np.exp(-((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * 0.9**2)) / (2 * np.pi * 0.81)
    >>> psf = measure_psf(image, x, y, noise=1.0)
    >>> len(psf), abs(float(psf.fwhm[0]) / (2.355 * 0.9) - 1) < 0.05
    (1, True)
    """
    from photutils.psf import EPSFBuilder, EPSFStar, EPSFStars

    stars, _ = select_psf_stars(data, x, y, noise=noise, saturation=saturation, mask=mask)
    if len(stars) < min_stars:
        msg = f"only {len(stars)} isolated, unsaturated point sources with S/N >= {MIN_SNR:g} (need {min_stars})"
        raise PSFMeasurementError(msg)
    nodes = _nodes(data.shape, len(stars), min_stars)
    per_node = min(MAX_STARS_PER_NODE, max(min_stars, 2 * len(stars) // len(nodes)))
    _, nearest = cKDTree(np.column_stack([x[stars], y[stars]])).query(
        nodes, k=[*range(1, min(per_node, len(stars)) + 1)]
    )
    # Each star as a small box, so the whole image is never copied (the image is sky-subtracted).
    boxes = _cut_boxes(data, mask, x[stars], y[stars])
    half = BOX_SIZE // 2
    corner_x, corner_y = np.rint(x[stars]).astype(int) - half, np.rint(y[stars]).astype(int) - half
    # Each star gets a 1-based label: photutils names a star it excludes from the fit by
    # ``id_label - 1``, and an unlabelled star turned that warning into a TypeError.
    cutouts = [
        EPSFStar(box, cutout_center=(xs - x0, ys - y0), origin=(x0, y0), id_label=label)
        for label, (box, xs, ys, x0, y0) in enumerate(
            zip(boxes, x[stars], y[stars], corner_x, corner_y, strict=True), start=1
        )
    ]
    # The quadratic smoothing kernel: the default quartic one leaves these undersampled PSFs 2-5% too sharp.
    builder = EPSFBuilder(
        oversampling=OVERSAMPLING, smoothing_kernel="quadratic", maxiters=5, progress_bar=False
    )
    images = []
    for chosen in nearest:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # photutils warns about stars it gives up on
            epsf = builder(EPSFStars([cutouts[k] for k in chosen])).epsf
        images.append(np.clip(epsf.data, 0, None))
    counts = [len(chosen) for chosen in nearest]
    return PSFModel(np.array(images), nodes, oversampling=OVERSAMPLING, origin="measured", n_stars=counts)


def _nodes(shape, n_stars, min_stars):
    """Cell centres of the finest grid (up to `MAX_NODES_PER_SIDE` a side) the stars can support."""
    ny, nx = shape
    per_side = int(np.clip(round(max(ny, nx) / NODE_SPACING), 1, MAX_NODES_PER_SIDE))
    while per_side > 1 and n_stars < min_stars * per_side**2:
        per_side -= 1
    columns = (np.arange(per_side) + 0.5) * nx / per_side - 0.5
    rows = (np.arange(per_side) + 0.5) * ny / per_side - 0.5
    grid_x, grid_y = np.meshgrid(columns, rows)
    return np.column_stack([grid_x.ravel(), grid_y.ravel()])


def _isolated(x_all, y_all, rows_all, candidates):
    """True for candidates with no other source within `ISOLATION_RADIUS` (duplicates count)."""
    tree = cKDTree(np.column_stack([x_all, y_all]))
    order = np.searchsorted(rows_all, candidates)
    counts = tree.query_ball_point(
        np.column_stack([x_all[order], y_all[order]]), ISOLATION_RADIUS, return_length=True
    )
    return counts == 1


def _cut_boxes(data, mask, x, y):
    """``BOX_SIZE`` square boxes around the nearest pixels (NaN where masked); positions are inside."""
    half = BOX_SIZE // 2
    offsets = np.arange(-half, half + 1)
    rows = np.rint(y).astype(np.intp)[:, None] + offsets
    columns = np.rint(x).astype(np.intp)[:, None] + offsets
    boxes = np.asarray(data[rows[:, :, None], columns[:, None, :]], dtype=np.float64)
    if mask is not None:
        boxes[np.asarray(mask)[rows[:, :, None], columns[:, None, :]]] = np.nan
    return boxes


def _border_median(boxes):
    border = np.concatenate([boxes[:, 0], boxes[:, -1], boxes[:, 1:-1, 0], boxes[:, 1:-1, -1]], axis=1)
    return np.median(border, axis=1)


def _sizes_and_snr(boxes, noise):
    """Gaussian-weighted second-moment size (pixels) about the weighted centroid, and a 5x5 S/N."""
    n, side, _ = boxes.shape
    coords = np.arange(side) - (side - 1) / 2
    x_centre = np.zeros(n)
    y_centre = np.zeros(n)
    for _ in range(5):
        dx = coords[None, None, :] - x_centre[:, None, None]
        dy = coords[None, :, None] - y_centre[:, None, None]
        weighted = boxes * np.exp(-(dx**2 + dy**2) / (2 * _SIZE_WEIGHT_SIGMA**2))
        total = weighted.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            x_centre = np.clip(x_centre + (weighted * dx).sum(axis=(1, 2)) / total, -1.5, 1.5)
            y_centre = np.clip(y_centre + (weighted * dy).sum(axis=(1, 2)) / total, -1.5, 1.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        second = (weighted * (dx**2 + dy**2)).sum(axis=(1, 2)) / total
        size = np.where(total > 0, np.sqrt(np.clip(second, 0, None) / 2), np.nan)
    middle = (side - 1) // 2
    flux = boxes[:, middle - 2 : middle + 3, middle - 2 : middle + 3].sum(axis=(1, 2))
    return size, flux / (5 * noise)


def _point_source_locus(size):
    """The size of the densest run of small sizes: the point-source sequence.

    Stars share one size whatever their brightness; galaxies spread above it.
    Among the candidates no larger than the median, the one with the most
    neighbours within `LOCUS_WIDTH` (in log size) marks the locus; the median
    of those neighbours is its size.
    """
    log_size = np.log(size)
    small = log_size[log_size <= np.median(log_size)]
    if len(small) == 0:
        small = log_size
    neighbours = np.abs(small[:, None] - log_size[None, :]) <= LOCUS_WIDTH / 2
    densest = np.argmax(neighbours.sum(axis=1))
    return float(np.exp(np.median(log_size[neighbours[densest]])))
