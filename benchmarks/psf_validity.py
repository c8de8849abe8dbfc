"""The PSF validity range of a model trained on the simulator's varied fields, measured, written to its metadata.

A model is only valid for PSFs like those it was trained on. For a model
trained with `astro_stargal.train` the range is recorded from the training
fields themselves; this script measures it for a model trained on fields of
the simulator's ``variation=True`` distribution without that record (the
bundled ``csst-resnet50-bilstm``):

1. the true effective PSF (optics, jitter and pixel) of ``--draws`` random
   field conditions, per band: FWHM with `astro_stargal.psf.psf_fwhm`;
2. ``--tiles`` fields of that distribution, simulated, whose PSF is measured
   the way `astro_stargal.classify_sources` measures it
   (`astro_stargal.psf.measure_psf`), giving the measurement's own spread
   (measured over true FWHM) and the ellipticity it reads on round PSFs;
3. the range: the true FWHM range widened by the measurement's spread, and
   the largest measured ellipticity plus `ELLIPTICITY_MARGIN`, per band; the reference FWHM is the
   median true FWHM.

``--write`` puts ``validity`` and ``reference_psf_fwhm`` into the model's
``model.json`` (its tensors, and so its SHA-256, are untouched). About 10
minutes on the 2-core CPU with the defaults.

Example::

    python -m benchmarks.psf_validity --write weights/
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from astro_stargal.exceptions import StarGalaxyWarning
from astro_stargal.instrument import PIXEL_SCALE, band_order
from astro_stargal.io import read_images
from astro_stargal.models import METADATA_FILE
from astro_stargal.psf import measure_psf, psf_fwhm
from astro_stargal.simulate import (
    FieldConditions,
    build_band_psf,
    draw_field_conditions,
    import_galsim,
    make_gsparams,
    simulate_field,
)

from .common import RESULTS_DIR, machine_description, write_json

#: Added to the largest ellipticity measured on the (round) training PSFs.
ELLIPTICITY_MARGIN = 0.01

#: Samples per pixel at which the true PSF is drawn.
OVERSAMPLING = 8


def true_fwhm(conditions, band, galsim, gsparams):
    """FWHM (arcsec) of a band's true effective PSF under ``conditions``."""
    effective = build_band_psf(galsim, band, conditions, gsparams).effective
    image = effective.drawImage(nx=128, ny=128, scale=PIXEL_SCALE / OVERSAMPLING, method="no_pixel").array
    return psf_fwhm(image, OVERSAMPLING) * PIXEL_SCALE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300, help="random field conditions for the true range")
    parser.add_argument("--tiles", type=int, default=6, help="simulated fields whose PSF is measured")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--write", metavar="WEIGHTS_DIR", help="write the range into this model.json")
    args = parser.parse_args(argv)
    galsim = import_galsim()
    gsparams = make_gsparams(galsim)
    bands = band_order()
    rng = np.random.default_rng(args.seed)
    truth = {band: [] for band in bands}
    for _ in range(args.draws):
        conditions = draw_field_conditions(rng, True)
        for band in bands:
            truth[band].append(true_fwhm(conditions, band, galsim, gsparams))
    ratios = {band: [] for band in bands}
    ellipticity = {band: [] for band in bands}
    for tile in range(args.tiles):
        images, table = simulate_field(args.size, seed=args.seed + 1 + tile, variation=True)
        drawn = table.meta["field_conditions"]
        conditions = FieldConditions(
            **{key: tuple(v) if isinstance(v, list) else v for key, v in drawn.items()}
        )
        band_images = read_images(dict(images), bands)
        x, y = np.asarray(table["x"]), np.asarray(table["y"])
        for band, image in band_images.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StarGalaxyWarning)
                psf = measure_psf(image.data, x, y, noise=image.noise, saturation=image.saturation)
            ratios[band].append(
                float(np.median(psf.fwhm)) * PIXEL_SCALE / true_fwhm(conditions, band, galsim, gsparams)
            )
            ellipticity[band].append(float(np.nanmax(psf.ellipticity)))
        print(
            f"tile {tile}: measured / true FWHM " + ", ".join(f"{b} {ratios[b][-1]:.3f}" for b in bands),
            flush=True,
        )
    validity = {"psf_fwhm": {}, "psf_ellipticity_max": {}}
    reference = {}
    for band in bands:
        low, high = min(ratios[band]), max(ratios[band])
        validity["psf_fwhm"][band] = [
            round(min(truth[band]) * min(low, 1.0), 4),
            round(max(truth[band]) * max(high, 1.0), 4),
        ]
        # Measured ellipticities of round PSFs scatter with the stars behind them: a margin of 0.01.
        validity["psf_ellipticity_max"][band] = round(max(ellipticity[band]) + ELLIPTICITY_MARGIN, 4)
        reference[band] = round(float(np.median(truth[band])), 4)
    results = {
        "machine": machine_description(),
        "draws": args.draws,
        "tiles": args.tiles,
        "true_fwhm_range": {band: [min(v), max(v)] for band, v in truth.items()},
        "measured_over_true": ratios,
        "measured_ellipticity": ellipticity,
        "validity": validity,
        "reference_psf_fwhm": reference,
    }
    write_json(RESULTS_DIR / "psf_validity_bundled.json", results)
    for band in bands:
        print(
            f"{band}: FWHM {validity['psf_fwhm'][band]} arcsec, ellipticity <= {validity['psf_ellipticity_max'][band]}"
        )
    if args.write:
        path = Path(args.write) / METADATA_FILE
        metadata = json.loads(path.read_text())
        metadata["validity"] = validity
        metadata["reference_psf_fwhm"] = reference
        path.write_text(json.dumps(metadata, indent=2))
        print(f"wrote the validity range into {path}")


if __name__ == "__main__":
    main()
