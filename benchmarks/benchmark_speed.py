"""Throughput of `classify_sources` end to end versus the network alone.

Renders one CSST-like field (or reads a simulator directory), then times:

* network only: `astro_stargal.inference.run_network` on already prepared inputs;
* end to end: `classify_sources` on the truth table and the FITS files
  (position transforms, cutouts, features, network, output table).

Prints sources per second for both and their ratio (the goal is end to end
within 1.3x of the network alone). State the machine with the figures.

Usage::

    python benchmarks/benchmark_speed.py [--sky-dir DIR] [--size 2048] [--device cpu] [--weights DIR] [--repeat N]
"""

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from astropy.table import vstack

from astro_stargal import classify_sources, load_model
from astro_stargal.images import read_images
from astro_stargal.inference import default_batch_size, run_network
from astro_stargal.inputs import prepare_inputs
from astro_stargal.positions import positions_from_table
from astro_stargal.train import labelled_fields


def _fields(args):
    if args.sky_dir:
        return labelled_fields(Path(args.sky_dir))
    from astro_stargal.simulate import write_field

    directory = Path(tempfile.mkdtemp()) / "bench_sky"
    write_field(directory, args.size, seed=4242)
    return labelled_fields(directory)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sky-dir", help="simulator output directory (default: render one field)")
    parser.add_argument("--size", type=int, default=1024, help="field side when rendering")
    parser.add_argument("--device")
    parser.add_argument("--weights")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--repeat", type=int, default=3, help="tables are stacked this many times")
    args = parser.parse_args(argv)

    model = load_model(args.weights, device=args.device)
    batch_size = args.batch_size or default_batch_size(model.device)
    fields = _fields(args)
    field = fields[0]
    table = vstack([field.table] * args.repeat)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, device {model.device}"
    )
    if model.device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(model.device)}")
    print(f"model {model.name}, {len(table)} sources, batch {batch_size}")

    inputs = prepare_inputs(
        read_images(field.images, model.bands), positions_from_table(table), model.bands, model.stamp_size
    )
    usable = inputs.classifiable
    stamps, catalog = inputs.stamps[usable], inputs.catalog[usable]
    run_network(model, stamps[:batch_size], catalog[:batch_size], batch_size)  # warm-up
    _synchronise(model.device)
    started = time.perf_counter()
    run_network(model, stamps, catalog, batch_size)
    _synchronise(model.device)
    network_seconds = time.perf_counter() - started

    classify_sources(table[:batch_size], field.images, weights=model, batch_size=batch_size, progress=False)
    started = time.perf_counter()
    classify_sources(table, field.images, weights=model, batch_size=batch_size, progress=False)
    _synchronise(model.device)
    end_to_end_seconds = time.perf_counter() - started

    network_rate = usable.sum() / network_seconds
    end_to_end_rate = len(table) / end_to_end_seconds
    print(f"network only: {network_rate:,.0f} sources/s")
    print(f"end to end:   {end_to_end_rate:,.0f} sources/s")
    print(f"end-to-end time / network time: {network_rate / end_to_end_rate:.2f}")
    return {"network_rate": float(network_rate), "end_to_end_rate": float(end_to_end_rate)}


def _synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
