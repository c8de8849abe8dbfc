"""The ``demo`` subcommand: classify the bundled example field."""

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="classify the bundled example field",
        description="Classify the small simulated CSST field shipped with the package and write "
        "the classified table and a PNG figure.",
    )
    parser.add_argument("-o", "--output-dir", default="astro_stargal_demo", help="where to write the results")
    parser.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    parser.set_defaults(run=run)


def run(args):
    from ..demo import run_demo

    table_path, figure_path, summary = run_demo(Path(args.output_dir), device=args.device)
    print(summary)
    print(f"wrote {table_path} and {figure_path}")
