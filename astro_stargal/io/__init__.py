"""Reading what the user gives: per-band images and source positions.

`read_images` turns FITS paths, HDUs, `~astropy.nddata.NDData` and
``(array, WCS)`` pairs, each optionally with a per-pixel noise map (a weight
map, or a `NoiseMap` of variances or sigmas), into `BandImage` objects (pixels,
WCS, mask, zero point, saturation level, sky noise and noise map). Band names,
whether a user or a FITS header gives them, follow one rule, `resolve_band`
(exact, else the one band equal to it ignoring case), and
`band_named_by_header` reads the band a header names. `positions_from_table`
finds the sources' positions in a table (a `~astropy.coordinates.SkyCoord`
column, RA/Dec columns or pixel ``x``/``y``) as `SourcePositions`.
"""

from ._bands import HEADER_BAND_KEYWORDS, band_named_by_header, resolve_band
from ._images import (
    NOISE_MAP_KINDS,
    NOISE_SAMPLE_SIZE,
    SATURATION_KEYWORDS,
    ZEROPOINT_KEYWORDS,
    BandImage,
    NoiseMap,
    read_images,
)
from ._positions import PIXEL_COLUMN_PAIRS, SKY_COLUMN_PAIRS, SourcePositions, positions_from_table

__all__ = [
    "HEADER_BAND_KEYWORDS",
    "NOISE_MAP_KINDS",
    "NOISE_SAMPLE_SIZE",
    "PIXEL_COLUMN_PAIRS",
    "SATURATION_KEYWORDS",
    "SKY_COLUMN_PAIRS",
    "ZEROPOINT_KEYWORDS",
    "BandImage",
    "NoiseMap",
    "SourcePositions",
    "band_named_by_header",
    "positions_from_table",
    "read_images",
    "resolve_band",
]
