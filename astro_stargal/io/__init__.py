"""Reading what the user gives: per-band images and source positions.

`read_images` turns FITS paths, HDUs, `~astropy.nddata.NDData` and
``(array, WCS)`` pairs into `BandImage` objects (pixels, WCS, mask, zero point,
saturation level and sky noise); `positions_from_table` finds the sources'
positions in a table (a `~astropy.coordinates.SkyCoord` column, RA/Dec
columns or pixel ``x``/``y``) as `SourcePositions`.
"""

from ._images import NOISE_SAMPLE_SIZE, SATURATION_KEYWORDS, ZEROPOINT_KEYWORDS, BandImage, read_images
from ._positions import PIXEL_COLUMN_PAIRS, SKY_COLUMN_PAIRS, SourcePositions, positions_from_table

__all__ = [
    "NOISE_SAMPLE_SIZE",
    "PIXEL_COLUMN_PAIRS",
    "SATURATION_KEYWORDS",
    "SKY_COLUMN_PAIRS",
    "ZEROPOINT_KEYWORDS",
    "BandImage",
    "SourcePositions",
    "positions_from_table",
    "read_images",
]
