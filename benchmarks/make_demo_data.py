"""Regenerate the bundled demo field (astro_stargal/data/demo_field.fits, demo_truth.ecsv)."""

from astro_stargal.simulate import make_demo_data

if __name__ == "__main__":
    for path in make_demo_data():
        print(f"wrote {path}")
