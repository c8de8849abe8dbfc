"""The ``evaluate`` subcommand: purity, completeness, ROC and calibration against truth."""

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
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
    parser.set_defaults(run=run, python_options=EVALUATE_OPTIONS)


#: How ``evaluate`` spells the keywords of `~astro_stargal.evaluation.evaluate`.
EVALUATE_OPTIONS = {
    "truth_column": "--truth-column",
    "mag_column": "--mag-column",
    "bins": "--bins",
    "threshold": "--threshold",
    "star_purity": "--star-purity",
    "galaxy_purity": "--galaxy-purity",
}


def run(args):
    from astropy.table import Table

    from ..evaluation import evaluate, save_evaluation_figures

    read_options = {"format": args.format} if getattr(args, "format", None) else {}
    table = Table.read(args.table, **read_options)
    bins = args.bins
    if bins is not None and len(bins) == 1:
        bins = int(bins[0]) if float(bins[0]).is_integer() else bins
    results = evaluate(
        table,
        truth_column=args.truth_column,
        mag_column=args.mag_column,
        bins=bins,
        threshold=args.threshold,
        star_purity=args.star_purity,
        galaxy_purity=args.galaxy_purity,
    )
    for name, result in results.items():
        if name == "roc":
            continue
        # The Wilson bounds stay in the written tables; the terminal shows the rates.
        bounds = [column for column in result.colnames if column.endswith(("_lower", "_upper"))]
        printed = result.copy()
        printed.remove_columns(bounds)
        for column in printed.itercols():
            if column.dtype.kind == "f":
                column.info.format = ".4g"
        print(f"\n== {name} ==")
        printed.pprint(max_lines=-1, max_width=-1)
    if args.output_dir is None:
        return 0
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        result.meta["EVTABLE"] = str(Path(args.table).resolve())
        result.write(output_dir / f"{name}.ecsv", overwrite=True)
    paths = save_evaluation_figures(
        table, output_dir, truth_column=args.truth_column, mag_column=args.mag_column, results=results
    )
    print(f"\nwrote {len(results)} tables and {len(paths)} figures to {output_dir}")
    return 0
