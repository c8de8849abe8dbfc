"""Render a CSST-like field and check it against the CSST public instrument figures.

Prints, per band, the measured 5-sigma point-source depth against the CSST
table, the measured star FWHM, and the median aperture-photometry offset of
isolated bright stars (after the PSF aperture correction), then the rendering
speed in sources per second.

Usage::

    python -m benchmarks.check_simulator [--size 1024] [--seed 1] [--star-density 300] [--variation]
"""

import argparse

from astro_stargal.simulate import simulate_field, validate_field

from .common import Stopwatch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--star-density", type=float, default=300.0)
    parser.add_argument("--variation", action="store_true")
    args = parser.parse_args(argv)

    with Stopwatch() as watch:
        images, truth = simulate_field(
            args.size, seed=args.seed, star_density=args.star_density, variation=args.variation
        )
    report = validate_field(images, truth, seed=args.seed)
    report["depth_offset"] = report["depth"] - report["depth_table"]
    for name in ("depth", "depth_table", "depth_offset", "photometry_offset"):
        report[name].format = ".3f"
    report["star_fwhm"].format = ".4f"
    report.pprint_all()
    print(
        f"{len(truth)} sources x {len(images)} bands in {watch.seconds:.1f} s: "
        f"{len(truth) / watch.seconds:.1f} sources/s (all bands), "
        f"{len(truth) * len(images) / watch.seconds:.0f} source-band draws/s"
    )
    within = abs(report["depth_offset"]) < 0.3
    print(f"depth within 0.3 mag of the table: {int(within.sum())}/{len(report)} bands")


if __name__ == "__main__":
    main()
