"""Close neighbours in the input table: the ``BLENDED`` flag.

A source with another catalogued source of comparable brightness within
`BLEND_RADIUS` shares its stamp and its photometry apertures with it; the
network then judges the pair, and two stars 0.2" apart look like one extended
source. On the simulated test skies such pairs are about 5% of the sources
brighter than r = 25 and about two thirds of the misclassified stars.

Pairs are found with a k-d tree (on unit vectors for sky positions, on pixels
otherwise). Brightness is compared only for the sources that have a
neighbour: the sum of the 3 x 3 pixels at each position, in AB flux units, in
the band where the source itself has the highest S/N. A neighbour at most
`BLEND_CONTRAST` magnitudes fainter than the source in that band sets the flag.
"""

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["BLEND_CONTRAST", "BLEND_RADIUS", "find_blended"]

#: Neighbours closer than this (arcsec) can blend: the outer photometry aperture is 0.44" in radius.
BLEND_RADIUS = 0.6

#: A neighbour counts when it is at most this many magnitudes fainter than the source.
BLEND_CONTRAST = 1.5

_BOX_HALF = 1  # 3 x 3 pixel box


def find_blended(band_images, positions, bands, pixel_scale, *, radius=BLEND_RADIUS, contrast=BLEND_CONTRAST):
    """Return a bool array, True for sources with a blending neighbour in the same table.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.images.BandImage`.
    positions : `~astro_stargal.positions.SourcePositions`
    bands : sequence of str
        Bands to measure the brightness in (those missing from ``band_images`` are skipped).
    pixel_scale : float
        Arcsec per pixel, to turn ``radius`` into pixels for pixel positions.
    radius : float, optional
        Pair separation in arcsec.
    contrast : float, optional
        Largest magnitude difference (neighbour fainter) that still blends.

    Returns
    -------
    blended : 1D bool `~numpy.ndarray`

    Examples
    --------
    >>> from astropy.table import Table
    >>> from astro_stargal.images import read_images
    >>> from astro_stargal.positions import positions_from_table
    >>> image = np.zeros((40, 40))
    >>> image[20, 10] = image[20, 13] = 100.0  # two equal sources 3 px apart
    >>> image[5, 30] = 100.0
    >>> image[5, 32] = 1.0  # and a much fainter one beside a third
    >>> band_images = read_images({"r": (image, None)}, ["r"], zeropoints={"r": 25.0})
    >>> table = Table({"x": [10.0, 13.0, 30.0, 32.0], "y": [20.0, 20.0, 5.0, 5.0]})
    >>> find_blended(band_images, positions_from_table(table), ["r"], pixel_scale=0.074)
    array([ True,  True, False,  True])
    """
    n_sources = len(positions)
    blended = np.zeros(n_sources, dtype=bool)
    pairs = _close_pairs(positions, radius, pixel_scale)
    if len(pairs) == 0:
        return blended
    members, pair_members = np.unique(pairs, return_inverse=True)
    pair_members = pair_members.reshape(pairs.shape)
    flux, noise = _box_fluxes(band_images, positions[members], bands)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = flux / noise
    measured = np.isfinite(snr).any(axis=1)
    best_band = np.argmax(np.where(np.isfinite(snr), snr, -np.inf), axis=1)
    threshold = 10 ** (-0.4 * contrast)
    for source, neighbour in ((0, 1), (1, 0)):
        own = pair_members[:, source]
        other = pair_members[:, neighbour]
        band = best_band[own]
        with np.errstate(invalid="ignore"):
            close_in_flux = flux[other, band] >= threshold * flux[own, band]
        blended[members[own[close_in_flux & measured[own]]]] = True
    return blended


def _close_pairs(positions, radius, pixel_scale):
    """Index pairs ``(n_pairs, 2)`` of valid sources closer than ``radius`` arcsec."""
    valid = np.flatnonzero(positions.valid)
    if len(valid) < 2:
        return np.zeros((0, 2), dtype=np.intp)
    if positions.sky is not None:
        sky = positions.sky[valid]
        points = np.column_stack([sky.cartesian.x.value, sky.cartesian.y.value, sky.cartesian.z.value])
        distance = 2 * np.sin(np.radians(radius / 3600) / 2)  # chord on the unit sphere
    else:
        points = np.column_stack([positions.x[valid], positions.y[valid]])
        distance = radius / pixel_scale
    pairs = cKDTree(points).query_pairs(distance, output_type="ndarray")
    return valid[pairs]


def _box_fluxes(band_images, positions, bands):
    """3 x 3 pixel sums (AB-normalised) and their sky noise, ``(n, n_bands)`` each; NaN off the image."""
    present = [band for band in bands if band in band_images]
    flux = np.full((len(positions), len(present)), np.nan)
    noise = np.full(len(present), np.nan)
    offsets = np.arange(-_BOX_HALF, _BOX_HALF + 1)
    for column, band in enumerate(present):
        image = band_images[band]
        x, y = positions.pixel_positions(image.wcs)
        ny, nx = image.data.shape
        with np.errstate(invalid="ignore"):
            inside = (x >= _BOX_HALF - 0.5) & (x < nx - _BOX_HALF - 0.5)
            inside &= (y >= _BOX_HALF - 0.5) & (y < ny - _BOX_HALF - 0.5)
        if not inside.any():
            continue
        ix = np.rint(x[inside]).astype(np.intp)
        iy = np.rint(y[inside]).astype(np.intp)
        rows = iy[:, None, None] + offsets[None, :, None]
        cols = ix[:, None, None] + offsets[None, None, :]
        box = np.asarray(image.data[rows, cols], dtype=np.float64).sum(axis=(1, 2))
        scale = 10 ** (-0.4 * image.zeropoint)
        flux[inside, column] = box * scale
        noise[column] = (2 * _BOX_HALF + 1) * image.noise * scale  # sqrt(9) sky sigmas
    return flux, noise
