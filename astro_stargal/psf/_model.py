"""The PSF of one band as the classifier uses it: effective PSFs on a grid of positions over the image."""

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ._stats import psf_ellipticity, psf_fwhm

__all__ = ["PSFModel"]

#: Sub-pixel phases per pixel on which PSF boxes are tabulated (as the aperture masks are).
PHASE_STEPS = 16


@dataclass(frozen=True, eq=False)
class PSFModel:
    """Effective (pixel-convolved) PSFs of one band at a grid of positions on its image.

    Each node holds an oversampled image of the effective PSF: the value of a
    pixel whose centre lies ``(dx, dy)`` image pixels from the source is the
    image sampled ``(dx, dy) * oversampling`` samples from its centre. A source
    takes the PSF of the nearest node: nodes sit at the centres of cells of
    the image, so the PSF is piecewise constant over the cells.

    Parameters
    ----------
    images : 3D `~numpy.ndarray`
        ``(n_nodes, m, m)`` oversampled effective PSFs, centred on pixel
        ``((m - 1) / 2, (m - 1) / 2)``; normalised here so that sampling one at
        the pixel centres sums to one.
    nodes : 2D `~numpy.ndarray`
        ``(n_nodes, 2)`` 0-based image pixel ``(x, y)`` of each node.
    oversampling : float
        PSF samples per image pixel.
    origin : str
        Where the PSF comes from: ``'measured'`` (from the image's stars),
        ``'psfex'``, ``'array'``, ``'galsim'`` or ``'reference'`` (the model's
        fallback when the image has too few stars).
    n_stars : 1D `~numpy.ndarray`, optional
        Stars behind each node's PSF (0 when the PSF was given, not measured).

    Attributes
    ----------
    fwhm : 1D `~numpy.ndarray`
        FWHM of each node's PSF in image pixels (`psf_fwhm`).
    ellipticity : 1D `~numpy.ndarray`
        Ellipticity of each node's PSF (`psf_ellipticity`).

    Examples
    --------
    >>> yy, xx = np.mgrid[:33, :33] - 16.0
    >>> gaussian = np.exp(-(xx**2 + yy**2) / (2 * (4 * 0.8) ** 2))  # sigma 0.8 px, 4x oversampled
    >>> psf = PSFModel(gaussian[None], np.array([[50.0, 50.0]]), oversampling=4, origin="array")
    >>> abs(float(psf.fwhm[0]) / (2.3548 * 0.8) - 1) < 0.01
    True
    >>> psf.node_of(np.array([10.0, 90.0]), np.array([10.0, 90.0]))
    array([0, 0])
    """

    images: np.ndarray
    nodes: np.ndarray
    oversampling: float
    origin: str
    n_stars: np.ndarray = None
    fwhm: np.ndarray = field(init=False)
    ellipticity: np.ndarray = field(init=False)

    def __post_init__(self):
        images = np.asarray(self.images, dtype=np.float64)
        if images.ndim == 2:
            images = images[None]
        nodes = np.atleast_2d(np.asarray(self.nodes, dtype=np.float64))
        if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] < 5:
            msg = f"PSF images must be square, at least 5 samples wide, shape (n, m, m); got {images.shape}"
            raise ValueError(msg)
        if nodes.shape != (len(images), 2):
            msg = f"PSF nodes must be ({len(images)}, 2) pixel positions, one per image; got shape {nodes.shape}"
            raise ValueError(msg)
        if not (np.isfinite(self.oversampling) and self.oversampling > 0):
            msg = f"PSF oversampling must be a positive number, got {self.oversampling!r}"
            raise ValueError(msg)
        if not np.isfinite(images).all():
            msg = "PSF images hold NaN or infinite values"
            raise ValueError(msg)
        totals = images.sum(axis=(1, 2))
        if not (totals > 0).all():
            msg = "every PSF image must have a positive total"
            raise ValueError(msg)
        # Sampling at pixel centres picks one value per oversampling**2 samples.
        images = images / totals[:, None, None] * self.oversampling**2
        images.flags.writeable = False
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "nodes", nodes)
        n_stars = np.zeros(len(images), int) if self.n_stars is None else np.asarray(self.n_stars, int)
        object.__setattr__(self, "n_stars", n_stars)
        object.__setattr__(self, "fwhm", np.array([psf_fwhm(image, self.oversampling) for image in images]))
        object.__setattr__(
            self, "ellipticity", np.array([psf_ellipticity(image, self.oversampling) for image in images])
        )

    def __len__(self):
        return len(self.images)

    def node_of(self, x, y):
        """Index of the node nearest each position (NaN positions get node 0).

        Parameters
        ----------
        x, y : 1D `~numpy.ndarray`
            0-based image pixel positions.

        Returns
        -------
        nodes : 1D int `~numpy.ndarray`
        """
        x = np.nan_to_num(np.asarray(x, dtype=np.float64))
        y = np.nan_to_num(np.asarray(y, dtype=np.float64))
        distance = (x[:, None] - self.nodes[None, :, 0]) ** 2 + (y[:, None] - self.nodes[None, :, 1]) ** 2
        return np.argmin(distance, axis=1)

    def pixel_boxes(self, box_size, lowest_centre, steps=PHASE_STEPS):
        """Each node's PSF sampled on a ``box_size`` pixel box, at every sub-pixel phase.

        Parameters
        ----------
        box_size : int
            Side of the box in image pixels.
        lowest_centre : float
            Box coordinate of the PSF centre at phase 0 (phases run to one pixel beyond).
        steps : int, optional
            Phases per pixel.

        Returns
        -------
        boxes : 5D float32 `~numpy.ndarray`
            ``boxes[node, j, i]`` is the ``(box_size, box_size)`` PSF centred at
            ``(lowest_centre + i / steps, lowest_centre + j / steps)`` in box pixels.

        Examples
        --------
        >>> yy, xx = np.mgrid[:33, :33] - 16.0
        >>> psf = PSFModel(np.exp(-(xx**2 + yy**2) / 20.0), [[0.0, 0.0]], oversampling=4, origin="array")
        >>> boxes = psf.pixel_boxes(16, 7.0, steps=4)
        >>> boxes.shape, round(float(boxes[0, 0, 0].sum()), 3)
        ((1, 5, 5, 16, 16), 1.0)
        """
        return _pixel_boxes(self, int(box_size), float(lowest_centre), int(steps))


@functools.lru_cache(maxsize=32)
def _pixel_boxes(psf, box_size, lowest_centre, steps):
    phases = np.arange(steps + 1) / steps
    pixels = np.arange(box_size, dtype=np.float64)
    centre = (psf.images.shape[1] - 1) / 2
    boxes = np.empty((len(psf), steps + 1, steps + 1, box_size, box_size), dtype=np.float32)
    for node, image in enumerate(psf.images):
        coefficients = ndimage.spline_filter(image, order=3)
        for j, dy in enumerate(phases):
            rows = centre + (pixels - lowest_centre - dy) * psf.oversampling
            for i, dx in enumerate(phases):
                columns = centre + (pixels - lowest_centre - dx) * psf.oversampling
                grid = np.meshgrid(rows, columns, indexing="ij")
                boxes[node, j, i] = ndimage.map_coordinates(
                    coefficients, grid, order=3, mode="constant", cval=0.0, prefilter=False
                )
    boxes.flags.writeable = False
    return boxes
