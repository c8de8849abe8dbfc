"""Close neighbours in the input table: the ``BLENDED`` flag.

A source with another catalogued source of comparable brightness within
`BLEND_RADIUS` shares its stamp and its photometry apertures with it; the
network then judges the pair, and two stars 0.2" apart look like one extended
source. On the simulated test skies such pairs are about 5% of the sources
brighter than r = 25 and about two thirds of the misclassified stars.

Neighbours are found with a k-d tree (on unit vectors for sky positions, on
pixels otherwise), up to `MAX_NEIGHBOURS` per source, so the work stays linear
in the number of rows even when rows are duplicated. Brightness is compared
only for the sources that have a neighbour: the sum of the 3 x 3 pixels at each position, in AB flux units, in
the band where the source itself has the highest S/N. A neighbour at most
`BLEND_CONTRAST` magnitudes fainter than the source in that band sets the flag.
"""

import numpy as np
from scipy.spatial import cKDTree

from .inputs import shared_grids

__all__ = ["BLEND_CONTRAST", "BLEND_RADIUS", "MAX_NEIGHBOURS", "find_blended"]

#: Neighbours closer than this (arcsec) can blend: the outer photometry aperture is 0.44" in radius.
BLEND_RADIUS = 0.6

#: A neighbour counts when it is at most this many magnitudes fainter than the source.
BLEND_CONTRAST = 1.5

#: Neighbours examined per source; a source with this many within the radius is blended whatever their fluxes.
MAX_NEIGHBOURS = 8

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
    sources, neighbours, crowded = _close_neighbours(positions, radius, pixel_scale)
    blended[crowded] = True
    if len(sources) == 0:
        return blended
    # Sources in at least one pair, and each pair's rows among them (a scatter, not a sort).
    in_pair = np.zeros(n_sources, dtype=bool)
    in_pair[sources] = in_pair[neighbours] = True
    members = np.flatnonzero(in_pair)
    row_of = np.empty(n_sources, dtype=np.intp)
    row_of[members] = np.arange(len(members))
    own, other = row_of[sources], row_of[neighbours]
    flux, noise = _box_fluxes(band_images, positions[members], bands)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = flux / noise
    measured = np.isfinite(snr).any(axis=1)
    best_band = np.argmax(np.where(np.isfinite(snr), snr, -np.inf), axis=1)
    band = best_band[own]
    with np.errstate(invalid="ignore"):
        close_in_flux = flux[other, band] >= 10 ** (-0.4 * contrast) * flux[own, band]
    blended[sources[close_in_flux & measured[own]]] = True
    return blended


def _close_neighbours(positions, radius, pixel_scale):
    """Each valid source's nearest neighbours closer than ``radius`` arcsec, up to `MAX_NEIGHBOURS`.

    Returns ``(sources, neighbours, crowded)``: one entry of the first two per
    (source, neighbour) pair, and the sources with `MAX_NEIGHBOURS` or more
    neighbours. Rows at identical positions ("sites") are searched once and
    are each other's neighbours, and each site looks at a fixed number of
    neighbouring sites, so the work stays linear in the number of rows even
    when rows are duplicated many times.
    """
    valid = np.flatnonzero(positions.valid)
    empty = np.zeros(0, dtype=np.intp)
    if len(valid) < 2:
        return empty, empty, empty
    if positions.sky is not None:
        sky = positions.sky[valid].cartesian
        points = np.column_stack([sky.x.value, sky.y.value, sky.z.value])
        distance = 2 * np.sin(np.radians(radius / 3600) / 2)  # chord on the unit sphere
    else:
        points = np.column_stack([positions.x[valid], positions.y[valid]])
        distance = radius / pixel_scale
    sites, site_of, copies = np.unique(points, axis=0, return_inverse=True, return_counts=True)
    site_of = site_of.ravel()
    n_sites = len(sites)
    # A site is among its own nearest; missing neighbours come back with index n_sites.
    _, nearest = cKDTree(sites).query(sites, k=MAX_NEIGHBOURS + 1, distance_upper_bound=distance, workers=-1)
    found = (nearest < n_sites) & (nearest != np.arange(n_sites)[:, None])
    pair_site, slot = np.nonzero(found)  # sorted by pair_site
    neighbour_site = nearest[pair_site, slot]
    # Two rows of every site: a row's partner on a shared site is the other one.
    order = np.argsort(site_of, kind="stable")
    first = valid[order[np.searchsorted(site_of[order], np.arange(n_sites))]]
    second = valid[order[np.minimum(np.searchsorted(site_of[order], np.arange(n_sites)) + 1, len(order) - 1)]]

    # Every row against one row of each neighbouring site of its own site...
    per_site = np.bincount(pair_site, minlength=n_sites)
    start = np.cumsum(per_site) - per_site
    repeats = per_site[site_of]
    sources = np.repeat(valid, repeats)
    offset = np.arange(len(sources)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    neighbours = first[neighbour_site[np.repeat(start[site_of], repeats) + offset]]
    # ...and against another row of its own site, when it shares one.
    shared = copies[site_of] > 1
    partner = np.where(first[site_of] == valid, second[site_of], first[site_of])
    sources = np.concatenate([sources, valid[shared]])
    neighbours = np.concatenate([neighbours, partner[shared]])
    crowded = valid[(per_site + copies - 1)[site_of] >= MAX_NEIGHBOURS]
    return sources, neighbours, crowded


def _box_fluxes(band_images, positions, bands):
    """3 x 3 pixel sums (AB-normalised) and their sky noise, ``(n, n_bands)`` each; NaN off the image."""
    present = [band for band in bands if band in band_images]
    same_grid = shared_grids(band_images, present)
    pixels = {}
    flux = np.full((len(positions), len(present)), np.nan)
    noise = np.full(len(present), np.nan)
    for column, band in enumerate(present):
        image = band_images[band]
        if same_grid[band] not in pixels:
            pixels[same_grid[band]] = positions.pixel_positions(image.wcs)
        x, y = pixels[same_grid[band]]
        ny, nx = image.data.shape
        with np.errstate(invalid="ignore"):
            inside = (x >= _BOX_HALF - 0.5) & (x < nx - _BOX_HALF - 0.5)
            inside &= (y >= _BOX_HALF - 0.5) & (y < ny - _BOX_HALF - 0.5)
        if not inside.any():
            continue
        # Nine gathers from the flattened image: no (n, 3, 3) index arrays.
        centre = np.rint(y[inside]).astype(np.intp) * nx + np.rint(x[inside]).astype(np.intp)
        flat = image.data.reshape(-1)
        box = np.zeros(len(centre))
        for dy in range(-_BOX_HALF, _BOX_HALF + 1):
            for dx in range(-_BOX_HALF, _BOX_HALF + 1):
                box += flat[centre + (dy * nx + dx)]
        scale = 10 ** (-0.4 * image.zeropoint)
        flux[inside, column] = box * scale
        noise[column] = (2 * _BOX_HALF + 1) * image.noise * scale  # sqrt(9) sky sigmas
    return flux, noise
