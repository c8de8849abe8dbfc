"""The columns that classification adds to a table, shared by `classify_sources` and `classify_tiles`."""

import numpy as np

from .flags import SourceFlag

__all__ = ["OUTPUT_COLUMNS", "output_columns", "validate_threshold"]

#: Columns added by `classify_sources`.
OUTPUT_COLUMNS = ("p_star", "sg_class", "sg_flags")

_FLAG_DESCRIPTION = "; ".join(f"{flag.value}={flag.name}" for flag in SourceFlag)


def output_columns(p_star, flags, threshold, model_name):
    """The ``p_star``, ``sg_class`` and ``sg_flags`` columns, with descriptions and UCDs."""
    # Imported here: the command line checks a threshold with this module before astropy is needed.
    from astropy.table import Column, MaskedColumn

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
    }


def validate_threshold(threshold):
    """Refuse a threshold that is not a number strictly between 0 and 1."""
    if not (isinstance(threshold, (int, float, np.floating)) and 0.0 < threshold < 1.0):
        msg = f"threshold must be a number strictly between 0 and 1, got {threshold!r}"
        raise ValueError(msg)
