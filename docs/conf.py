"""Sphinx configuration of the astro_stargal documentation.

Build (warnings are errors, as in the test suite)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build needs no network (no intersphinx) and runs no notebooks or network;
the figures in ``_static/`` are made beforehand by
``python -m benchmarks.make_docs_figures``.
"""

import contextlib
import importlib
import io
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

import astro_stargal  # noqa: E402
from astro_stargal.pipeline import CHUNK_SIZE  # noqa: E402

project = "astro_stargal"
author = "astro_stargal developers"
copyright = "2026, astro_stargal developers"
release = astro_stargal.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []

# Single backticks in the docstrings (`~astropy.table.Table`) are Python cross-references,
# as in astropy and photutils. References to other projects stay plain text: no intersphinx,
# so the build works offline, and nitpicky stays off so those do not warn.
default_role = "obj"
nitpicky = False

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

myst_heading_anchors = 3

# Numbers quoted in the pages come from the code, so the pages cannot go stale.
rst_epilog = f"""
.. |chunk_size| replace:: {CHUNK_SIZE:,}
"""

html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = f"astro_stargal {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_show_sourcelink = False


def _write_cli_help():
    """Write the ``--help`` text of ``astro-stargal`` and each subcommand to ``_generated/cli/``.

    The command-line page includes these files, so it always shows exactly what the
    installed command prints.
    """
    from astro_stargal.cli import main

    def help_text(arguments):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            main([*arguments, "--help"])
        return buffer.getvalue()

    os.environ["COLUMNS"] = "88"
    target = DOCS / "_generated" / "cli"
    target.mkdir(parents=True, exist_ok=True)
    overview = help_text([])
    (target / "astro-stargal.txt").write_text(overview)
    commands = re.findall(r"^    ([a-z][a-z-]*)\s", overview, flags=re.MULTILINE)
    sections = []
    for command in commands:
        (target / f"{command}.txt").write_text(help_text([command]))
        sections.append(
            f"astro-stargal {command}\n{'-' * (len('astro-stargal ' + command))}\n\n"
            f".. literalinclude:: /_generated/cli/{command}.txt\n   :language: text\n"
        )
    (target / "commands.rst.inc").write_text("\n".join(sections))


_write_cli_help()


def _write_flag_table():
    """Write the table of `~astro_stargal.SourceFlag` bits from the enum and its ``#:`` comments.

    The output page includes it, so the documented bits can never differ from the code.
    """
    from sphinx.pycode import ModuleAnalyzer

    from astro_stargal.flags import SourceFlag

    comments = ModuleAnalyzer.for_module("astro_stargal.flags").find_attr_docs()
    rows = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 8 22 70",
        "",
        "   * - bit value",
        "     - name",
        "     - meaning",
    ]
    for flag in SourceFlag:
        meaning = " ".join(
            line.strip() for line in comments.get(("SourceFlag", flag.name), []) if line.strip()
        )
        if not meaning:
            msg = f"SourceFlag.{flag.name} has no #: comment in astro_stargal/flags.py to document it"
            raise ValueError(msg)
        rows += [f"   * - {flag.value}", f"     - ``{flag.name}``", f"     - {meaning}"]
    target = DOCS / "_generated"
    target.mkdir(exist_ok=True)
    (target / "flags.rst.inc").write_text("\n".join(rows) + "\n")


_write_flag_table()


DISTRIBUTED_GUIDE = """
Survey scale with dask
----------------------

`astro_stargal.distributed.classify_tiles` classifies many tiles on a dask
cluster (``pip install "astro_stargal[distributed]"``): one task per tile, the
model loaded once per worker, and every input row back exactly once, in input
order. Give the images as FITS paths that every worker can read, so that each
worker memory-maps only what it needs instead of receiving pixels over the
network.

.. code-block:: python

   from astro_stargal.distributed import classify_tiles

   tiles = {
       tile.name: (Table.read(tile / "sources.fits"),
                   {band: str(tile / f"{band}.fits") for band in ["g", "r", "i"]})
       for tile in sorted(Path("survey").glob("tile*"))
   }
   result, failures = classify_tiles(tiles, n_workers=8)              # a local cluster
   result, failures = classify_tiles(tiles, client=client, device="cuda")   # your cluster

A tile that still fails after ``retries`` is reported in ``failures`` (with
its error and the worker's traceback) and its rows come back unclassified with
the ``TILE_FAILED`` flag, while every other tile is kept. Options of
`~astro_stargal.classify_sources` (``threshold``, ``batch_size``, ...) pass
through. See :doc:`/_generated/api_distributed` for the full interface.
"""


def _write_distributed_pages():
    """Document `astro_stargal.distributed` where it is installed (it needs the dask extra)."""
    target = DOCS / "_generated"
    target.mkdir(exist_ok=True)
    title = "astro_stargal.distributed\n=========================\n\n"
    try:
        importlib.import_module("astro_stargal.distributed")
    except ImportError as error:
        (target / "distributed.rst.inc").write_text("")
        (target / "api_distributed.rst").write_text(f"{title}Not available in this installation ({error}).\n")
        return
    (target / "distributed.rst.inc").write_text(DISTRIBUTED_GUIDE)
    (target / "api_distributed.rst").write_text(f"{title}.. automodule:: astro_stargal.distributed\n")


_write_distributed_pages()
