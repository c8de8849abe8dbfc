"""Helpers shared by the subcommands: band assignments and output checks."""

import argparse
from pathlib import Path

__all__ = ["WRITE_FORMATS", "output_options", "parse_band_assignment", "parse_zeropoint_assignment"]

#: Output extensions that astropy does not recognise by itself when writing.
WRITE_FORMATS = {".vot": "votable", ".votable": "votable", ".xml": "votable"}


def parse_band_assignment(text):
    """``'r=r.fits'`` -> ``('r', 'r.fits')``; the band name is matched to the model's later, as in Python."""
    band, separator, path = text.partition("=")
    if not separator or not band.strip() or not path:
        msg = f"--image expects BAND=PATH (e.g. r=r.fits), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return band, path


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
