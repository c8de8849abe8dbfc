"""Size and shape of a PSF image: FWHM of its radial profile and ellipticity from adaptive moments.

Both work on oversampled effective-PSF images and return image-pixel units,
so a measured PSF, a PSFEx model and a GalSim profile are described alike.
The FWHM is that of the azimuthally averaged profile, read at half the peak on
a grid of `FINE_SAMPLING` samples per pixel (the image is resampled with a
cubic spline when it is coarser), so it does not depend on how finely the PSF
was given. The ellipticity is the distortion ``(a**2 - b**2) / (a**2 + b**2)``
of the adaptive second moments (the fixed point of an elliptical Gaussian
weight matched to the profile, as GalSim's HSM moments are).
"""

import numpy as np
from scipy import ndimage

__all__ = ["FINE_SAMPLING", "psf_ellipticity", "psf_fwhm"]

#: Samples per image pixel on which the FWHM is read.
FINE_SAMPLING = 8

#: Width of the radial bins of the profile, in image pixels.
_PROFILE_BIN = 0.05


def psf_fwhm(image, oversampling):
    """FWHM of a PSF image, in image pixels.

    Parameters
    ----------
    image : 2D `~numpy.ndarray`
        The PSF, centred near the middle of the array.
    oversampling : float
        Samples per image pixel.

    Returns
    -------
    fwhm : float
        NaN if the profile never falls below half its peak inside the image.

    Examples
    --------
    >>> yy, xx = np.mgrid[:65, :65] - 32.0
    >>> sigma = 1.0 * 8  # one image pixel at 8 samples per pixel
    >>> round(psf_fwhm(np.exp(-(xx**2 + yy**2) / (2 * sigma**2)), 8), 2)  # 2.3548 sigma
    2.36
    """
    fine, sampling = _fine(np.asarray(image, dtype=np.float64), float(oversampling))
    y0, x0 = _peak_centroid(fine)
    yy, xx = np.indices(fine.shape)
    radius = np.hypot(xx - x0, yy - y0).ravel() / sampling
    values = fine.ravel()
    bins = (radius / _PROFILE_BIN).astype(int)
    counts = np.bincount(bins)
    with np.errstate(invalid="ignore"):
        profile = np.bincount(bins, weights=values) / counts
        centres = np.bincount(bins, weights=radius) / counts  # mean radius of each bin's samples
    filled = counts > 0
    profile, centres = profile[filled], centres[filled]
    half = profile[0] / 2 if profile[0] >= profile.max() * 0.9 else profile.max() / 2
    below = np.flatnonzero(profile < half)
    if len(below) == 0 or below[0] == 0:
        return float("nan")
    k = below[0]
    fraction = (profile[k - 1] - half) / (profile[k - 1] - profile[k])
    return float(2 * (centres[k - 1] + fraction * (centres[k] - centres[k - 1])))


def psf_ellipticity(image, oversampling, *, iterations=30):
    """Ellipticity ``(a**2 - b**2) / (a**2 + b**2)`` of a PSF image from its adaptive second moments.

    Parameters
    ----------
    image : 2D `~numpy.ndarray`
        The PSF.
    oversampling : float
        Samples per image pixel (the ellipticity does not depend on it).
    iterations : int, optional
        Iterations of the matched elliptical Gaussian weight.

    Returns
    -------
    ellipticity : float
        0 for a round PSF; NaN if the moments do not converge.

    Examples
    --------
    >>> yy, xx = np.mgrid[:65, :65] - 32.0
    >>> elongated = np.exp(-(xx**2 / (2 * 6.0**2) + yy**2 / (2 * 4.0**2)))
    >>> round(psf_ellipticity(elongated, 4), 3)  # (36 - 16) / (36 + 16)
    0.385
    """
    image = np.asarray(image, dtype=np.float64)
    y0, x0 = _peak_centroid(image)
    yy, xx = np.indices(image.shape)
    dx, dy = xx - x0, yy - y0
    size = 2.0 * oversampling
    covariance = np.array([[size**2, 0.0], [0.0, size**2]])
    for _ in range(iterations):
        try:
            inverse = np.linalg.inv(covariance)
        except np.linalg.LinAlgError:
            return float("nan")
        weight = np.exp(-0.5 * (inverse[0, 0] * dx**2 + 2 * inverse[0, 1] * dx * dy + inverse[1, 1] * dy**2))
        weighted = image * weight
        total = weighted.sum()
        if not total > 0:
            return float("nan")
        # Follow the weighted centroid, so that an asymmetric (comatic) PSF is measured about its centre.
        dx = dx - (weighted * dx).sum() / total
        dy = dy - (weighted * dy).sum() / total
        moments = np.array(
            [
                [(weighted * dx**2).sum(), (weighted * dx * dy).sum()],
                [(weighted * dx * dy).sum(), (weighted * dy**2).sum()],
            ]
        )
        # For a Gaussian profile the weighted moments of the matched weight are half its covariance.
        covariance = 2 * moments / total
    xx_moment, yy_moment, xy_moment = covariance[0, 0], covariance[1, 1], covariance[0, 1]
    trace = xx_moment + yy_moment
    if not trace > 0:
        return float("nan")
    return float(np.hypot(xx_moment - yy_moment, 2 * xy_moment) / trace)


def _fine(image, oversampling):
    """The image resampled (cubic spline) to at least `FINE_SAMPLING` samples per pixel."""
    if oversampling >= FINE_SAMPLING:
        return image, oversampling
    zoom = FINE_SAMPLING / oversampling
    return ndimage.zoom(image, zoom, order=3, mode="grid-constant", grid_mode=True), oversampling * zoom


def _peak_centroid(image, half_width=3):
    """Centroid of the pixels around the peak, ``(y, x)``: robust to faint wings and noise far out."""
    peak_y, peak_x = np.unravel_index(np.argmax(image), image.shape)
    rows = slice(max(peak_y - half_width, 0), peak_y + half_width + 1)
    columns = slice(max(peak_x - half_width, 0), peak_x + half_width + 1)
    core = np.clip(image[rows, columns], 0, None)
    total = core.sum()
    if not total > 0:
        return float(peak_y), float(peak_x)
    yy, xx = np.indices(core.shape)
    return float((core * yy).sum() / total + rows.start), float((core * xx).sum() / total + columns.start)
