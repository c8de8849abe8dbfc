"""The ``classify`` subcommand: add p_star, sg_class and sg_flags to a catalog."""

from ._common import output_options, parse_band_assignment, parse_zeropoint_assignment

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "classify",
        help="classify the sources of a catalog",
        description="Add p_star, sg_class and sg_flags to a catalog (any format astropy reads).",
    )
    parser.add_argument("catalog", help="input table (FITS, ECSV, VOTable, CSV, ...)")
    parser.add_argument(
        "--image",
        action="append",
        type=parse_band_assignment,
        required=True,
        metavar="BAND=PATH",
        help=(
            "image of one band (FITS path, optionally PATH[EXT]; without [EXT], the image whose "
            "FILTER/BAND/EXTNAME names the band); repeat for each band. Band names match the "
            "model's exactly, or ignoring case when that is unambiguous (R means r)"
        ),
    )
    parser.add_argument("-o", "--output", required=True, help="output table; format from the extension")
    parser.add_argument(
        "--format", help="astropy table format of input and output when not clear from the name"
    )
    parser.add_argument(
        "--model",
        "--weights",
        dest="weights",
        metavar="NAME_OR_PATH",
        help="model name (astro-stargal info lists them) or weights directory (default: the bundled model)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--threshold", type=float, default=0.5, help="p_star threshold for sg_class")
    parser.add_argument(
        "--zeropoint", action="append", type=parse_zeropoint_assignment, default=[], metavar="BAND=ZP"
    )
    parser.add_argument(
        "--ignore-header-bands",
        action="store_true",
        help="do not read band names from FITS headers (for mislabelled headers): a file gives its first image",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file and existing columns"
    )
    parser.set_defaults(run=run)


def run(args):
    from astropy.io.registry import IORegistryError
    from astropy.table import Table

    from ..classify import classify_sources

    images = dict(args.image)
    if len(images) != len(args.image):
        msg = f"a band is given twice in --image: {[band for band, _ in args.image]}"
        raise ValueError(msg)
    zeropoints = dict(args.zeropoint)
    if len(zeropoints) != len(args.zeropoint):
        msg = f"a band is given twice in --zeropoint: {[band for band, _ in args.zeropoint]}"
        raise ValueError(msg)
    write_options = output_options(args)
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
        header_bands=not args.ignore_header_bands,
        overwrite=args.overwrite,
    )
    result.write(args.output, overwrite=args.overwrite, **write_options)
    n_stars = int((result["sg_class"] == "star").sum())
    print(f"classified {len(result)} sources ({n_stars} stars) -> {args.output}")
