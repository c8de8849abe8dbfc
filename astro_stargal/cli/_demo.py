"""The ``demo`` subcommand: classify the bundled example field, or write it out as files to start from."""

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="classify the bundled example field, or write its files (--write-data)",
        description="Classify the small simulated CSST field shipped with the package and write "
        "the classified table and a PNG figure. With --write-data, write the field instead as the "
        "files a survey gives (one FITS image per band and a source table), on which the examples "
        "of the README run.",
    )
    parser.add_argument("-o", "--output-dir", default="astro_stargal_demo", help="where to write the results")
    parser.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    parser.add_argument(
        "--write-data",
        metavar="DIR",
        help="write DIR/sources.ecsv and DIR/NUV.fits ... DIR/y.fits, and classify nothing",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace files that --write-data finds")
    parser.set_defaults(run=run, python_options={"overwrite=True": "--overwrite"})


def run(args):
    if args.write_data is not None:
        return _write_data(Path(args.write_data), overwrite=args.overwrite)

    from ..demo import run_demo

    table_path, figure_path, summary = run_demo(Path(args.output_dir), device=args.device)
    print(summary)
    print(f"wrote {table_path} and {figure_path}")
    return 0


def _write_data(directory, *, overwrite):
    from ..demo import write_demo_files

    sources_path, image_paths = write_demo_files(directory, overwrite=overwrite)
    images = " ".join(f"--image {band}={path}" for band, path in image_paths.items())
    psfs = " ".join(f"--psf {band}={path.with_suffix('.psf.fits')}" for band, path in image_paths.items())
    print(
        f"wrote {sources_path}, the images {', '.join(str(path) for path in image_paths.values())} "
        "and their PSFs (NUV.psf.fits ...)"
    )
    print(f"classify them with:\n  astro-stargal classify {sources_path} {images} {psfs} -o classified.ecsv")
    return 0
