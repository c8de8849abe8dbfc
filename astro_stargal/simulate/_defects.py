"""Defects a reduction pipeline leaves in a co-add: cosmic rays, warm pixels, bleed trails, sky residuals.

What is masked and what is left
-------------------------------
* Cosmic rays hit every exposure (tracks 0.5-20 pixels long, 300-3000
  electrons per pixel of track, split between neighbouring pixels as charge
  diffusion does). Where two or more exposures cover a pixel the co-add
  rejects a cosmic ray (its pixels get zero weight in that exposure) unless
  it is one of the surviving fraction; where one exposure covers, nothing can
  reject it. Surviving ones are flagged ``COSMIC_RAY`` where they add more
  than a fifth of the co-add's pixel noise.
* Warm pixels missing from the bad-pixel mask keep a dark-current excess
  (0.05-2 electron/s, log-uniform: 1 to 40 times one exposure's sky noise in
  r) at fixed detector positions; each exposure puts them at its own dither
  offset, so a co-add shows each one once per exposure, diluted. Flagged
  ``HOT_PIXEL`` like cosmic rays.
* A pixel whose charge would exceed the full well in an exposure is
  saturated; with ``bleed_trails`` the excess runs up and down the detector
  column (the image y axis), filling pixels to the full well, as CCD charge
  does. Saturated and bled pixels hold the saturation level (``SATURATE``),
  get zero weight, and are flagged ``SATURATED`` or ``BLEED_TRAIL``.
* The sky-subtraction residual is smooth (a cubic spline through random
  values every 200 pixels, 15 arcsec) with the asked-for RMS in units of the
  co-add's pixel noise; it is not flagged, as a pipeline cannot know it.
* Pixels no exposure covers are zero, with zero weight, flagged ``NO_DATA``.
"""

import enum
import math

import numpy as np
from scipy import ndimage

from ..instrument import PIXEL_SCALE, VISIT_EXPTIME

__all__ = ["DefectFlag"]

_COSMIC_RAY_LENGTH = (0.5, 20.0)  # pixels, log-uniform

_COSMIC_RAY_CHARGE = (300.0, 3000.0)  # electrons per pixel of track, log-uniform

_WARM_PIXEL_RATE = (0.05, 2.0)  # electron/s, log-uniform

_FLAG_FRACTION_OF_NOISE = 0.2  # a defect is flagged where it adds this much of the pixel noise

_SKY_RESIDUAL_SPACING = 200  # pixels between the spline's random values


class DefectFlag(enum.IntFlag):
    """Bits of the per-pixel defect map written beside a realistic image (``{band}.defects.fits``).

    Examples
    --------
    >>> DefectFlag(5) == DefectFlag.COSMIC_RAY | DefectFlag.SATURATED
    True
    """

    COSMIC_RAY = 1
    HOT_PIXEL = 2
    SATURATED = 4
    BLEED_TRAIL = 8
    NO_DATA = 16


def _log_uniform(rng, bounds, size):
    low, high = (math.log(bound) for bound in bounds)
    return np.exp(rng.uniform(low, high, size=size))


def cosmic_ray_tracks(rng, shape, rate_per_arcmin2):
    """Electrons deposited by the cosmic rays of one exposure on a grid of ``shape``.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The band's defect stream.
    shape : tuple of int
        Grid shape ``(ny, nx)``.
    rate_per_arcmin2 : float
        Cosmic rays per square arcminute.

    Returns
    -------
    tracks : list of ``(rows, columns, electrons)``
        One entry per cosmic ray: the pixels it touched and their charge.

    Examples
    --------
    >>> tracks = cosmic_ray_tracks(np.random.default_rng(0), (100, 100), 150.0)
    >>> len(tracks) > 0 and all(charge.min() > 0 for _, _, charge in tracks)
    True
    """
    area = shape[0] * shape[1] * (PIXEL_SCALE / 60.0) ** 2
    n_rays = rng.poisson(rate_per_arcmin2 * area)
    starts = rng.uniform((0, 0), shape, size=(n_rays, 2))
    lengths = _log_uniform(rng, _COSMIC_RAY_LENGTH, n_rays)
    angles = rng.uniform(0.0, math.pi, size=n_rays)
    charges = _log_uniform(rng, _COSMIC_RAY_CHARGE, n_rays)
    tracks = []
    for start, length, angle, charge in zip(starts, lengths, angles, charges, strict=True):
        n_steps = max(math.ceil(length / 0.25), 1)
        steps = (np.arange(n_steps) + 0.5) / n_steps * length
        y = start[0] + steps * math.sin(angle) - 0.5
        x = start[1] + steps * math.cos(angle) - 0.5
        # Bilinear deposit: each step shares its charge with the four nearest pixels.
        row, column = np.floor(y).astype(int), np.floor(x).astype(int)
        fy, fx = y - row, x - column
        rows = np.concatenate([row, row, row + 1, row + 1])
        columns = np.concatenate([column, column + 1, column, column + 1])
        weights = np.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
        inside = (rows >= 0) & (rows < shape[0]) & (columns >= 0) & (columns < shape[1]) & (weights > 0)
        if not inside.any():
            continue
        flat = np.ravel_multi_index((rows[inside], columns[inside]), shape)
        pixels, inverse = np.unique(flat, return_inverse=True)
        electrons = np.bincount(inverse, weights=weights[inside]) * charge * max(length, 1.0) / n_steps
        tracks.append((*np.unravel_index(pixels, shape), electrons))
    return tracks


def exposure_defect_maker(rng, options, shape, exposures, margin):
    """A function giving each exposure's cosmic rays and warm pixels, for `coadd_exposures`.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The band's defect stream.
    options : `Defects`
        Resolved defect options.
    shape : tuple of int
        Tile shape ``(ny, nx)``.
    exposures : list of dict
        From `draw_exposures` (the integer dithers place the warm pixels).
    margin : int
        Pixels of margin on each side of an exposure's grid.

    Returns
    -------
    exposure_defects : callable
        ``exposure_defects(index, covered_counts)`` -> ``({'cosmic_ray': rate,
        'hot_pixel': rate}, masked)`` on the padded grid, rates in electron/s.

    Examples
    --------
    >>> from astro_stargal.simulate import Defects
    >>> options = Defects(cosmic_ray_rate=150.0, cosmic_ray_survival=0.0, hot_pixel_fraction=1e-3)
    >>> exposures = [{"dither_x": 0.0, "dither_y": 0.0}]
    >>> make = exposure_defect_maker(np.random.default_rng(0), options, (64, 64), exposures, 3)
    >>> added, masked = make(0, np.full((70, 70), 2))
    >>> sorted(added), bool(added["cosmic_ray"].max() == 0.0 and masked.any())
    (['cosmic_ray', 'hot_pixel'], True)
    """
    padded = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    # Warm pixels are fixed on the detector: drawn once over every position a dither can reach.
    reach = max(max(abs(e["dither_x"]), abs(e["dither_y"])) for e in exposures) + 1
    detector = (padded[0] + 2 * int(reach), padded[1] + 2 * int(reach))
    n_warm = rng.poisson(options.hot_pixel_fraction * detector[0] * detector[1])
    warm_rows = rng.integers(0, detector[0], size=n_warm) - int(reach)
    warm_columns = rng.integers(0, detector[1], size=n_warm) - int(reach)
    warm_rates = _log_uniform(rng, _WARM_PIXEL_RATE, n_warm)

    def exposure_defects(index, covered_counts):
        exposure = exposures[index]
        cosmic = np.zeros(padded)
        masked = np.zeros(padded, bool)
        for rows, columns, electrons in cosmic_ray_tracks(rng, padded, options.cosmic_ray_rate):
            survives = rng.uniform() < options.cosmic_ray_survival
            # Rejection needs a second exposure to compare with.
            if survives or covered_counts[rows, columns].min() < 2:
                np.add.at(cosmic, (rows, columns), electrons / VISIT_EXPTIME)
            else:
                masked[rows, columns] = True
        warm = np.zeros(padded)
        rows = warm_rows + math.floor(exposure["dither_y"])
        columns = warm_columns + math.floor(exposure["dither_x"])
        inside = (rows >= 0) & (rows < padded[0]) & (columns >= 0) & (columns < padded[1])
        np.add.at(warm, (rows[inside], columns[inside]), warm_rates[inside])
        return {"cosmic_ray": cosmic, "hot_pixel": warm}, masked

    return exposure_defects


def bleed_along_columns(electrons, full_well):
    """Spill charge above the full well up and down each column, as a CCD does.

    Parameters
    ----------
    electrons : 2D `~numpy.ndarray`
        Expected electrons per pixel in one exposure (columns run along axis 0).
    full_well : float
        Full-well depth in electrons.

    Returns
    -------
    bled : 2D `~numpy.ndarray`
        Electrons after bleeding (no pixel above the full well, charge
        conserved unless it runs off the end of a column).
    saturated : 2D `~numpy.ndarray` of bool
        Pixels above the full well before bleeding.

    Examples
    --------
    >>> column = np.array([[0.0], [0.0], [25.0], [0.0], [0.0]])
    >>> bled, saturated = bleed_along_columns(column, 10.0)
    >>> bled.ravel().tolist(), int(saturated.sum())
    ([0.0, 7.5, 10.0, 7.5, 0.0], 1)
    """
    bled = np.array(electrons, dtype=float)
    saturated = bled > full_well
    for column in np.flatnonzero(saturated.any(axis=0)):
        values = bled[:, column]
        labels, n_runs = ndimage.label(values > full_well)
        for run in range(1, n_runs + 1):
            rows = np.flatnonzero(labels == run)
            excess = float(np.sum(values[rows] - full_well))
            values[rows] = full_well
            # Half the excess runs each way, filling pixels to the full well.
            for direction, start in ((-1, rows[0] - 1), (1, rows[-1] + 1)):
                remaining = excess / 2
                row = start
                while remaining > 0 and 0 <= row < values.size:
                    room = max(full_well - values[row], 0.0)
                    taken = min(room, remaining)
                    values[row] += taken
                    remaining -= taken
                    row += direction
        bled[:, column] = values
    return bled, saturated


def sky_residual(rng, shape, rms):
    """A smooth sky-subtraction residual with RMS ``rms`` (cubic spline through random values).

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The band's defect stream.
    shape : tuple of int
        Tile shape ``(ny, nx)``.
    rms : float
        RMS of the residual (electron/s).

    Returns
    -------
    residual : 2D `~numpy.ndarray`

    Examples
    --------
    >>> residual = sky_residual(np.random.default_rng(0), (300, 500), 0.01)
    >>> residual.shape, round(float(residual.std()), 4)
    ((300, 500), 0.01)
    """
    nodes = (shape[0] // _SKY_RESIDUAL_SPACING + 4, shape[1] // _SKY_RESIDUAL_SPACING + 4)
    coarse = rng.normal(size=nodes)
    rows = np.arange(shape[0]) / _SKY_RESIDUAL_SPACING + 1.5
    columns = np.arange(shape[1]) / _SKY_RESIDUAL_SPACING + 1.5
    grid_rows, grid_columns = np.meshgrid(rows, columns, indexing="ij")
    residual = ndimage.map_coordinates(coarse, [grid_rows, grid_columns], order=3, mode="nearest")
    residual -= residual.mean()
    return residual * (rms / residual.std()) if residual.std() > 0 else residual


def flag_defects(defect_rates, pixel_noise):
    """Defect bits of the co-added cosmic rays and warm pixels that add a fifth of the pixel noise."""
    flags = np.zeros(pixel_noise.shape, np.uint8)
    for kind, bit in (("cosmic_ray", DefectFlag.COSMIC_RAY), ("hot_pixel", DefectFlag.HOT_PIXEL)):
        if kind in defect_rates:
            flags |= np.where(
                np.abs(defect_rates[kind]) > _FLAG_FRACTION_OF_NOISE * pixel_noise, bit, 0
            ).astype(np.uint8)
    return flags
