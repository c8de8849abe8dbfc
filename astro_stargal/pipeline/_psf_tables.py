"""Features measured against the local PSF: how unlike the PSF at its own place a source is.

"Point-like" means "like this image's PSF here", not like any one simulator's
PSF. For each source and band, with ``psf`` the band's effective PSF at the
source's node (`~astro_stargal.psf.PSFModel`), sampled on the photometry box at
the source's own sub-pixel position:

``spread_model``
    SExtractor's SPREAD_MODEL (Desai et al. 2012): ``(G.x)/(P.x) - (G.P)/(P.P)``
    with ``x`` the source's pixels, ``P`` the PSF and ``G`` the PSF convolved
    with a circular exponential of scale length FWHM/16; about 0 for a point
    source, positive for an extended one.
``psf_minus_aper``
    Asinh magnitude of the PSF-fit flux ``(P.x)/(P.P)`` minus that of the
    middle-aperture flux corrected to total with the PSF's own aperture
    fraction; 0 for a point source, positive (fainter) for an extended one.
``size_excess``
    ``(size**2 - psf_size**2) / psf_size**2``: the Gaussian-weighted moment
    size (the ``size`` feature) against the same moment of the PSF.
``concentration_excess``
    The ``concentration_outer`` feature minus the PSF's own.
``psf_fwhm``, ``psf_ellipticity``
    The local PSF's FWHM (image pixels) and ellipticity, so that the network
    knows what it is comparing with.

Everything about the PSF is tabulated once per band and call (`PSFTables`) on
the sub-pixel grid of the aperture masks, so a source costs gathers and dot
products, no interpolation. The features themselves are measured by
`~astro_stargal.pipeline.measure_features` (and its PyTorch twin), beside the
others, when it is given these tables.
"""

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from scipy import signal as scipy_signal

from ._features import MOMENT_WEIGHT_SIGMA, PHOTOMETRY_BOX, SUBPIXEL_STEPS, aperture_masks

__all__ = ["PSFTables"]

#: Scale length of SPREAD_MODEL's exponential, as a fraction of the PSF FWHM (Desai et al. 2012).
SPREAD_SCALE = 1 / 16


@dataclass(frozen=True)
class PSFTables:
    """A band's PSF tabulated for the features: per node and sub-pixel phase of the photometry box.

    Attributes
    ----------
    boxes, smeared : 5D float32 array
        ``(n_nodes, steps + 1, steps + 1, box, box)``: the PSF ``P`` and the
        PSF convolved with SPREAD_MODEL's exponential ``G``, centred as
        `~astro_stargal.pipeline.aperture_masks` centres the apertures.
    size : 3D float32 array
        Gaussian-weighted moment size of ``P`` at each phase (as the ``size`` feature).
    concentration : 3D float32 array
        ``-2.5 log10(middle / outer aperture flux)`` of ``P``.
    middle_fraction : 3D float32 array
        Fraction of the PSF's light in the middle aperture.
    fwhm, ellipticity : 1D float32 array
        Per node.

    Examples
    --------
    >>> from astro_stargal.psf import PSFModel
    >>> yy, xx = np.mgrid[:41, :41] - 20.0
    >>> psf = PSFModel(np.exp(-(xx**2 + yy**2) / (2 * 3.4**2)), [[0.0, 0.0]], oversampling=4, origin="array")
    >>> tables = PSFTables.from_psf(psf, 32)
    >>> tables.boxes.shape, round(float(tables.middle_fraction[0, 0, 0]), 2)
    ((1, 17, 17, 16, 16), 1.0)
    """

    boxes: np.ndarray
    smeared: np.ndarray
    size: np.ndarray
    concentration: np.ndarray
    middle_fraction: np.ndarray
    fwhm: np.ndarray
    ellipticity: np.ndarray

    @classmethod
    def from_psf(cls, psf, stamp_size):
        """Tabulate ``psf`` (a `~astro_stargal.psf.PSFModel`) for stamps of ``stamp_size`` pixels.

        Parameters
        ----------
        psf : `~astro_stargal.psf.PSFModel`
        stamp_size : int

        Returns
        -------
        tables : `PSFTables`
        """
        from ..psf import PSFModel

        box_origin = (stamp_size - PHOTOMETRY_BOX) // 2
        lowest_centre = stamp_size / 2 - 1 - box_origin
        boxes = psf.pixel_boxes(PHOTOMETRY_BOX, lowest_centre, SUBPIXEL_STEPS)
        smeared_psf = PSFModel(
            np.array(
                [
                    _smear(image, fwhm * psf.oversampling)
                    for image, fwhm in zip(psf.images, psf.fwhm, strict=True)
                ]
            ),
            psf.nodes,
            oversampling=psf.oversampling,
            origin=psf.origin,
        )
        smeared = smeared_psf.pixel_boxes(PHOTOMETRY_BOX, lowest_centre, SUBPIXEL_STEPS)
        masks = aperture_masks(stamp_size)  # (aperture, j, i, box, box)
        fluxes = np.einsum("kjiyx,njiyx->nkji", masks, boxes)
        phases = lowest_centre + np.arange(SUBPIXEL_STEPS + 1) / SUBPIXEL_STEPS
        size = _moment_size(boxes, phases)
        with np.errstate(divide="ignore", invalid="ignore"):
            concentration = -2.5 * np.log10(fluxes[:, 1] / fluxes[:, 2])
        return cls(
            boxes=boxes,
            smeared=smeared,
            size=size.astype(np.float32),
            concentration=np.nan_to_num(concentration).astype(np.float32),
            middle_fraction=fluxes[:, 1].astype(np.float32),
            fwhm=psf.fwhm.astype(np.float32),
            ellipticity=np.nan_to_num(psf.ellipticity).astype(np.float32),
        )

    @classmethod
    def stack(cls, tables):
        """One table holding the nodes of several (the bands'), and each one's first node.

        Parameters
        ----------
        tables : list of `PSFTables`

        Returns
        -------
        stacked : `PSFTables`
        offsets : list of int
            Index in ``stacked`` of each input's node 0.
        """
        offsets = np.cumsum([0] + [len(table.fwhm) for table in tables[:-1]]).tolist()
        stacked = cls(
            *(np.concatenate([getattr(table, item.name) for table in tables]) for item in fields(cls))
        )
        return stacked, offsets

    def to(self, device):
        """The tables as tensors on ``device``."""
        return type(self)(*(_as_tensor(getattr(self, item.name), device) for item in fields(self)))

    def numpy(self):
        """The tables as NumPy arrays (shared with CPU tensors, copied from a GPU)."""
        return type(self)(*(_as_array(getattr(self, item.name)) for item in fields(self)))


def _as_tensor(value, device):
    if torch.is_tensor(value):
        return value.to(device)
    return torch.from_numpy(np.array(value)).to(device)  # a copy: the cached tables are read-only


def _as_array(value):
    return value.cpu().numpy() if torch.is_tensor(value) else value


def _smear(image, fwhm_samples):
    """``image`` convolved with a unit circular exponential of scale length ``SPREAD_SCALE * fwhm``."""
    scale = max(SPREAD_SCALE * fwhm_samples, 1e-3)
    half = math.ceil(8 * scale)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    kernel = np.exp(-np.hypot(xx, yy) / scale)
    return scipy_signal.fftconvolve(image, kernel / kernel.sum(), mode="same")


def _moment_size(boxes, phases):
    """Gaussian-weighted second-moment size of each tabulated PSF about its centre (as the ``size`` feature)."""
    coords = np.arange(boxes.shape[-1], dtype=np.float64)
    dx = coords[None, :] - phases[:, None]  # (phase i, x)
    weight_x = np.exp(-(dx**2) / (2 * MOMENT_WEIGHT_SIGMA**2))
    # Separable weight: w(j, i, y, x) = wy(j, y) * wx(i, x).
    total = np.einsum("njiyx,jy,ix->nji", boxes, weight_x, weight_x)
    second = np.einsum("njiyx,jy,ix->nji", boxes, weight_x * dx**2, weight_x) + np.einsum(
        "njiyx,jy,ix->nji", boxes, weight_x, weight_x * dx**2
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.clip(second / total, 0, None) / 2)
