"""Throughput of `classify_tiles` on one and two dask workers, and the per-tile overhead.

Writes ``--tiles`` synthetic 7-band tiles (noise with a TAN WCS, FITS) with
``--sources`` random positions each, then times:

* local: `classify_sources` tile after tile in this process;
* dask with 1 and 2 worker processes (`~distributed.LocalCluster`, one thread
  each; dask limits each worker's BLAS/OpenMP threads to one), the cluster
  start and model loading excluded (a warm-up call loads the model once per
  worker);
* overhead: ``--tiny-tiles`` one-source tiles through dask against the same
  tiles classified locally, per tile.

Usage::

    PYTHONPATH=. python3 benchmarks/benchmark_dask.py [--tiles 4] [--sources 600] [--tiny-tiles 16] [--device cpu]
"""

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_memory import _checkout_weights, _field_wcs, write_field

from astro_stargal import classify_sources, load_model
from astro_stargal.distributed import classify_tiles

#: Side of each synthetic tile in pixels.
TILE_SIZE = 1024


def _tiles(directory, n_tiles, n_sources):
    wcs = _field_wcs(TILE_SIZE)
    tiles = {}
    for tile in range(n_tiles):
        paths = write_field(Path(directory) / f"tile{tile}", TILE_SIZE, seed=tile)
        rng = np.random.default_rng(100 + tile)
        sky = wcs.pixel_to_world(*rng.uniform(0, TILE_SIZE - 1, (2, n_sources)))
        tiles[f"tile{tile}"] = (Table({"ra": sky.ra.deg, "dec": sky.dec.deg}), paths)
    return tiles


def _local_seconds(tiles, model):
    started = time.perf_counter()
    for table, images in tiles.values():
        classify_sources(table, images, weights=model, progress=False)
    return time.perf_counter() - started


def _dask_seconds(tiles, client, weights, device):
    started = time.perf_counter()
    _, failures = classify_tiles(tiles, client=client, weights=weights, device=device, progress=False)
    assert not failures, failures
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--sources", type=int, default=600, help="sources per tile")
    parser.add_argument("--tiny-tiles", type=int, default=16, help="one-source tiles for the overhead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    warnings.simplefilter("ignore")
    weights = args.weights or _checkout_weights()
    model = load_model(weights, device=args.device)
    directory = tempfile.mkdtemp(prefix="astro_stargal_dask_")
    tiles = _tiles(directory, args.tiles, args.sources)
    first_table, first_images = next(iter(tiles.values()))
    tiny = {f"tiny{k}": (first_table[k : k + 1], first_images) for k in range(args.tiny_tiles)}
    n_sources = args.tiles * args.sources
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {args.device}; "
        f"{args.tiles} tiles x {args.sources} sources, model {model.name}"
    )

    _local_seconds(dict(list(tiny.items())[:2]), model)  # warm-up
    local = _local_seconds(tiles, model)
    tiny_local = _local_seconds(tiny, model)
    print(f"local (this process):  {n_sources / local:,.0f} sources/s")
    for n_workers in (1, 2):
        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            _dask_seconds(dict(list(tiny.items())[:n_workers]), client, weights, args.device)  # load models
            seconds = _dask_seconds(tiles, client, weights, args.device)
            print(f"dask, {n_workers} worker(s):   {n_sources / seconds:,.0f} sources/s")
            if n_workers == 1:
                tiny_dask = _dask_seconds(tiny, client, weights, args.device)
                overhead = (tiny_dask - tiny_local) / args.tiny_tiles
                print(
                    f"per-tile overhead (1 worker, {args.tiny_tiles} one-source tiles): {overhead * 1e3:,.0f} ms "
                    f"({tiny_dask / args.tiny_tiles * 1e3:,.0f} ms per tile via dask, "
                    f"{tiny_local / args.tiny_tiles * 1e3:,.0f} ms locally)"
                )


if __name__ == "__main__":
    main()
