"""The small demo field bundled with the package, and how to regenerate it."""

import os

from astropy.io import fits

from ._field import simulate_field

DEMO_SEED = 20260101

DEMO_SIZE = 400


def make_demo_data(outdir=None):
    """Regenerate the bundled demo field and its truth table.

    Writes ``demo_field.fits`` (the seven bands as tile-compressed image
    extensions named after the bands) and ``demo_truth.ecsv`` for a
    400 x 400 pixel field at the default densities with a fixed seed.

    Parameters
    ----------
    outdir : str or path-like, optional
        Output directory; ``astro_stargal/data`` by default.

    Returns
    -------
    paths : tuple of str
        The image file and the truth table.

    Examples
    --------
    >>> make_demo_data('/tmp/demo')  # doctest: +SKIP
    ('/tmp/demo/demo_field.fits', '/tmp/demo/demo_truth.ecsv')
    """
    if outdir is None:
        outdir = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
    images, truth = simulate_field(DEMO_SIZE, seed=DEMO_SEED)
    hdus = [fits.PrimaryHDU()]
    for band, image in images.items():
        # Dithered quantisation to 1/16 of the noise keeps the file small.
        hdus.append(
            fits.CompImageHDU(
                data=image.data,
                header=image.header,
                name=band,
                compression_type="RICE_1",
                quantize_level=16.0,
                quantize_method=1,
                dither_seed=1,
            )
        )
    os.makedirs(outdir, exist_ok=True)
    image_path = os.path.join(outdir, "demo_field.fits")
    truth_path = os.path.join(outdir, "demo_truth.ecsv")
    fits.HDUList(hdus).writeto(image_path, overwrite=True)
    truth.write(truth_path, overwrite=True)
    return image_path, truth_path
