"""How long the command line takes to answer: ``--help``, an argument error, ``info``.

Each command runs in a fresh interpreter (``python -m astro_stargal``, what
the ``astro-stargal`` script runs), ``--repeat`` times; the median and the
fastest wall time are printed. For ``info`` the time to its first line (the
versions, printed before PyTorch is loaded) is shown beside the total (the
models and the device need PyTorch). The goal: ``--help`` and
``classify --help`` in under 1.5 s on the 2-core development CPU.

Usage::

    python -m benchmarks.benchmark_cli_startup [--repeat 5]
"""

import argparse
import statistics
import subprocess
import sys
import time

from .common import REPOSITORY, machine_description

#: name -> arguments of ``python -m astro_stargal``.
COMMANDS = {
    "--help": ["--help"],
    "classify --help": ["classify", "--help"],
    "argument error": ["classify", "catalog.ecsv", "--image", "g"],
    "bad --threshold": [
        "classify",
        "catalog.ecsv",
        "--image",
        "g=g.fits",
        "-o",
        "out.ecsv",
        "--threshold",
        "2",
    ],
    "info": ["info"],
}


def time_command(arguments):
    """Seconds until the first line of output, and until the command has finished."""
    command = [sys.executable, "-m", "astro_stargal", *arguments]
    started = time.perf_counter()
    with subprocess.Popen(
        command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        process.stdout.readline()
        first_line = time.perf_counter() - started
        process.stdout.read()
        process.wait()
    return first_line, time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command")
    args = parser.parse_args(argv)

    print(f"machine: {machine_description()}; Python {sys.version.split()[0]}; {args.repeat} runs each")
    bare = [time_command_of_python() for _ in range(args.repeat)]
    print(f"{'python -c pass (interpreter start)':<36} median {statistics.median(bare):5.2f} s")
    for name, arguments in COMMANDS.items():
        runs = [time_command(arguments) for _ in range(args.repeat)]
        first = [run[0] for run in runs]
        total = [run[1] for run in runs]
        line = f"{'astro-stargal ' + name:<36} median {statistics.median(total):5.2f} s, best {min(total):5.2f} s"
        if name == "info":
            line += f"; first line after {statistics.median(first):5.2f} s (median)"
        print(line)


def time_command_of_python():
    """Seconds to start and stop a bare interpreter: the floor under every command."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
