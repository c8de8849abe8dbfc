"""The ``astro-stargal`` command line (also ``python -m astro_stargal``).

Each subcommand lives in its own module (``_classify``, ``_train``, ...) with
an ``add_parser`` that declares its arguments and a ``run`` that runs it; the
heavy modules are imported only when their subcommand runs.
"""

import argparse
import sys

from . import _classify, _classify_tiles, _demo, _evaluate, _info, _simulate, _train

__all__ = ["main"]

#: The subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = (_classify, _classify_tiles, _demo, _evaluate, _info, _simulate, _train)


def main(argv=None):
    """Run the ``astro-stargal`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on a user error (message printed to stderr).

    Examples
    --------
    >>> main(["info"])  # doctest: +SKIP
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"astro-stargal {args.command}: error: {error}", file=sys.stderr)
        return 2


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="astro-stargal",
        description="Star-galaxy classification for multi-band survey images and catalogs.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(subparsers)
    return parser
