"""Time of the BLENDED neighbour search (`astro_stargal.pipeline.find_blended`).

Seven noise images of 4096 x 4096 pixels (0.074"/px, 25.5 arcmin²) share one
TAN WCS; sources are placed at random (10^4, 10^5 and 10^6 of them, i.e. 390
to 39,000 per arcmin²), then as in ``benchmark_speed.py``: 1,000 sources
repeated to 10^5 and 10^6 rows. Prints the best of two timings and the
fraction of sources flagged. State the machine with the figures.

Usage::

    python benchmarks/benchmark_neighbours.py
"""

import platform
import time

import numpy as np
from astropy.table import Table, vstack
from astropy.wcs import WCS

from astro_stargal.instrument import PIXEL_SCALE, band_order
from astro_stargal.io import positions_from_table, read_images
from astro_stargal.pipeline import find_blended

SIZE = 4096


def _images():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [(SIZE + 1) / 2, (SIZE + 1) / 2]
    wcs.wcs.cdelt = [-PIXEL_SCALE / 3600, PIXEL_SCALE / 3600]
    noise = np.random.default_rng(0).normal(size=(SIZE, SIZE)).astype(np.float32)
    bands = band_order()
    images = read_images({band: (noise, wcs) for band in bands}, bands, zeropoints=dict.fromkeys(bands, 25.0))
    return images, wcs, bands


def _time(images, bands, table):
    positions = positions_from_table(table)
    best = np.inf
    for _ in range(2):
        started = time.perf_counter()
        blended = find_blended(images, positions, bands, PIXEL_SCALE)
        best = min(best, time.perf_counter() - started)
    return best, blended.mean()


def main():
    images, wcs, bands = _images()
    area = (SIZE * PIXEL_SCALE / 60) ** 2
    rng = np.random.default_rng(1)
    print(f"machine: {platform.machine()}; {SIZE} x {SIZE} px, 7 bands, {area:.1f} arcmin²")
    for n in (10_000, 100_000, 1_000_000):
        sky = wcs.pixel_to_world(rng.uniform(0, SIZE - 1, n), rng.uniform(0, SIZE - 1, n))
        seconds, fraction = _time(images, bands, Table({"ra": sky.ra.deg, "dec": sky.dec.deg}))
        print(f"{n:>9} random sources ({n / area:>6,.0f}/arcmin²): {seconds:.3f} s, {fraction:.1%} blended")
    sky = wcs.pixel_to_world(rng.uniform(0, SIZE - 1, 1000), rng.uniform(0, SIZE - 1, 1000))
    base = Table({"ra": sky.ra.deg, "dec": sky.dec.deg})
    for copies in (100, 1000):
        seconds, fraction = _time(images, bands, vstack([base] * copies))
        print(f"{1000 * copies:>9} rows (1,000 sources x {copies}): {seconds:.3f} s, {fraction:.1%} blended")


if __name__ == "__main__":
    main()
