"""The documentation builds with warnings as errors, and shows what the code defines.

Needs the ``docs`` extra (``pip install -e ".[test,docs]"``); skipped without it.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from astro_stargal import PROVENANCE_KEYS, SourceFlag

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC_REQUIREMENTS = ("sphinx", "numpydoc", "myst_parser", "pydata_sphinx_theme")
MISSING = [name for name in DOC_REQUIREMENTS if importlib.util.find_spec(name) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"the documentation needs {MISSING} (pip install -e '.[docs]')",
)


@pytest.fixture(scope="module")
def built_html(tmp_path_factory):
    output = tmp_path_factory.mktemp("html")
    doctrees = tmp_path_factory.mktemp("doctrees")
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-E",
        "-q",
        "-b",
        "html",
        "-d",
        str(doctrees),
        str(DOCS),
        str(output),
    ]
    build = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, f"sphinx -W failed:\n{build.stdout}\n{build.stderr}"
    return output


def test_docs_build_with_warnings_as_errors(built_html):
    for page in ("index", "getting_started", "user_guide/output", "training", "api/astro_stargal"):
        assert (built_html / f"{page}.html").is_file()


def test_every_flag_bit_is_documented(built_html):
    page = (built_html / "user_guide" / "output.html").read_text()
    for flag in SourceFlag:
        assert flag.name in page, flag.name


def test_every_subcommand_help_is_shown(built_html):
    page = (built_html / "user_guide" / "cli.html").read_text()
    for command in ("classify", "demo", "evaluate", "info", "simulate", "train"):
        assert f"astro-stargal {command}" in page, command


def test_figures_shown_in_the_pages_exist():
    for name in ("demo_field.png", "cutout_gallery.png", "demo_evaluation.png", "training_curves.png"):
        assert (DOCS / "_static" / name).stat().st_size > 10_000, name


def test_every_provenance_key_is_documented():
    page = (DOCS / "user_guide" / "output.rst").read_text()
    for key in PROVENANCE_KEYS:
        assert f"``{key}``" in page, key
