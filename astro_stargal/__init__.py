"""astro_stargal: star-galaxy classification for multi-band survey images and catalogs.

A ResNet-50 image branch reads multi-band cutouts, a bidirectional LSTM reads
per-band catalog measurements, and the fused features give a calibrated star
probability (after Liu, Ling, Zhang & Han 2026, Astronomy and Computing).

The user API lives here: `classify_sources`, the Table mixin
(`StarGalaxyMixin`, `StarGalaxyTable`, `StarGalaxyQTable`), the flags
(`SourceFlag`, `describe_flags`), the warning class, the model registry
(`list_models`, `load_model`, `register_model`) and retraining (`train`).
Every name but the version and the flags is imported on first use, so
``import astro_stargal`` loads neither PyTorch nor astropy and the command
line answers ``--help`` at once.
Everything else is one level down: `astro_stargal.io`, `astro_stargal.pipeline`,
`astro_stargal.models`, `astro_stargal.simulate`, `astro_stargal.training`,
`astro_stargal.evaluation`, `astro_stargal.distributed` and `astro_stargal.cli`.

Examples
--------
>>> import astro_stargal
>>> astro_stargal.SourceFlag.OFF_IMAGE.name
'OFF_IMAGE'
>>> from astro_stargal import classify_sources
>>> out = classify_sources(table, {"g": "g.fits", "r": "r.fits"})  # doctest: +SKIP
"""

import importlib

from ._version import __version__
from .flags import SourceFlag, describe_flags

__all__ = [
    "OUTPUT_COLUMNS",
    "PROVENANCE_KEYS",
    "SourceFlag",
    "StarGalaxyMixin",
    "StarGalaxyQTable",
    "StarGalaxyTable",
    "StarGalaxyWarning",
    "__version__",
    "classify_sources",
    "describe_flags",
    "list_models",
    "load_model",
    "register_model",
    "train",
]

#: Names imported on first use (they need PyTorch or astropy): name -> module that defines it.
_LAZY = {
    "OUTPUT_COLUMNS": "._columns",
    "PROVENANCE_KEYS": "._columns",
    "StarGalaxyWarning": ".exceptions",
    "classify_sources": ".classify",
    "StarGalaxyMixin": ".classify",
    "StarGalaxyTable": ".classify",
    "StarGalaxyQTable": ".classify",
    "list_models": ".models",
    "load_model": ".models",
    "register_model": ".models",
    "train": ".training",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups do not come here again
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted(set(globals()) | set(__all__))
