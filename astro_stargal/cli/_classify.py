"""The ``classify`` subcommand: add p_star, sg_class and sg_flags to a catalog."""

import argparse

from ._common import (
    CLASSIFY_OPTIONS,
    non_negative_integer,
    output_options,
    parse_band_assignment,
    parse_position_columns,
    parse_psf_assignment,
    parse_zeropoint_assignment,
    positive_integer,
    threshold_value,
)

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
    parser.add_argument(
        "--threshold", type=threshold_value, default=0.5, help="p_star threshold for sg_class (default 0.5)"
    )
    parser.add_argument(
        "--position-columns",
        type=parse_position_columns,
        metavar="RA,DEC",
        help="the position columns, when they cannot be found by name: RA,DEC (degrees), X,Y "
        "(0-based pixels), or one SkyCoord column",
    )
    parser.add_argument(
        "--zeropoint",
        action="append",
        type=parse_zeropoint_assignment,
        default=[],
        metavar="BAND=ZP",
        help="AB zero point of a band (the magnitude of a total flux of one image unit), overriding the FITS "
        "header (MAGZERO, MAGZPT, PHOTZP, ...); repeat for each band",
    )
    parser.add_argument(
        "--ignore-header-bands",
        action="store_true",
        help="do not read band names from FITS headers (for mislabelled headers): a file gives its first image",
    )
    parser.add_argument(
        "--psf",
        action="append",
        type=parse_psf_assignment,
        default=[],
        metavar="BAND=PATH",
        help="a band's PSF: a PSFEx model (.psf) or a FITS PSF image (file.fits[ext] for one extension); "
        "repeat for each band. Bands without one have their PSF measured from the catalog's isolated stars",
    )
    parser.add_argument(
        "--no-recentre",
        dest="recentre",
        action="store_false",
        help="cut the stamps at the catalog positions instead of at the centroid of each source's light",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file and existing columns"
    )
    speed = parser.add_argument_group("speed and memory")
    speed.add_argument(
        "--batch-size",
        type=positive_integer,
        help="sources per network call (default 8192 on a GPU, 256 on a CPU)",
    )
    speed.add_argument(
        "--chunk-size",
        type=positive_integer,
        help="sources prepared at a time; bounds memory (default 2048)",
    )
    speed.add_argument(
        "--workers",
        type=non_negative_integer,
        help="threads preparing stamps while the network runs (default: every core up to 16 on a "
        "GPU, 1 on a CPU; 0: none)",
    )
    speed.add_argument(
        "--threads",
        type=positive_integer,
        help="PyTorch threads running the network (default on a CPU: the cores other work leaves "
        "free, at most OMP_NUM_THREADS if set)",
    )
    speed.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar (default: when the run is expected to take more than a few seconds)",
    )
    parser.set_defaults(run=run, python_options=CLASSIFY_OPTIONS)


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
    psfs = dict(args.psf)
    if len(psfs) != len(args.psf):
        msg = f"a band is given twice in --psf: {[band for band, _ in args.psf]}"
        raise ValueError(msg)
    write_options = output_options(args)
    read_options = {"format": args.format} if args.format else {}
    try:
        table = Table.read(args.catalog, **read_options)
    except IORegistryError as error:
        msg = f"cannot tell the table format of {args.catalog!r} from its name or contents; pass --format"
        raise ValueError(msg) from error
    # Options left out keep classify_sources' own defaults, so that they live in one place.
    speed = {
        name: getattr(args, name)
        for name in ("batch_size", "chunk_size", "workers", "threads", "progress")
        if getattr(args, name) is not None
    }
    result = classify_sources(
        table,
        images,
        weights=args.weights,
        device=args.device,
        threshold=args.threshold,
        position_columns=args.position_columns,
        zeropoints=zeropoints,
        header_bands=not args.ignore_header_bands,
        psf=psfs or None,
        recentre=args.recentre,
        overwrite=args.overwrite,
        **speed,
    )
    result.write(args.output, overwrite=args.overwrite, **write_options)
    n_stars = int((result["sg_class"] == "star").sum())
    print(f"classified {len(result)} sources ({n_stars} stars) -> {args.output}")
