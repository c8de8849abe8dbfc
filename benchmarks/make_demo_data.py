"""Regenerate the bundled demo field (astro_stargal/data/demo_field.fits, demo_truth.ecsv).

Usage::

    python -m benchmarks.make_demo_data [--output-dir DIR]
"""

import argparse

from astro_stargal.simulate import make_demo_data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", help="write the files here instead of astro_stargal/data")
    args = parser.parse_args(argv)
    for path in make_demo_data(args.output_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
