"""astro_stargal: star-galaxy classification for multi-band survey images and catalogs.

A ResNet-50 image branch reads multi-band cutouts, a bidirectional LSTM reads
per-band catalog measurements, and the fused features give a calibrated star
probability (after Liu, Ling, Zhang & Han 2026, Astronomy and Computing).

Examples
--------
>>> from astro_stargal import classify_sources
>>> out = classify_sources(table, {"g": "g.fits", "r": "r.fits"})  # doctest: +SKIP
"""

from .classify import (
    OUTPUT_COLUMNS,
    StarGalaxyMixin,
    StarGalaxyQTable,
    StarGalaxyTable,
    classify_sources,
)
from .exceptions import StarGalaxyWarning
from .flags import SourceFlag, describe_flags
from .weights import list_models, load_model

__version__ = "0.1.0.dev0"

__all__ = [
    "OUTPUT_COLUMNS",
    "SourceFlag",
    "StarGalaxyMixin",
    "StarGalaxyQTable",
    "StarGalaxyTable",
    "StarGalaxyWarning",
    "classify_sources",
    "describe_flags",
    "list_models",
    "load_model",
]
