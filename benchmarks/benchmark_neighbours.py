"""Time of the BLENDED neighbour search (`astro_stargal.pipeline.find_blended`).

Seven noise images of 4096 x 4096 pixels (0.074"/px, 25.5 arcmin²) share one
TAN WCS; sources are placed at random (10^4, 10^5 and 10^6 of them, i.e. 390
to 39,000 per arcmin²), then as in ``benchmark_speed``: 1,000 sources
repeated to 10^5 and 10^6 rows. Prints the best of two timings and the
fraction of sources flagged. State the machine with the figures.

Usage::

    python -m benchmarks.benchmark_neighbours
"""

import argparse

import numpy as np
from astropy.table import vstack

from astro_stargal.instrument import PIXEL_SCALE, band_order
from astro_stargal.io import positions_from_table, read_images
from astro_stargal.pipeline import find_blended

from .common import Stopwatch, field_wcs, machine_description, random_positions

SIZE = 4096


def _images(wcs):
    # One noise image shared by the seven bands keeps the memory to that of one image.
    noise = np.random.default_rng(0).normal(size=(SIZE, SIZE)).astype(np.float32)
    bands = band_order()
    return read_images({band: (noise, wcs) for band in bands}, bands, zeropoints=dict.fromkeys(bands, 25.0))


def _time(images, table):
    """Best of two timings of the search, and the fraction of rows flagged."""
    positions = positions_from_table(table)
    best = np.inf
    for _ in range(2):
        with Stopwatch() as watch:
            blended = find_blended(images, positions, band_order(), PIXEL_SCALE)
        best = min(best, watch.seconds)
    return best, blended.mean()


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    wcs = field_wcs(SIZE)
    images = _images(wcs)
    area = (SIZE * PIXEL_SCALE / 60) ** 2
    rng = np.random.default_rng(1)
    print(f"machine: {machine_description()}; {SIZE} x {SIZE} px, 7 bands, {area:.1f} arcmin²")
    for n in (10_000, 100_000, 1_000_000):
        seconds, fraction = _time(images, random_positions(wcs, SIZE, n, rng))
        print(f"{n:>9} random sources ({n / area:>6,.0f}/arcmin²): {seconds:.3f} s, {fraction:.1%} blended")
    base = random_positions(wcs, SIZE, 1000, rng)
    for copies in (100, 1000):
        seconds, fraction = _time(images, vstack([base] * copies))
        print(f"{1000 * copies:>9} rows (1,000 sources x {copies}): {seconds:.3f} s, {fraction:.1%} blended")


if __name__ == "__main__":
    main()
