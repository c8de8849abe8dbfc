"""The ``astro-stargal`` command line (also ``python -m astro_stargal``).

Each subcommand lives in its own module (``_classify``, ``_train``, ...) with
an ``add_parser`` that declares its arguments and a ``run`` that runs it; the
heavy modules (PyTorch, astropy) are imported only when a subcommand runs, so
``--help`` and mistakes in the arguments are answered at once. Errors of the
library are printed in one line, with the Python keywords they name
(``overwrite=True``) rewritten as the subcommand's options (``--overwrite``).
"""

import argparse
import sys

from . import _classify, _classify_tiles, _demo, _evaluate, _info, _simulate, _train
from ._common import command_line_message

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
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as error:
        # The library names its Python keywords (overwrite=True); say the option to use instead.
        message = command_line_message(str(error), getattr(args, "python_options", {}))
        print(f"astro-stargal {args.command}: error: {message}", file=sys.stderr)
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
