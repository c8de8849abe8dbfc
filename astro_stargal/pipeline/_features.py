"""Catalog features measured on the stamps: forced aperture photometry, size and shape.

The same routine feeds inference, training and evaluation, so the three
cannot drift apart. Per band and source it measures:

``mag_aper``
    AB asinh magnitude (Lupton et al. 1999) in a circular aperture of radius
    `APERTURE_RADII` [1] pixels; defined for zero and negative fluxes.
``snr_asinh``
    ``asinh(S/N)`` of that aperture flux (S/N against the sky noise, or
    against the per-pixel noise summed over the aperture where a noise map
    is given, as `photutils.aperture.aperture_photometry` sums ``error``).
``concentration_inner``, ``concentration_outer``
    Asinh-magnitude differences between the small and the large aperture,
    and the middle and the large aperture: point sources are most concentrated.
``size``
    Gaussian-weighted second-moment radius ``sqrt((Ixx + Iyy) / 2)`` in pixels.
``ellipticity``
    ``|Ixx - Iyy, 2 Ixy| / (Ixx + Iyy)`` from the same moments.

Given the band's PSF (`~astro_stargal.pipeline.PSFTables`, the PSF sampled on
the photometry box at every sub-pixel phase), it also measures the source
against the PSF at its own place and phase (`PSF_FEATURE_NAMES`):

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
    ``(size**2 - psf_size**2) / psf_size**2``: the ``size`` moment against the
    same moment of the PSF.
``concentration_excess``
    ``concentration_outer`` minus the PSF's own.
``psf_fwhm``, ``psf_ellipticity``
    The local PSF's FWHM (image pixels) and ellipticity, so that the network
    knows what it is comparing with.

Aperture sums use photutils' exact circular masks. Masks are computed once per
stamp size on a grid of 1/16-pixel sub-pixel offsets and then gathered for
every source, so no per-source Python work is done; the offset is rounded by at
most 1/32 pixel, which moves an aperture flux by far less than its noise. The
local background is the median of the stamp pixels beyond `BACKGROUND_RADIUS`.

`measure_features` (NumPy) is the reference and runs on the CPU;
`measure_features_torch` is the same measurement in PyTorch, for stamps that
are already on a GPU next to the network. The tests hold the two equal to
float32 rounding.
"""

import functools
import math

import numpy as np
import torch
from photutils.aperture import CircularAperture

__all__ = [
    "APERTURE_RADII",
    "FEATURE_NAMES",
    "PSF_FEATURE_NAMES",
    "aperture_masks",
    "asinh_magnitude",
    "measure_features",
    "measure_features_torch",
]

#: Aperture radii in pixels (0.11", 0.22" and 0.44" at the CSST pixel scale).
APERTURE_RADII = (1.5, 3.0, 6.0)

#: Pixels further than this from the stamp centre measure the local background.
BACKGROUND_RADIUS = 11.0

#: Gaussian weight (sigma, pixels) of the second moments.
MOMENT_WEIGHT_SIGMA = 2.0

#: Side of the central box, in pixels, that holds every aperture.
PHOTOMETRY_BOX = 16

#: Number of sub-pixel offsets per pixel on which aperture masks are cached.
SUBPIXEL_STEPS = 16

#: Names of the per-band features measured on the source alone, in the order `measure_features` gives them.
FEATURE_NAMES = (
    "mag_aper",
    "snr_asinh",
    "concentration_inner",
    "concentration_outer",
    "size",
    "ellipticity",
)

#: Names of the features measured against the local PSF (`~astro_stargal.pipeline.PSFTables`),
#: which follow `FEATURE_NAMES` when `measure_features` is given the PSF.
PSF_FEATURE_NAMES = (
    "spread_model",
    "psf_minus_aper",
    "size_excess",
    "concentration_excess",
    "psf_fwhm",
    "psf_ellipticity",
)

_ASINH_MAG_SCALE = 2.5 / np.log(10.0)


@functools.lru_cache(maxsize=8)
def aperture_masks(stamp_size):
    """Exact photutils aperture masks on the central photometry box of a stamp.

    Parameters
    ----------
    stamp_size : int
        Side of the stamp in pixels.

    Returns
    -------
    masks : 5D float32 `~numpy.ndarray`
        ``masks[k, j, i]`` is the ``PHOTOMETRY_BOX``-square mask of aperture
        ``k`` centred ``(i / SUBPIXEL_STEPS, j / SUBPIXEL_STEPS)`` pixels beyond
        the lowest possible centre ``stamp_size / 2 - 1``.

    Examples
    --------
    >>> aperture_masks(32).shape
    (3, 17, 17, 16, 16)
    """
    box_origin = (stamp_size - PHOTOMETRY_BOX) // 2
    steps = np.arange(SUBPIXEL_STEPS + 1) / SUBPIXEL_STEPS
    lowest_centre = stamp_size / 2 - 1 - box_origin
    masks = np.zeros(
        (len(APERTURE_RADII), len(steps), len(steps), PHOTOMETRY_BOX, PHOTOMETRY_BOX),
        dtype=np.float32,
    )
    for k, radius in enumerate(APERTURE_RADII):
        for j, dy in enumerate(steps):
            for i, dx in enumerate(steps):
                aperture = CircularAperture((lowest_centre + dx, lowest_centre + dy), r=radius)
                masks[k, j, i] = aperture.to_mask(method="exact").to_image((PHOTOMETRY_BOX, PHOTOMETRY_BOX))
    return masks


def measure_features(stamps, x_in_stamp, y_in_stamp, *, noise, zeropoint, psf_tables=None, psf_node=None):
    """Measure the catalog features of many sources in one band.

    Parameters
    ----------
    stamps : 3D `~numpy.ndarray`
        ``(n_sources, n, n)`` stamps with NaN where a pixel is unusable.
    x_in_stamp, y_in_stamp : 1D `~numpy.ndarray`
        Source positions in stamp pixel coordinates (see `~astro_stargal.pipeline.extract_stamps`).
    noise : float or 3D `~numpy.ndarray`
        Per-pixel sky standard deviation in image units: one value, or
        ``(n_sources, n, n)`` noise stamps (NaN where unknown, which adds nothing).
    zeropoint : float
        AB zero point of the image.
    psf_tables : `~astro_stargal.pipeline.PSFTables`, optional
        The band's PSF; with it the `PSF_FEATURE_NAMES` follow the others.
    psf_node : 1D int `~numpy.ndarray`, optional
        Each source's node in ``psf_tables``.

    Returns
    -------
    features : 2D float32 `~numpy.ndarray`
        ``(n_sources, len(FEATURE_NAMES))``, plus ``len(PSF_FEATURE_NAMES)``
        columns with a PSF; non-finite values are replaced by 0.
    background : 1D float32 `~numpy.ndarray`
        Local background per source (0 where no background pixel is valid).
    snr : 1D float64 `~numpy.ndarray`
        Signal-to-noise of the middle aperture flux.

    Examples
    --------
    >>> stamps = np.zeros((1, 32, 32), dtype=np.float32)
    >>> stamps[0, 15:17, 15:17] = 100.0
    >>> features, background, snr = measure_features(
    ...     stamps, np.array([15.5]), np.array([15.5]), noise=1.0, zeropoint=25.0)
    >>> round(float(snr[0]), 1)
    75.2
    """
    stamp_size = stamps.shape[-1]
    background = _local_background(stamps)
    box_origin = (stamp_size - PHOTOMETRY_BOX) // 2
    box = stamps[:, box_origin : box_origin + PHOTOMETRY_BOX, box_origin : box_origin + PHOTOMETRY_BOX]
    signal = np.nan_to_num(box - background[:, None, None], nan=0.0, posinf=0.0, neginf=0.0)

    lowest_centre = stamp_size / 2 - 1
    i = np.clip(np.rint((x_in_stamp - lowest_centre) * SUBPIXEL_STEPS), 0, SUBPIXEL_STEPS).astype(np.intp)
    j = np.clip(np.rint((y_in_stamp - lowest_centre) * SUBPIXEL_STEPS), 0, SUBPIXEL_STEPS).astype(np.intp)
    masks = aperture_masks(stamp_size)
    fluxes = np.stack([np.einsum("nij,nij->n", masks[k][j, i], signal) for k in range(len(APERTURE_RADII))])
    if np.ndim(noise) == 0:
        flux_errors = noise * np.sqrt(np.pi * np.square(APERTURE_RADII))[:, None]
    else:
        noise_box = noise[
            :, box_origin : box_origin + PHOTOMETRY_BOX, box_origin : box_origin + PHOTOMETRY_BOX
        ]
        variance = np.nan_to_num(np.square(noise_box), nan=0.0, posinf=0.0)
        flux_errors = np.sqrt(
            np.stack([np.einsum("nij,nij->n", masks[k][j, i], variance) for k in range(len(APERTURE_RADII))])
        )
    with np.errstate(divide="ignore", invalid="ignore"):  # an aperture with no known noise: features 0
        asinh_mags = asinh_magnitude(fluxes, flux_errors, zeropoint)
        snr = fluxes[1] / flux_errors[1]

    size, ellipticity = _weighted_moments(signal, x_in_stamp - box_origin, y_in_stamp - box_origin)
    columns = [
        asinh_mags[1],
        np.arcsinh(snr),
        asinh_mags[0] - asinh_mags[2],
        asinh_mags[1] - asinh_mags[2],
        size,
        ellipticity,
    ]
    if psf_tables is not None:
        columns += _against_psf(
            signal, i, j, psf_node, psf_tables, fluxes[1], flux_errors[1], size, columns[3]
        )
    features = np.nan_to_num(np.stack(columns, axis=1), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return features, background.astype(np.float32), snr


def _against_psf(signal, i, j, node, tables, middle_flux, middle_error, size, concentration_outer):
    """The `PSF_FEATURE_NAMES` columns (NumPy, float64), from the source's box and the tabulated PSF."""
    psf = tables.boxes[node, j, i].astype(np.float64)
    smeared = tables.smeared[node, j, i].astype(np.float64)
    psf_dot_signal = np.einsum("nyx,nyx->n", psf, signal)
    psf_dot_psf = np.einsum("nyx,nyx->n", psf, psf)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread_model = (
            np.einsum("nyx,nyx->n", smeared, signal) / psf_dot_signal
            - np.einsum("nyx,nyx->n", smeared, psf) / psf_dot_psf
        )
        psf_flux = psf_dot_signal / psf_dot_psf
        aperture_total = middle_flux / tables.middle_fraction[node, j, i]
        psf_minus_aper = asinh_magnitude(psf_flux, middle_error, 0.0) - asinh_magnitude(
            aperture_total, middle_error, 0.0
        )
        psf_size = np.square(tables.size[node, j, i].astype(np.float64))
        size_excess = (np.square(size) - psf_size) / psf_size
    return [
        np.clip(spread_model, -1, 1),
        psf_minus_aper,
        size_excess,
        concentration_outer - tables.concentration[node, j, i],
        tables.fwhm[node].astype(np.float64),
        tables.ellipticity[node].astype(np.float64),
    ]


def _local_background(stamps):
    stamp_size = stamps.shape[-1]
    centre = (stamp_size - 1) / 2
    yy, xx = np.mgrid[:stamp_size, :stamp_size]
    outer = np.hypot(xx - centre, yy - centre) >= BACKGROUND_RADIUS
    ring = stamps[:, outer]
    has_valid = np.isfinite(ring).any(axis=1)
    background = np.zeros(len(stamps), dtype=np.float64)
    if has_valid.any():
        background[has_valid] = _nanmedian_rows(ring[has_valid])
    return background


def _nanmedian_rows(values):
    """``np.nanmedian(values, axis=1)``, bit for bit, with one sort instead of a Python loop over rows.

    NumPy sorts NaN last, so the ``k`` non-NaN values of a row are its first
    ``k`` sorted entries; the median averages the two middle ones as
    `numpy.median` does. Rows must hold at least one non-NaN value.
    """
    ordered = np.sort(values, axis=1)
    count = np.count_nonzero(~np.isnan(values), axis=1)
    rows = np.arange(len(values))
    return (ordered[rows, (count - 1) // 2] + ordered[rows, count // 2]) / 2


def asinh_magnitude(flux, flux_error, zeropoint):
    """Lupton asinh magnitude with softening equal to the flux error (also used by the PSF features)."""
    return zeropoint - 2.5 * np.log10(flux_error) - _ASINH_MAG_SCALE * np.arcsinh(flux / (2.0 * flux_error))


def _weighted_moments(signal, x_centre, y_centre):
    """Gaussian-weighted second moments: size and ellipticity.

    The circular Gaussian weight is separable, ``w(x, y) = w(x) w(y)``, so
    each moment is a product of 1D sums: the stamp is first contracted along
    x with ``w``, ``w dx`` and ``w dx^2`` (one matrix product), then along y.
    That is the same sum as weighting every pixel, reordered (equal to
    rounding), without any 3D array of weights.
    """
    size = signal.shape[-1]
    coords = np.arange(size, dtype=np.float64)
    dx = coords[None, :] - x_centre[:, None]
    dy = coords[None, :] - y_centre[:, None]
    two_sigma_squared = 2 * MOMENT_WEIGHT_SIGMA**2
    weight_x, weight_y = np.exp(-(dx**2) / two_sigma_squared), np.exp(-(dy**2) / two_sigma_squared)
    along_x = np.stack([weight_x, weight_x * dx, weight_x * dx**2], axis=-1)  # (n, x, 3)
    rows = np.matmul(signal, along_x)  # (n, y, 3): sum over x of signal * (w, w dx, w dx^2)
    total = np.einsum("ny,ny->n", rows[..., 0], weight_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xx = np.einsum("ny,ny->n", rows[..., 2], weight_y) / total
        yy = np.einsum("ny,ny->n", rows[..., 0], weight_y * dy**2) / total
        xy = np.einsum("ny,ny->n", rows[..., 1], weight_y * dy) / total
        trace = xx + yy
        good = (total > 0) & (xx > 0) & (yy > 0)
        radius = np.where(good, np.sqrt(np.abs(trace) / 2), np.nan)
        ellipticity = np.where(good, np.hypot(xx - yy, 2 * xy) / trace, np.nan)
    return np.clip(radius, 0, MOMENT_WEIGHT_SIGMA * 2), np.clip(ellipticity, 0, 1)


@functools.lru_cache(maxsize=8)
def _aperture_masks_on(stamp_size, device):
    return torch.from_numpy(aperture_masks(stamp_size)).to(device)


@functools.lru_cache(maxsize=8)
def _aperture_noise_factors(device):
    """``sqrt(pi) * radius`` of each aperture: its sky-noise sum over the per-pixel noise.

    Cached per device: creating it from Python on every batch would copy from
    pageable memory, which waits for the GPU to finish all queued work.
    """
    return torch.tensor([math.sqrt(math.pi) * radius for radius in APERTURE_RADII], device=device)


@functools.lru_cache(maxsize=8)
def _background_ring(stamp_size, device):
    """Flat indices of the stamp pixels beyond `BACKGROUND_RADIUS` from the centre."""
    centre = (stamp_size - 1) / 2
    yy, xx = np.mgrid[:stamp_size, :stamp_size]
    outer = np.hypot(xx - centre, yy - centre) >= BACKGROUND_RADIUS
    return torch.from_numpy(np.flatnonzero(outer)).to(device)


def measure_features_torch(
    stamps, x_in_stamp, y_in_stamp, *, noise, zeropoint, psf_tables=None, psf_node=None
):
    """`measure_features` in PyTorch, on the device of the stamps (float32 throughout).

    The GPU kernel of the same measurement: the test suite checks that both
    agree to float32 rounding. On a CPU the NumPy version is several times faster.

    Parameters
    ----------
    stamps : 3D `torch.Tensor` or `~numpy.ndarray`
        ``(n, s, s)`` stamps with NaN where a pixel is unusable; measured on
        the tensor's device.
    x_in_stamp, y_in_stamp : 1D `torch.Tensor` or `~numpy.ndarray`
        Source positions in stamp pixel coordinates (see `~astro_stargal.pipeline.extract_stamps`).
    noise : float, 1D or 3D `torch.Tensor`
        Per-pixel sky standard deviation in image units: one value, one per
        stamp, or ``(n, s, s)`` noise stamps (NaN where unknown, which adds nothing).
    zeropoint : float or 1D `torch.Tensor`
        AB zero point of the image (one value, or one per stamp).
    psf_tables : `~astro_stargal.pipeline.PSFTables`, optional
        As tensors on the stamps' device (`~astro_stargal.pipeline.PSFTables.to`).
    psf_node : 1D int64 `torch.Tensor`, optional
        Each stamp's node in ``psf_tables``.

    Returns
    -------
    features : 2D float32 `torch.Tensor`
        ``(n, len(FEATURE_NAMES))``, plus the `PSF_FEATURE_NAMES` columns with
        a PSF; non-finite values are replaced by 0.
    background : 1D float32 `torch.Tensor`
        Local background per stamp (0 where no background pixel is valid).
    snr : 1D float32 `torch.Tensor`
        Signal-to-noise of the middle aperture flux.

    Examples
    --------
    >>> stamps = np.zeros((1, 32, 32), dtype=np.float32)
    >>> stamps[0, 15:17, 15:17] = 100.0
    >>> features, background, snr = measure_features_torch(
    ...     stamps, np.array([15.5]), np.array([15.5]), noise=1.0, zeropoint=25.0)
    >>> round(float(snr[0]), 1)
    75.2
    """
    stamps = torch.as_tensor(stamps, dtype=torch.float32)
    device = stamps.device
    x_in_stamp = torch.as_tensor(x_in_stamp, dtype=torch.float32, device=device)
    y_in_stamp = torch.as_tensor(y_in_stamp, dtype=torch.float32, device=device)
    noise = torch.as_tensor(noise, dtype=torch.float32, device=device)
    zeropoint = torch.as_tensor(zeropoint, dtype=torch.float32, device=device)
    stamp_size = stamps.shape[-1]

    background = _local_background_torch(stamps)
    box_origin = (stamp_size - PHOTOMETRY_BOX) // 2
    box = stamps[:, box_origin : box_origin + PHOTOMETRY_BOX, box_origin : box_origin + PHOTOMETRY_BOX]
    signal = torch.nan_to_num(box - background[:, None, None], nan=0.0, posinf=0.0, neginf=0.0)

    lowest_centre = stamp_size / 2 - 1
    i = torch.round((x_in_stamp - lowest_centre) * SUBPIXEL_STEPS).clamp(0, SUBPIXEL_STEPS).long()
    j = torch.round((y_in_stamp - lowest_centre) * SUBPIXEL_STEPS).clamp(0, SUBPIXEL_STEPS).long()
    masks = _aperture_masks_on(stamp_size, device)[:, j, i]  # (aperture, n, box, box)
    fluxes = (masks * signal).sum(dim=(-2, -1))
    if noise.dim() < 3:
        flux_errors = noise * _aperture_noise_factors(device)[:, None]
    else:
        noise_box = noise[
            :, box_origin : box_origin + PHOTOMETRY_BOX, box_origin : box_origin + PHOTOMETRY_BOX
        ]
        variance = torch.nan_to_num(noise_box.square(), nan=0.0, posinf=0.0)
        flux_errors = (masks * variance).sum(dim=(-2, -1)).sqrt()
    asinh_mags = _asinh_magnitude_torch(fluxes, flux_errors, zeropoint)
    snr = fluxes[1] / flux_errors[1]

    size, ellipticity = _weighted_moments_torch(signal, x_in_stamp - box_origin, y_in_stamp - box_origin)
    columns = [
        asinh_mags[1],
        torch.asinh(snr),
        asinh_mags[0] - asinh_mags[2],
        asinh_mags[1] - asinh_mags[2],
        size,
        ellipticity,
    ]
    if psf_tables is not None:
        columns += _against_psf_torch(
            signal, i, j, psf_node.long(), psf_tables, fluxes[1], flux_errors[1], size, columns[3]
        )
    features = torch.nan_to_num(torch.stack(columns, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
    return features, background, snr


def _against_psf_torch(signal, i, j, node, tables, middle_flux, middle_error, size, concentration_outer):
    """`_against_psf` in PyTorch (float32)."""
    psf = tables.boxes[node, j, i]
    smeared = tables.smeared[node, j, i]
    psf_dot_signal = (psf * signal).sum(dim=(-2, -1))
    psf_dot_psf = (psf * psf).sum(dim=(-2, -1))
    spread_model = (smeared * signal).sum(dim=(-2, -1)) / psf_dot_signal - (smeared * psf).sum(
        dim=(-2, -1)
    ) / psf_dot_psf
    psf_flux = psf_dot_signal / psf_dot_psf
    aperture_total = middle_flux / tables.middle_fraction[node, j, i]
    psf_minus_aper = _asinh_magnitude_torch(psf_flux, middle_error, 0.0) - _asinh_magnitude_torch(
        aperture_total, middle_error, 0.0
    )
    psf_size = tables.size[node, j, i].square()
    return [
        spread_model.clamp(-1, 1),
        psf_minus_aper,
        (size.square() - psf_size) / psf_size,
        concentration_outer - tables.concentration[node, j, i],
        tables.fwhm[node],
        tables.ellipticity[node],
    ]


def _local_background_torch(stamps):
    """NaN-ignoring median of the ring pixels of each stamp (0 where none is valid).

    Sorting puts NaN last (as NumPy does), so the ``k`` valid values of a row
    are its first ``k`` sorted entries; the median averages the two middle
    ones, as `numpy.nanmedian` does.
    """
    ring = stamps.flatten(1)[:, _background_ring(stamps.shape[-1], stamps.device)]
    ordered = torch.sort(ring, dim=1).values
    count = (~torch.isnan(ring)).sum(dim=1, keepdim=True)
    low = torch.gather(ordered, 1, ((count - 1) // 2).clamp(min=0))
    high = torch.gather(ordered, 1, count // 2)
    median = torch.where(count > 0, (low + high) / 2, torch.zeros_like(low)).squeeze(1)
    return torch.nan_to_num(median, nan=0.0, posinf=0.0, neginf=0.0)


def _asinh_magnitude_torch(flux, flux_error, zeropoint):
    """Lupton asinh magnitude with softening equal to the flux error."""
    return (
        zeropoint - 2.5 * torch.log10(flux_error) - _ASINH_MAG_SCALE * torch.asinh(flux / (2.0 * flux_error))
    )


def _weighted_moments_torch(signal, x_centre, y_centre):
    size = signal.shape[-1]
    coords = torch.arange(size, dtype=torch.float32, device=signal.device)
    dx = coords[None, None, :] - x_centre[:, None, None]
    dy = coords[None, :, None] - y_centre[:, None, None]
    weighted = signal * torch.exp(-(dx**2 + dy**2) / (2 * MOMENT_WEIGHT_SIGMA**2))
    total = weighted.sum(dim=(1, 2))
    xx = (weighted * dx**2).sum(dim=(1, 2)) / total
    yy = (weighted * dy**2).sum(dim=(1, 2)) / total
    xy = (weighted * dx * dy).sum(dim=(1, 2)) / total
    trace = xx + yy
    good = (total > 0) & (xx > 0) & (yy > 0)
    nan = torch.full_like(trace, float("nan"))
    radius = torch.where(good, torch.sqrt(trace.abs() / 2), nan)
    ellipticity = torch.where(good, torch.hypot(xx - yy, 2 * xy) / trace, nan)
    return radius.clamp(0, MOMENT_WEIGHT_SIGMA * 2), ellipticity.clamp(0, 1)
