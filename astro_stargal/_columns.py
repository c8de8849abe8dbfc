"""What classification adds to a table, shared by `classify_sources` and `classify_tiles`: the columns and
the provenance in ``meta``."""

import datetime
import os

import numpy as np

from ._version import __version__
from .flags import SourceFlag

__all__ = [
    "OUTPUT_COLUMNS",
    "PROVENANCE_KEYS",
    "describe_image",
    "output_columns",
    "provenance",
    "validate_threshold",
]

#: Columns added by `classify_sources`.
OUTPUT_COLUMNS = ("p_star", "sg_class", "sg_flags", "sg_offset")

#: Keys that `classify_sources` writes to the output table's ``meta`` -> what each records. They are
#: valid FITS keywords (8 characters at most), so FITS and ECSV files keep them.
PROVENANCE_KEYS = {
    "SGVERSN": "astro_stargal version",
    "SGMODEL": "name of the model",
    "SGSHA256": "SHA-256 of the model's weights file",
    "SGBANDS": "bands used, in the model's order (blank or missing bands left out)",
    "SGIMAGES": "the image of each band used: BAND=file path (with [ext]) or the kind of object given",
    "SGTHRESH": "p_star threshold of sg_class",
    "SGDEVICE": "device the network ran on",
    "SGDATE": "when the table was classified (UTC, ISO 8601)",
}

_FLAG_DESCRIPTION = "; ".join(f"{flag.value}={flag.name}" for flag in SourceFlag)


def output_columns(p_star, flags, threshold, model_name, offset=None):
    """The ``p_star``, ``sg_class``, ``sg_flags`` and ``sg_offset`` columns, with descriptions and UCDs."""
    # Imported here: the command line checks a threshold with this module before astropy is needed.
    from astropy.table import Column, MaskedColumn

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


def provenance(model, used_images, threshold):
    """The ``meta`` entries (`PROVENANCE_KEYS`) that let a classified table be traced to what made it.

    Parameters
    ----------
    model : `~astro_stargal.models.LoadedModel`
    used_images : dict
        Band -> the image as the user gave it, for the bands used.
    threshold : float

    Returns
    -------
    meta : dict
    """
    return {
        "SGVERSN": __version__,
        "SGMODEL": model.name,
        "SGSHA256": model.metadata.get("sha256", "unknown"),
        "SGBANDS": " ".join(used_images),
        "SGIMAGES": "; ".join(f"{band}={describe_image(image)}" for band, image in used_images.items()),
        "SGTHRESH": float(threshold),
        "SGDEVICE": str(model.device),
        "SGDATE": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def describe_image(image):
    """Where an image came from, in a few words: its file (absolute, ``[ext]`` kept), or what object it was.

    Parameters
    ----------
    image : object
        One value of ``images`` as `~astro_stargal.classify_sources` takes it.

    Returns
    -------
    description : str

    Examples
    --------
    >>> describe_image("/data/r.fits[SCI]")
    '/data/r.fits[SCI]'
    >>> import numpy as np
    >>> describe_image((np.zeros((4, 4)), None))
    'ndarray'
    """
    if isinstance(image, tuple) and len(image) == 2:
        # (image, noise map) or (array, WCS): the first item is the image.
        image = image[0]
    if isinstance(image, (str, os.PathLike)):
        path, bracket, extension = os.fspath(image).partition("[")
        return os.path.abspath(path) + bracket + extension
    if callable(getattr(image, "filename", None)):  # an HDUList, read from a file or made in memory
        return os.path.abspath(image.filename()) if image.filename() else type(image).__name__
    file_info = getattr(image, "fileinfo", None)
    if callable(file_info) and file_info() and file_info().get("file") is not None:  # an HDU read from a file
        return f"{os.path.abspath(file_info()['file'].name)}[{image.name}]"
    return type(image).__name__
