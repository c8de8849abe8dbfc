"""Throughput of `classify_sources` end to end versus the network alone.

Renders one CSST-like field (or reads a simulator directory), then times:

* network only: `astro_stargal.pipeline.run_network` on already prepared inputs;
* end to end: `classify_sources` on the truth table (stacked to ``--sources``
  rows) and the FITS files (position transforms, cutouts, features, network,
  output table), with ``--workers`` preparation threads (default: the
  library's choice for the device) and, on a subset, with preparation in the
  calling thread (``workers=0``) for comparison. On a GPU that can hold the
  images, also with the stamps cut by CPU threads instead (the path taken
  when the images are too large for the GPU).

With ``--repeat N`` the network-only and end-to-end timings alternate N
times and the best of each is kept. Prints sources per second and their ratio (the goals: end to end within 1.3x
of the network alone; at least 30,000 sources/s end to end on an H100). State
the machine with the figures. Runs from a checkout without installing; the
bundled model is then read from ``weights/``.

Usage::

    python -m benchmarks.benchmark_speed --device cuda --sources 100000
    python -m benchmarks.benchmark_speed [--sky-dir DIR] [--size 1024] [--device cpu] [--weights DIR]
        [--sources N] [--workers N] [--chunk-size N]
"""

import argparse
import math
import tempfile
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch
from astropy.table import vstack

from astro_stargal import classify_sources, load_model
from astro_stargal.io import positions_from_table, read_images
from astro_stargal.pipeline import (
    CHUNK_SIZE,
    DeviceImages,
    default_batch_size,
    default_workers,
    prepare_inputs,
    run_network,
)
from astro_stargal.training import labelled_fields

from .common import Stopwatch, machine_description, model_weights, simulated_sky


def _fields(args):
    if args.sky_dir:
        return labelled_fields(Path(args.sky_dir))
    return simulated_sky(Path(tempfile.mkdtemp()) / "bench_sky", tiles=1, size=args.size, seed=4242)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sky-dir", help="simulator output directory (default: render one field)")
    parser.add_argument("--size", type=int, default=1024, help="field side when rendering")
    parser.add_argument("--device")
    parser.add_argument("--weights")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument(
        "--sources", type=int, default=3000, help="the truth table is stacked to this many rows"
    )
    parser.add_argument(
        "--network-sources", type=int, default=16384, help="prepared sources timed through the network alone"
    )
    parser.add_argument(
        "--serial-sources", type=int, default=5000, help="rows timed with workers=0 (0: skip)"
    )
    parser.add_argument("--workers", type=int, help="preparation threads (default: the library's choice)")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="alternate the network and end-to-end timings this often, keep the best",
    )
    args = parser.parse_args(argv)

    model = load_model(model_weights(args.weights), device=args.device)
    batch_size = args.batch_size or default_batch_size(model.device)
    workers = default_workers(model.device) if args.workers is None else args.workers
    field = _fields(args)[0]
    table = vstack([field.table] * math.ceil(args.sources / len(field.table)))[: args.sources]
    print(f"machine: {machine_description()}, {torch.get_num_threads()} torch threads, device {model.device}")
    if model.device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(model.device)}")
    print(
        f"model {model.name}, {len(table)} sources, batch {batch_size}, chunk {args.chunk_size}, workers {workers}"
    )

    network_table = table[: args.network_sources]
    inputs = prepare_inputs(
        read_images(field.images, model.bands),
        positions_from_table(network_table),
        model.bands,
        model.stamp_size,
    )
    usable = inputs.classifiable
    stamps, catalog = inputs.stamps[usable], inputs.catalog[usable]
    run_network(model, stamps[:batch_size], catalog[:batch_size], batch_size)  # warm-up
    options = {"weights": model, "batch_size": batch_size, "progress": False, "chunk_size": args.chunk_size}
    classify_sources(table[:batch_size], field.images, workers=workers, **options)  # warm-up

    # Alternate the two measurements and keep the best of each, so that a machine whose speed
    # drifts (shared or throttled cores) affects both alike.
    network_rate = end_to_end_rate = 0.0
    for _ in range(args.repeat):
        with Stopwatch(model.device) as watch:
            run_network(model, stamps, catalog, batch_size)
        network_rate = max(network_rate, usable.sum() / watch.seconds)
        end_to_end_rate = max(end_to_end_rate, _rate(table, field.images, workers=workers, **options))
    del inputs, stamps, catalog
    images_on_device = DeviceImages.fit(read_images(field.images, model.bands), model.device)
    print(f"network only:                   {network_rate:,.0f} sources/s")
    where = "stamps cut on the GPU" if images_on_device else "stamps cut on the CPU"
    print(f"end to end ({workers:2d} workers, {where}): {end_to_end_rate:,.0f} sources/s")
    result = {"network_rate": float(network_rate), "end_to_end_rate": float(end_to_end_rate)}
    if images_on_device:
        # As for images too large for the GPU: CPU threads cut the stamps into pinned memory.
        with patch.object(DeviceImages, "fit", staticmethod(lambda *args, **kwargs: False)):
            cpu_cut_rate = _rate(table, field.images, workers=workers, **options)
        print(f"end to end ({workers:2d} workers, stamps cut on the CPU): {cpu_cut_rate:,.0f} sources/s")
        result["cpu_cut_rate"] = float(cpu_cut_rate)
    if args.serial_sources:
        serial_rate = _rate(table[: args.serial_sources], field.images, workers=0, **options)
        print(f"end to end (workers=0, serial): {serial_rate:,.0f} sources/s")
        result["serial_rate"] = float(serial_rate)
    print(f"end-to-end time / network time: {network_rate / end_to_end_rate:.2f}")
    return result


def _rate(table, images, **options):
    with Stopwatch(options["weights"].device) as watch:
        classify_sources(table, images, **options)
    return len(table) / watch.seconds


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
