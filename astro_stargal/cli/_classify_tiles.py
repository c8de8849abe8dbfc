"""The ``classify-tiles`` subcommand: a tiled catalog on a dask cluster."""

import sys

from ._common import CLASSIFY_OPTIONS, output_options, positive_integer, threshold_value

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "classify-tiles",
        help="classify a tiled catalog on a dask cluster (needs astro_stargal[distributed])",
        description="Classify one big catalog whose rows name their tile, one dask task per tile; "
        "rows come back in their original order. Exit status 1 if a tile failed (its rows get NaN "
        "p_star and the TILE_FAILED flag; the output is still written).",
    )
    parser.add_argument("--tiles-table", required=True, help="the catalog (FITS, ECSV, VOTable, ...)")
    parser.add_argument("--tile-column", default="tile", help="column naming each row's tile")
    parser.add_argument(
        "--images",
        required=True,
        metavar="PATTERN",
        help='image path pattern with {tile} and {band}, e.g. "tile{tile}_{band}.fits"',
    )
    parser.add_argument("--bands", required=True, help="comma-separated bands, e.g. g,r,i")
    parser.add_argument("-o", "--output", required=True, help="output table; format from the extension")
    parser.add_argument("--format", help="astropy table format when not clear from the name")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler (default: a local cluster)")
    parser.add_argument("--n-workers", type=int, help="workers of the local cluster")
    parser.add_argument("--retries", type=int, default=1, help="tries again for a failing tile")
    parser.add_argument(
        "--model",
        "--weights",
        dest="weights",
        metavar="NAME_OR_PATH",
        help="model name (astro-stargal info lists them) or weights directory (default: the bundled model)",
    )
    parser.add_argument("--device", help="device on each worker (default: the best it has)")
    parser.add_argument(
        "--batch-size",
        type=positive_integer,
        help="sources per network call on each worker (default 8192 on a GPU, 256 on a CPU)",
    )
    parser.add_argument(
        "--threshold", type=threshold_value, default=0.5, help="p_star threshold for sg_class (default 0.5)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file and existing columns"
    )
    parser.set_defaults(run=run, python_options=TILES_OPTIONS)


#: How ``classify-tiles`` spells the keywords of `~astro_stargal.distributed.classify_tiles`.
TILES_OPTIONS = {
    **{keyword: option for keyword, option in CLASSIFY_OPTIONS.items() if keyword != "zeropoints"},
    "tile_column": "--tile-column",
    "n_workers": "--n-workers",
    "retries": "--retries",
}


def run(args):
    from astropy.table import Table

    from ..distributed import classify_tiles

    bands = [band.strip() for band in args.bands.split(",") if band.strip()]
    if not bands:
        msg = f"--bands names no band: {args.bands!r}"
        raise ValueError(msg)
    write_options = output_options(args)
    table = Table.read(args.tiles_table, **({"format": args.format} if args.format else {}))
    if args.tile_column not in table.colnames:
        msg = (
            f"tile column {args.tile_column!r} not in {args.tiles_table!r}; its columns are {table.colnames}"
        )
        raise ValueError(msg)
    try:
        tile_images = {
            tile.item(): {band: args.images.format(tile=tile.item(), band=band) for band in bands}
            for tile in sorted(set(table[args.tile_column]))
        }
    except (KeyError, IndexError) as error:
        msg = f"--images {args.images!r} may use only {{tile}} and {{band}} ({error!r})"
        raise ValueError(msg) from error
    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    try:
        result, failures = classify_tiles(
            (table, tile_images),
            client=client,
            tile_column=args.tile_column,
            n_workers=args.n_workers,
            retries=args.retries,
            weights=args.weights,
            device=args.device,
            batch_size=args.batch_size,
            threshold=args.threshold,
            overwrite=args.overwrite,
        )
    finally:
        if client is not None:
            client.close()
    result.write(args.output, overwrite=args.overwrite, **write_options)
    n_stars = int((result["sg_class"] == "star").sum())
    print(f"classified {len(result)} sources in {len(tile_images)} tiles ({n_stars} stars) -> {args.output}")
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0
