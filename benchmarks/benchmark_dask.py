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

    python -m benchmarks.benchmark_dask [--tiles 4] [--sources 600] [--tiny-tiles 16] [--device cpu]

Needs dask's ``distributed`` (the ``distributed`` extra of astro_stargal).
"""

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

from astro_stargal import classify_sources, load_model
from astro_stargal.distributed import classify_tiles

from .common import (
    Stopwatch,
    field_wcs,
    machine_description,
    model_weights,
    random_positions,
    require_module,
    write_noise_field,
)

#: Side of each synthetic tile in pixels.
TILE_SIZE = 1024


def _tiles(directory, n_tiles, n_sources):
    wcs = field_wcs(TILE_SIZE)
    tiles = {}
    for tile in range(n_tiles):
        paths = write_noise_field(Path(directory) / f"tile{tile}", TILE_SIZE, seed=tile)
        table = random_positions(wcs, TILE_SIZE, n_sources, np.random.default_rng(100 + tile))
        tiles[f"tile{tile}"] = (table, paths)
    return tiles


def _local_seconds(tiles, model):
    with Stopwatch() as watch:
        for table, images in tiles.values():
            classify_sources(table, images, weights=model, progress=False)
    return watch.seconds


def _dask_seconds(tiles, client, weights, device):
    with Stopwatch() as watch:
        _, failures = classify_tiles(tiles, client=client, weights=weights, device=device, progress=False)
    assert not failures, failures
    return watch.seconds


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
    distributed = require_module(
        "distributed", "pip install 'dask[distributed]', or astro_stargal[distributed]"
    )

    warnings.simplefilter("ignore")
    weights = model_weights(args.weights)
    model = load_model(weights, device=args.device)
    directory = tempfile.mkdtemp(prefix="astro_stargal_dask_")
    tiles = _tiles(directory, args.tiles, args.sources)
    first_table, first_images = next(iter(tiles.values()))
    tiny = {f"tiny{k}": (first_table[k : k + 1], first_images) for k in range(args.tiny_tiles)}
    n_sources = args.tiles * args.sources
    print(
        f"machine: {machine_description()}, device {args.device}; "
        f"{args.tiles} tiles x {args.sources} sources, model {model.name}"
    )

    _local_seconds(dict(list(tiny.items())[:2]), model)  # warm-up
    local = _local_seconds(tiles, model)
    tiny_local = _local_seconds(tiny, model)
    print(f"local (this process):  {n_sources / local:,.0f} sources/s")
    for n_workers in (1, 2):
        with (
            distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster) as client,
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
