"""The ``astro-stargal`` command line (also ``python -m astro_stargal``).

Each subcommand has one function that declares its arguments and one that runs
it; the heavy modules are imported only when their subcommand runs.
"""

import argparse
import sys
from pathlib import Path

__all__ = ["main"]

#: Output extensions that astropy does not recognise by itself when writing.
WRITE_FORMATS = {".vot": "votable", ".votable": "votable", ".xml": "votable"}


def main(argv=None):
    """Run the ``astro-stargal`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on a user error (message printed to stderr).

    Examples
    --------
    >>> main(["info"])  # doctest: +SKIP
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"astro-stargal {args.command}: error: {error}", file=sys.stderr)
        return 2


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="astro-stargal",
        description="Star-galaxy classification for multi-band survey images and catalogs.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _add_classify,
        _add_classify_tiles,
        _add_demo,
        _add_evaluate,
        _add_info,
        _add_simulate,
        _add_train,
    ):
        add(subparsers)
    return parser


def _parse_band_assignment(text):
    band, separator, path = text.partition("=")
    if not separator or not band or not path:
        msg = f"--image expects BAND=PATH (e.g. r=r.fits), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return band, path


def _add_classify(subparsers):
    parser = subparsers.add_parser(
        "classify",
        help="classify the sources of a catalog",
        description="Add p_star, sg_class and sg_flags to a catalog (any format astropy reads).",
    )
    parser.add_argument("catalog", help="input table (FITS, ECSV, VOTable, CSV, ...)")
    parser.add_argument(
        "--image",
        action="append",
        type=_parse_band_assignment,
        required=True,
        metavar="BAND=PATH",
        help="image of one band (FITS path, optionally PATH[EXT]); repeat for each band",
    )
    parser.add_argument("-o", "--output", required=True, help="output table; format from the extension")
    parser.add_argument(
        "--format", help="astropy table format of input and output when not clear from the name"
    )
    parser.add_argument("--weights", help="model name or weights directory (default: the bundled model)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--threshold", type=float, default=0.5, help="p_star threshold for sg_class")
    parser.add_argument(
        "--zeropoint", action="append", type=_parse_band_assignment, default=[], metavar="BAND=ZP"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file and existing columns"
    )
    parser.set_defaults(run=_run_classify)


def _output_options(args):
    """Check the output before any work: it must not exist (unless --overwrite) and have a known format."""
    from astropy.io import registry
    from astropy.table import Table

    if not Path(args.output).resolve().parent.is_dir():
        msg = f"the folder of output {args.output!r} does not exist"
        raise FileNotFoundError(msg)
    if Path(args.output).exists() and not args.overwrite:
        msg = f"output file {args.output!r} already exists; pass --overwrite to replace it"
        raise ValueError(msg)
    output_format = args.format or WRITE_FORMATS.get(Path(args.output).suffix.lower())
    if output_format is None and not registry.identify_format("write", Table, args.output, None, [], {}):
        msg = f"cannot tell the table format of output {args.output!r} from its name; use .fits, .ecsv, .vot or pass --format"
        raise ValueError(msg)
    return {"format": output_format} if output_format else {}


def _run_classify(args):
    from astropy.io.registry import IORegistryError
    from astropy.table import Table

    from .classify import classify_sources

    images = dict(args.image)
    if len(images) != len(args.image):
        msg = f"a band is given twice in --image: {[band for band, _ in args.image]}"
        raise ValueError(msg)
    zeropoints = {band: float(value) for band, value in args.zeropoint}
    write_options = _output_options(args)
    read_options = {"format": args.format} if args.format else {}
    try:
        table = Table.read(args.catalog, **read_options)
    except IORegistryError as error:
        msg = f"cannot tell the table format of {args.catalog!r} from its name or contents; pass --format"
        raise ValueError(msg) from error
    result = classify_sources(
        table,
        images,
        weights=args.weights,
        device=args.device,
        batch_size=args.batch_size,
        threshold=args.threshold,
        zeropoints=zeropoints,
        overwrite=args.overwrite,
    )
    result.write(args.output, overwrite=args.overwrite, **write_options)
    n_stars = int((result["sg_class"] == "star").sum())
    print(f"classified {len(result)} sources ({n_stars} stars) -> {args.output}")


def _add_classify_tiles(subparsers):
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
    parser.add_argument("--weights", help="model name or weights directory (default: the bundled model)")
    parser.add_argument("--device", help="device on each worker (default: the best it has)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--threshold", type=float, default=0.5, help="p_star threshold for sg_class")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file and existing columns"
    )
    parser.set_defaults(run=_run_classify_tiles)


def _run_classify_tiles(args):
    from astropy.table import Table

    from .distributed import classify_tiles

    bands = [band.strip() for band in args.bands.split(",") if band.strip()]
    if not bands:
        msg = f"--bands names no band: {args.bands!r}"
        raise ValueError(msg)
    write_options = _output_options(args)
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


def _add_demo(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="classify the bundled example field",
        description="Classify the small simulated CSST field shipped with the package and write "
        "the classified table and a PNG figure.",
    )
    parser.add_argument("-o", "--output-dir", default="astro_stargal_demo", help="where to write the results")
    parser.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    parser.set_defaults(run=_run_demo)


def _run_demo(args):
    from .demo import run_demo

    table_path, figure_path, summary = run_demo(Path(args.output_dir), device=args.device)
    print(summary)
    print(f"wrote {table_path} and {figure_path}")


def _add_evaluate(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="purity, completeness, ROC and calibration of a classified table with truth",
        description="Compare p_star of a classified table with a truth column; print the tables and, "
        "with --output-dir, write them (ECSV) and the figures (PNG, needs matplotlib).",
    )
    parser.add_argument("table", help="classified table with p_star and a truth column")
    parser.add_argument("--truth-column", default="label", help="'star'/'galaxy' strings, or 1 = star")
    parser.add_argument("--mag-column", help="magnitude column for the per-bin rates (e.g. mag_r)")
    parser.add_argument(
        "--bins", type=float, nargs="+", metavar="EDGE", help="magnitude bin edges, or one number of bins"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="p_star threshold for calling a star")
    parser.add_argument("--star-purity", type=float, help="find the p_star threshold reaching this purity")
    parser.add_argument("--galaxy-purity", type=float, help="find the threshold reaching this galaxy purity")
    parser.add_argument("--format", help="astropy table format when not clear from the name")
    parser.add_argument("-o", "--output-dir", help="write the tables and figures here")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args):
    from .evaluate import cli_evaluate

    return cli_evaluate(args)


def _add_info(subparsers):
    parser = subparsers.add_parser("info", help="installed models, their bands, and the compute device")
    parser.set_defaults(run=_run_info)


def _run_info(args):
    import torch

    from . import __version__
    from .weights import list_models, resolve_device

    print(f"astro_stargal {__version__}, torch {torch.__version__}")
    print(f"default device: {resolve_device()}")
    models = list_models()
    if len(models) == 0:
        print("no models installed")
    for row in models:
        state = "ok" if row["available"] else "unavailable"
        print(
            f"model {row['name']} [{state}]: bands {row['bands']}, stamp {row['stamp_size']} px, {row['path']}"
        )


def _add_simulate(subparsers):
    parser = subparsers.add_parser(
        "simulate",
        help="render CSST-like multi-band fields with a truth table (needs GalSim)",
        description="Write OUTDIR/{band}.fits (or OUTDIR/tile{k}_{band}.fits) and OUTDIR/truth.ecsv.",
    )
    parser.add_argument("outdir")
    parser.add_argument("--size", type=int, default=2048, help="field side in pixels")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tiles", type=int, default=1)
    parser.add_argument("--n-jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--star-density", type=float, help="stars per arcmin^2")
    parser.add_argument("--galaxy-density", type=float, help="galaxies per arcmin^2")
    parser.add_argument(
        "--variation",
        action="store_true",
        help="randomise PSF, profiles, sky, stellar spectra and reddening per tile",
    )
    parser.set_defaults(run=_run_simulate)


def _run_simulate(args):
    from .simulate import cli_simulate

    return cli_simulate(args)


def _add_train(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune the classifier on labelled fields",
        description="Train on simulator output directories (truth.ecsv + FITS per band) and write "
        "OUTPUT/weights, which --weights accepts. Fine-tunes the bundled model by default.",
    )
    parser.add_argument("sources", nargs="+", help="simulator output directories")
    parser.add_argument(
        "-o", "--output-dir", required=True, help="checkpoint, history, learning curve and weights/"
    )
    parser.add_argument(
        "--init", default="bundled", help="'bundled' (fine-tune), 'random', or a weights directory"
    )
    parser.add_argument("--backbone", default="resnet50", choices=("resnet50", "resnet18"))
    parser.add_argument("--branches", default="image,catalog", help="image,catalog (fused) or one branch")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--band-dropout", type=float, default=0.15)
    parser.add_argument("--no-augment", action="store_true", help="no rotations, flips or extra noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device")
    parser.add_argument("--n-jobs", type=int, default=1, help="processes preparing the training set")
    parser.add_argument("--max-minutes", type=float, help="wall-clock budget; the schedule is fitted to it")
    parser.add_argument("--name", help="model name written in the metadata")
    parser.set_defaults(run=_run_train)


def _run_train(args):
    from .train import train

    weights_dir = train(
        list(args.sources),
        args.output_dir,
        init=args.init,
        backbone=args.backbone,
        branches=tuple(args.branches.split(",")),
        label_column=args.label_column,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        band_dropout=args.band_dropout,
        augment=not args.no_augment,
        seed=args.seed,
        device=args.device,
        n_jobs=args.n_jobs,
        max_minutes=args.max_minutes,
        name=args.name,
        progress=True,
    )
    print(f"weights written to {weights_dir}")
