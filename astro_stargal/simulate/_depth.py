"""Measuring what a simulated image delivers: 5-sigma depth, star FWHM and bright-star photometry."""

import math
import warnings

import numpy as np
from astropy import units as u
from astropy.stats import mad_std
from astropy.table import Table
from scipy import ndimage

from ..instrument import (
    CSST_BANDS,
    PIXEL_SCALE,
)

#: Radius in pixels of the circular aperture that defines the 5-sigma depth.
DEPTH_APERTURE_RADIUS = 2.5


def measure_depth(data, header, *, seed=0, n_apertures=2000):
    """Measure the 5-sigma point-source depth of a simulated image.

    Circular apertures of radius ``APRAD`` pixels are placed at random
    positions that avoid sources (detected at 3 sigma on the smoothed image and grown by the
    aperture radius plus two pixels) and saturated pixels. Five times the
    robust (MAD) standard deviation of the aperture sums is divided by the
    point-source flux fraction ``APFRAC`` of the aperture and converted to a
    total AB magnitude with ``MAGZERO``.

    Parameters
    ----------
    data : 2D `~numpy.ndarray`
        Background-subtracted image in the units of ``MAGZERO``.
    header : `~astropy.io.fits.Header`
        Header with ``MAGZERO``, ``APRAD`` and ``APFRAC`` (``SATURATE`` is
        used when present), as written by `simulate_field`.
    seed : int, optional
        Seed for the aperture positions.
    n_apertures : int, optional
        Number of random positions tried (apertures touching sources are
        discarded).

    Returns
    -------
    depth : float
        5-sigma point-source depth (AB mag).

    Raises
    ------
    ValueError
        If a header keyword is missing or fewer than 50 clean apertures fit.

    Examples
    --------
    >>> images, _ = simulate_field(512, seed=2, bands=['g'])  # doctest: +SKIP
    >>> measure_depth(images['g'].data, images['g'].header)  # doctest: +SKIP
    26.4...
    """
    from photutils.aperture import CircularAperture
    from photutils.segmentation import detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    missing = [key for key in ("MAGZERO", "APRAD", "APFRAC") if key not in header]
    if missing:
        msg = f"header lacks the keywords {missing} needed to measure the depth"
        raise ValueError(msg)
    data = np.asarray(data, dtype=float)
    radius = float(header["APRAD"])
    smoothed = ndimage.gaussian_filter(data, 1.0)
    smoothed_noise = mad_std(smoothed, ignore_nan=True)
    # 3 sigma and 10 pixels: few noise peaks get masked, which would bias sigma low.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segments = detect_sources(smoothed, 3.0 * smoothed_noise, n_pixels=10)
    mask = np.zeros(data.shape, bool) if segments is None else segments.data > 0
    if "SATURATE" in header:
        mask |= data >= float(header["SATURATE"])
    mask |= ~np.isfinite(data)
    grow = math.ceil(radius) + 2
    yy, xx = np.mgrid[-grow : grow + 1, -grow : grow + 1]
    mask = ndimage.binary_dilation(mask, structure=xx**2 + yy**2 <= grow**2)

    rng = np.random.default_rng(seed)
    margin = grow
    if min(data.shape) <= 2 * margin + 1:
        msg = f"image of shape {data.shape} is too small for depth apertures"
        raise ValueError(msg)
    x = rng.integers(margin, data.shape[1] - margin, size=n_apertures)
    y = rng.integers(margin, data.shape[0] - margin, size=n_apertures)
    clean = ~mask[y, x]
    if clean.sum() < 50:
        msg = f"only {clean.sum()} source-free apertures fit (need 50); use a larger image"
        raise ValueError(msg)
    positions = np.column_stack([x[clean], y[clean]]).astype(float)
    sums, _ = CircularAperture(positions, radius).do_photometry(data, method="exact")
    five_sigma = 5 * mad_std(sums)
    return float(header["MAGZERO"]) - 2.5 * math.log10(five_sigma / float(header["APFRAC"]))


def _isolated_bright_stars(truth, band, separation_arcsec=1.0):
    """Indices of unsaturated stars with S/N above ~80 and no neighbour within 1 arcsec."""
    props = CSST_BANDS[band]
    mags = np.asarray(truth[f"mag_{band}"])
    x, y = np.asarray(truth["x"]), np.asarray(truth["y"])
    candidates = np.flatnonzero(
        (np.asarray(truth["label"]) == "star")
        & (mags > props.saturation_mag + 1.0)
        & (mags < props.depth_5sigma - 3.0)
    )
    limit_px = separation_arcsec / PIXEL_SCALE
    isolated = [index for index in candidates if np.sum(np.hypot(x - x[index], y - y[index]) < limit_px) == 1]
    return np.array(isolated, dtype=int)


def validate_field(images, truth, *, seed=0):
    """Measure depth, star FWHM and bright-star photometry of simulated images.

    Parameters
    ----------
    images : dict of str to `~astropy.io.fits.ImageHDU`
        Images from `simulate_field`.
    truth : `~astropy.table.Table`
        The matching truth table.
    seed : int, optional
        Seed for the depth apertures.

    Returns
    -------
    report : `~astropy.table.Table`
        Per band: ``depth`` (from `measure_depth`), ``depth_table`` (CSST
        table), ``star_fwhm`` (arcsec, median Gaussian-PRF fit of isolated
        bright stars), ``photometry_offset`` (median of aperture magnitude
        corrected with ``APFRAC`` minus true magnitude) and ``n_stars``.
        FWHM and offset are NaN when no isolated bright star is present.

    Examples
    --------
    >>> images, truth = simulate_field(512, seed=4, star_density=600)  # doctest: +SKIP
    >>> validate_field(images, truth)['depth']  # doctest: +SKIP
    """
    from photutils.aperture import CircularAperture
    from photutils.psf import fit_fwhm

    rows = []
    for band, hdu in images.items():
        header = hdu.header
        data = np.asarray(hdu.data, dtype=float)
        props = CSST_BANDS[band]
        stars = _isolated_bright_stars(truth, band)
        x, y = np.asarray(truth["x"])[stars], np.asarray(truth["y"])[stars]
        inside = (x > 4) & (y > 4) & (x < data.shape[1] - 5) & (y < data.shape[0] - 5)
        stars, x, y = stars[inside], x[inside], y[inside]
        fwhm, offset = np.nan, np.nan
        if len(stars):
            positions = np.column_stack([x, y])
            fwhm = float(np.median(fit_fwhm(data, xypos=positions, fit_shape=7))) * PIXEL_SCALE
            sums, _ = CircularAperture(positions, float(header["APRAD"])).do_photometry(data, method="exact")
            measured = float(header["MAGZERO"]) - 2.5 * np.log10(sums / float(header["APFRAC"]))
            offset = float(np.median(measured - np.asarray(truth[f"mag_{band}"])[stars]))
        depth = measure_depth(data, header, seed=seed)
        rows.append((band, depth, props.depth_5sigma, fwhm, offset, len(stars)))
    names = ("band", "depth", "depth_table", "star_fwhm", "photometry_offset", "n_stars")
    report = Table(rows=rows, names=names)
    report["depth"].unit = report["depth_table"].unit = u.mag
    report["photometry_offset"].unit = u.mag
    report["star_fwhm"].unit = u.arcsec
    return report
