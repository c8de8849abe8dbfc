"""The ``simulate`` subcommand: CSST-like fields with a truth table."""

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "simulate",
        help="render CSST-like multi-band fields with a truth table (needs GalSim)",
        description="Write OUTDIR/{band}.fits (or OUTDIR/tile{k}_{band}.fits) and OUTDIR/truth.ecsv; "
        "with --realism also the weight, PSF and defect maps beside each image.",
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
        help="randomise PSF, profiles, sky, stellar spectra and reddening per tile "
        "(with --realism, also every realism option not given)",
    )
    parser.add_argument(
        "--realism",
        action="store_true",
        help="skies like real co-adds: aberrated PSF varying over the tile, dithered resampled "
        "exposures, defects, more source populations; writes {band}.weight/.psf/.defects.fits too",
    )
    parser.add_argument(
        "--psf-fwhm",
        type=float,
        metavar="ARCSEC",
        help="r-band FWHM of the aberrated PSF at the tile centre (implies --realism)",
    )
    parser.set_defaults(run=run)


def run(args):
    import numpy as np

    from ..simulate import AberratedPSF, Realism, simulate_tiles

    optional = {
        key: getattr(args, key)
        for key in ("star_density", "galaxy_density")
        if getattr(args, key, None) is not None
    }
    psf_fwhm = getattr(args, "psf_fwhm", None)
    if psf_fwhm is not None:
        optional["realism"] = Realism(psf=AberratedPSF(r_fwhm=psf_fwhm))
    elif getattr(args, "realism", False):
        optional["realism"] = Realism()
    truth = simulate_tiles(
        args.outdir,
        args.tiles or 1,
        size=args.size,
        seed=args.seed,
        n_jobs=args.n_jobs or 1,
        variation=bool(args.variation),
        overwrite=bool(getattr(args, "overwrite", False)),
        **optional,
    )
    n_stars = int(np.sum(truth["label"] == "star"))
    print(f"wrote {len(truth)} sources ({n_stars} stars) to {args.outdir}")
    return 0
