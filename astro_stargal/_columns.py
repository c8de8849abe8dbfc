"""The columns that classification adds to a table, shared by `classify_sources` and `classify_tiles`."""

import numpy as np
from astropy.table import Column, MaskedColumn

from .flags import SourceFlag

__all__ = ["OUTPUT_COLUMNS", "output_columns", "validate_threshold"]

#: Columns added by `classify_sources`.
OUTPUT_COLUMNS = ("p_star", "sg_class", "sg_flags", "sg_offset")

_FLAG_DESCRIPTION = "; ".join(f"{flag.value}={flag.name}" for flag in SourceFlag)


def output_columns(p_star, flags, threshold, model_name, offset=None):
    """The ``p_star``, ``sg_class``, ``sg_flags`` and ``sg_offset`` columns, with descriptions and UCDs."""
    if offset is None:
        offset = np.full(len(p_star), np.nan, dtype=np.float32)
    unclassified = np.isnan(p_star)
    with np.errstate(invalid="ignore"):
        labels = np.where(p_star >= threshold, "star", "galaxy")
    return {
        "p_star": Column(
            p_star,
            description=f"Calibrated probability that the source is a star (astro_stargal model {model_name})",
            meta={"ucd": "stat.probability;src.class.starGalaxy"},
        ),
        "sg_class": MaskedColumn(
            labels.astype("U6"),
            mask=unclassified,
            description=f"Star/galaxy class: 'star' where p_star >= {threshold}; masked if unclassified",
            meta={"ucd": "src.class.starGalaxy"},
        ),
        "sg_flags": Column(
            flags,
            description=f"astro_stargal quality flags (bit mask): {_FLAG_DESCRIPTION}",
            meta={"ucd": "meta.code.qual"},
        ),
        "sg_offset": Column(
            np.asarray(offset, dtype=np.float32),
            unit="arcsec",
            description="Distance from the table position to the centroid of the source's light, where its "
            "stamps were cut; NaN where no centroid was measured",
            meta={"ucd": "pos.angDistance"},
        ),
    }


def validate_threshold(threshold):
    """Refuse a threshold that is not a number strictly between 0 and 1."""
    if not (isinstance(threshold, (int, float, np.floating)) and 0.0 < threshold < 1.0):
        msg = f"threshold must be a number strictly between 0 and 1, got {threshold!r}"
        raise ValueError(msg)
