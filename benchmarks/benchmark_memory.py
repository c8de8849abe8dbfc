"""Peak memory of `classify_sources` against table length: it must stay flat.

Writes one synthetic 7-band field (Gaussian noise with a TAN WCS, FITS files
that are memory-mapped when read), then classifies 10^4, 10^5 and 10^6
random positions on it with the real path (bundled model, FITS paths), each
size in a fresh subprocess, and prints the peak resident memory
(``resource.getrusage``) and the rate. Memory-mapped pages of the images that
were read count in the resident memory, so the figure includes them (at most
the size of the images).

Goals: the 10^6 peak within 20% of the 10^5 peak, and under 4 GiB.

Usage::

    python -m benchmarks.benchmark_memory [--sizes 10000,100000,1000000] [--field-size 4096]
        [--device cpu] [--weights DIR] [--chunk-size N] [--workers N] [--field-dir DIR]
"""

import argparse
import resource
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from astro_stargal import classify_sources, load_model
from astro_stargal.instrument import band_order

from .common import (
    Stopwatch,
    field_wcs,
    machine_description,
    model_weights,
    module_command,
    random_positions,
    write_noise_field,
)


def _child(args):
    """Classify ``args.child`` random sources; print ``peak_rss_bytes seconds``."""
    model = load_model(model_weights(args.weights), device=args.device)
    paths = {band: str(Path(args.field_dir) / f"{band}.fits") for band in model.bands}
    rng = np.random.default_rng(args.child)
    table = random_positions(field_wcs(args.field_size), args.field_size, args.child, rng)
    table.add_column(np.arange(args.child), name="id", index=0)
    options = {"weights": model, "progress": False}
    if args.chunk_size:
        options["chunk_size"] = args.chunk_size
    if args.workers is not None:
        options["workers"] = args.workers
    with Stopwatch() as watch:
        result = classify_sources(table, paths, **options)
    assert len(result) == args.child
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(f"{peak} {watch.seconds}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated numbers of sources")
    parser.add_argument("--field-size", type=int, default=4096, help="side of the square field in pixels")
    parser.add_argument("--field-dir", help="where the field is (re)used (default: a temporary folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights")
    parser.add_argument("--chunk-size", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return _child(args)

    field_dir = args.field_dir or tempfile.mkdtemp(prefix="astro_stargal_memory_")
    write_noise_field(field_dir, args.field_size)
    n_bands = len(band_order())
    image_bytes = n_bands * args.field_size**2 * 4
    print(
        f"machine: {machine_description()}, device {args.device}; "
        f"field {args.field_size}^2 px x {n_bands} bands ({image_bytes / 2**30:.2f} GiB of FITS)"
    )
    peaks = {}
    for n_sources in (int(text) for text in args.sizes.split(",")):
        # Each size in a fresh process, so that its peak is its own.
        command = module_command(
            "benchmarks.benchmark_memory", "--child", n_sources, "--field-dir", field_dir
        )
        command += ["--field-size", str(args.field_size), "--device", args.device]
        for option in ("weights", "chunk_size", "workers"):
            value = getattr(args, option)
            if value is not None:
                command += [f"--{option.replace('_', '-')}", str(value)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        peak, seconds = int(output[-2]), float(output[-1])
        peaks[n_sources] = peak
        print(
            f"{n_sources:>9,d} sources: peak RSS {peak / 2**30:.2f} GiB, "
            f"{seconds:,.0f} s ({n_sources / seconds:,.0f} sources/s)",
            flush=True,
        )
    sizes = sorted(peaks)
    if len(sizes) > 1:
        growth = peaks[sizes[-1]] / peaks[sizes[-2]] - 1
        print(f"peak growth {sizes[-2]:,d} -> {sizes[-1]:,d} sources: {growth:+.0%} (goal: within 20%)")
    print(f"largest peak {peaks[sizes[-1]] / 2**30:.2f} GiB (goal: under 4 GiB)")
    return peaks


if __name__ == "__main__":
    main()
