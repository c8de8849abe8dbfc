"""Helpers shared by the subcommands: option types, output checks, and errors in command-line words.

Nothing here imports PyTorch, and astropy only once a command runs, so that
``--help`` and mistakes in the arguments are answered at once.
"""

import argparse
import re
from pathlib import Path

__all__ = [
    "CLASSIFY_OPTIONS",
    "WRITE_FORMATS",
    "command_line_message",
    "non_negative_integer",
    "output_options",
    "parse_band_assignment",
    "parse_position_columns",
    "parse_psf_assignment",
    "parse_zeropoint_assignment",
    "positive_integer",
    "threshold_value",
]

#: Output extensions that astropy does not recognise by itself when writing.
WRITE_FORMATS = {".vot": "votable", ".votable": "votable", ".xml": "votable"}

#: How ``classify`` spells each keyword argument of `~astro_stargal.classify_sources`: a keyword
#: -> its option, or ``'keyword=value'`` -> the switch that passes that value.
CLASSIFY_OPTIONS = {
    "images": "--image",
    "weights": "--model",
    "device": "--device",
    "batch_size": "--batch-size",
    "progress=True": "--progress",
    "progress=False": "--no-progress",
    "threshold": "--threshold",
    "position_columns": "--position-columns",
    "zeropoints": "--zeropoint",
    "header_bands=False": "--ignore-header-bands",
    "overwrite=True": "--overwrite",
    "chunk_size": "--chunk-size",
    "workers": "--workers",
    "threads": "--threads",
    "psf": "--psf",
    "recentre=False": "--no-recentre",
}

# ``keyword=value`` as the library's messages write it: a quoted string, a tuple, a dict, a word.
_KEYWORD_AND_VALUE = re.compile(
    r"(?<![\w-])(?P<keyword>[a-z][a-z0-9_]*)=(?P<value>'[^']*'|\([^)]*\)|\{[^}]*\}|[\w.+:-]+)?"
)


def command_line_message(message, options):
    """Rewrite the Python keyword arguments that a library message names as command-line options.

    The library speaks to Python users (``pass overwrite=True``); the same
    error seen from the command line must name the option to use instead
    (``pass --overwrite``).

    Parameters
    ----------
    message : str
        The message of an exception raised by the library.
    options : dict
        Keyword -> option, and ``'keyword=value'`` -> switch (see `CLASSIFY_OPTIONS`).

    Returns
    -------
    message : str

    Examples
    --------
    >>> command_line_message("pass overwrite=True to replace them", CLASSIFY_OPTIONS)
    'pass --overwrite to replace them'
    >>> command_line_message("use device='cpu'", CLASSIFY_OPTIONS)
    'use --device cpu'
    >>> command_line_message("batch_size must be a positive integer, got 0", CLASSIFY_OPTIONS)
    '--batch-size must be a positive integer, got 0'
    """

    def rewrite(match):
        keyword, value = match["keyword"], match["value"]
        if f"{keyword}={value}" in options:
            return options[f"{keyword}={value}"]
        if keyword not in options:
            return match[0]
        if value is None:
            return options[keyword]
        return f"{options[keyword]} {_command_line_value(value)}"

    message = _KEYWORD_AND_VALUE.sub(rewrite, message)
    for keyword, option in options.items():
        if "=" in keyword:
            continue
        # A keyword named as the subject of a sentence: "batch_size must be", "images names band".
        message = re.sub(rf"(?<![\w'-]){keyword}(?= must be| names band)", option, message)
        message = re.sub(rf"(?<=band name in ){keyword}\b", option, message)
    return message


def _command_line_value(value):
    """``'cpu'`` -> ``cpu``; ``('ra', 'dec')`` -> ``ra,dec``; ``{'r': ...}`` -> ``r=...``."""
    if value.startswith("("):
        return ",".join(part.strip(" '\"") for part in value.strip("()").split(",") if part.strip())
    if value.startswith("{"):
        band, _, rest = value.strip("{}").partition(":")
        return band.strip(" '\"") + "=" + rest.strip()
    return value.strip("'\"")


def parse_band_assignment(text, option="--image", example="r=r.fits"):
    """``'r=r.fits'`` -> ``('r', 'r.fits')``; the band name is matched to the model's later, as in Python."""
    band, separator, path = text.partition("=")
    if not separator or not band.strip() or not path:
        msg = f"{option} expects BAND=PATH (e.g. {example}), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return band, path


def parse_psf_assignment(text):
    """``'r=r.psf'`` -> ``('r', 'r.psf')``: a band's PSFEx file."""
    return parse_band_assignment(text, "--psf", "r=r.psf")


def parse_zeropoint_assignment(text):
    """``'r=26.4'`` -> ``('r', 26.4)``."""
    band, separator, value = text.partition("=")
    try:
        zeropoint = float(value)
    except ValueError:
        zeropoint = None
    if not separator or not band.strip() or zeropoint is None:
        msg = f"--zeropoint expects BAND=ZP (e.g. r=26.4), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return band, zeropoint


def parse_position_columns(text):
    """``'ra,dec'`` -> ``('ra', 'dec')``; ``'coord'`` (one SkyCoord column) -> ``'coord'``."""
    names = [name.strip() for name in text.split(",")]
    if len(names) > 2 or not all(names):
        msg = f"--position-columns expects RA,DEC (or X,Y) column names, or one SkyCoord column, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return names[0] if len(names) == 1 else tuple(names)


def positive_integer(text):
    """An integer of at least 1, for counts such as ``--batch-size``."""
    return _integer_at_least(text, 1, "a positive integer")


def non_negative_integer(text):
    """An integer of at least 0, for ``--workers`` (0: prepare in the calling thread)."""
    return _integer_at_least(text, 0, "a non-negative integer")


def _integer_at_least(text, lowest, what):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < lowest:
        msg = f"expects {what}, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def threshold_value(text):
    """A ``p_star`` threshold, refused unless strictly between 0 and 1 (`~astro_stargal.classify_sources`'s rule)."""
    from .._columns import validate_threshold

    try:
        threshold = float(text)
        validate_threshold(threshold)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expects a number strictly between 0 and 1, got {text!r}"
        ) from error
    return threshold


def output_options(args):
    """Check the output before any work: it must not exist (unless --overwrite) and have a known format."""
    from astropy.io import registry
    from astropy.table import Table

    if not Path(args.output).resolve().parent.is_dir():
        msg = f"the folder of output {args.output!r} does not exist"
        raise FileNotFoundError(msg)
    if Path(args.output).exists() and not args.overwrite:
        msg = f"output file {args.output!r} already exists; pass --overwrite to replace it"
        raise ValueError(msg)
    output_format = args.format or WRITE_FORMATS.get(Path(args.output).suffix.lower())
    if output_format is None and not registry.identify_format("write", Table, args.output, None, [], {}):
        msg = f"cannot tell the table format of output {args.output!r} from its name; use .fits, .ecsv, .vot or pass --format"
        raise ValueError(msg)
    return {"format": output_format} if output_format else {}
