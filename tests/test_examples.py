"""Every example of the README and of the getting-started page runs, verbatim, in a fresh folder.

Issue 15: the README's examples used files that did not exist (``sources.ecsv``,
``g.fits``), and the output shown on the getting-started page had drifted from
what the code prints. Here the examples of each document run in order, in one
empty temporary folder, as a reader would type them:

- a Python block runs in one namespace shared by the document's blocks; a
  block written as a doctest (``>>>``) must also print what it shows (up to
  blanks);
- a shell line is split as the shell splits it (`shlex`, comments dropped,
  ``&&`` chains in order); an ``astro-stargal ...`` command runs in this
  process through the script's entry point, `astro_stargal.cli.main` (the
  ``astro-stargal`` on the PATH may belong to another installation), any
  other command in a shell with this interpreter first on the PATH;
- console blocks run their ``$`` lines and show sample output, not checked.

Only the examples named in `SKIPPED_COMMANDS` and `SKIPPED_BLOCKS` are not
run, each for the reason given there; a skip that matches no example fails,
so the list cannot outlive its examples.
"""

import doctest
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from astro_stargal.cli import main

ROOT = Path(__file__).resolve().parent.parent

#: The documents whose examples must run.
DOCUMENTS = ("README.md", "docs/getting_started.rst")

#: Shell commands not run here (matched by their first words) -> why.
SKIPPED_COMMANDS = {
    ("pip", "install"): "installs packages; .ci/run installs the project from scratch, then runs this suite",
    ("python", "-m", "pytest"): "the test suite itself, which .ci/run runs",
    ("python", "-m", "sphinx"): "builds the documentation, which tests/test_docs.py does",
}

#: Blocks not run here (matched by a piece of their text) -> why.
SKIPPED_BLOCKS = {
    "--tiles 60 --seed 20261126": "GPU: retraining the model on 60 simulated tiles (hours on a CPU)",
}


def code_blocks(document):
    """``(language, code, line)`` for each code block of a Markdown or reStructuredText document."""
    text = (ROOT / document).read_text()
    if document.endswith(".md"):
        pattern = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
        return [
            (match[1], match[2], text.count("\n", 0, match.start()) + 1) for match in pattern.finditer(text)
        ]
    pattern = re.compile(r"^\.\. code-block:: (\w+)\n\n((?:[ ]{3}.*\n|\n)+)", re.MULTILINE)
    return [
        (match[1], textwrap.dedent(match[2]), text.count("\n", 0, match.start()) + 1)
        for match in pattern.finditer(text)
    ]


def shell_commands(language, code):
    """The commands of a shell block, each a list of words (console blocks: the ``$`` lines only)."""
    lines = code.replace("\\\n", " ").splitlines()
    if language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while words:
            end = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:end])
            words = words[end + 1 :]
    return commands


def skip_reason(words):
    for prefix, reason in SKIPPED_COMMANDS.items():
        if tuple(words[: len(prefix)]) == prefix:
            return reason
    return None


def run_shell_command(words, where):
    if words[0] == "astro-stargal":
        try:
            status = main(words[1:])
        except SystemExit as stop:  # argparse refused the arguments
            status = stop.code
        assert status == 0, f"{shlex.join(words)} (at {where}) exited with status {status}"
        return
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    result = subprocess.run(words, capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 0, (
        f"{shlex.join(words)} (at {where}) failed:\n{result.stdout}\n{result.stderr}"
    )


def run_python_block(code, namespace, where):
    if ">>>" not in code:
        exec(compile(code, where, "exec"), namespace)
        return
    test = doctest.DocTestParser().get_doctest(code, namespace, where, where, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    report = []
    runner.run(test, out=report.append, clear_globs=False)
    assert runner.failures == 0, "".join(report)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_example_runs_verbatim_in_a_fresh_folder(document, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib").use("Agg")  # the demo draws its figure
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__example__"}
    ran = 0
    for language, code, line in code_blocks(document):
        where = f"{document}:{line}"
        if any(piece in code for piece in SKIPPED_BLOCKS):
            continue
        if language == "python":
            run_python_block(code, namespace, where)
            ran += 1
        elif language in ("bash", "console"):
            for words in shell_commands(language, code):
                if skip_reason(words) is None:
                    run_shell_command(words, where)
                    ran += 1
    assert ran >= 4, f"{document}: only {ran} examples ran; did the block syntax change?"


def test_every_skipped_example_still_exists():
    commands, texts = [], []
    for document in DOCUMENTS:
        for language, code, _ in code_blocks(document):
            texts.append(code)
            if language in ("bash", "console"):
                commands += shell_commands(language, code)
    for prefix in SKIPPED_COMMANDS:
        assert any(tuple(words[: len(prefix)]) == prefix for words in commands), prefix
    for piece in SKIPPED_BLOCKS:
        assert any(piece in text for text in texts), piece


def test_shell_lines_are_split_as_the_shell_splits_them():
    code = 'pip install -e ".[test]" && astro-stargal demo   # a comment\nastro-stargal info\n'
    assert shell_commands("bash", code) == [
        ["pip", "install", "-e", ".[test]"],
        ["astro-stargal", "demo"],
        ["astro-stargal", "info"],
    ]
    assert shell_commands("console", "$ astro-stargal info\nastro_stargal 0.1\n") == [
        ["astro-stargal", "info"]
    ]
