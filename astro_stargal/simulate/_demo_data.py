"""The small demo field bundled with the package, and how to regenerate it."""

import os

import numpy as np
from astropy.io import fits

from ..instrument import PIXEL_SCALE, band_order
from ._conditions import FieldConditions
from ._field import simulate_field
from ._galsim import import_galsim, make_gsparams
from ._psf import build_band_psf

DEMO_SEED = 20260101

DEMO_SIZE = 400

#: Side of each band's PSF image in ``demo_psf.fits``, in samples 4 times finer than the pixel (2.4").
DEMO_PSF_SIZE = 128


def make_demo_data(outdir=None):
    """Regenerate the bundled demo field and its truth table.

    Writes ``demo_field.fits`` (the seven bands as tile-compressed image
    extensions named after the bands) and ``demo_truth.ecsv`` for a
    400 x 400 pixel field at the default densities with a fixed seed, and
    ``demo_psf.fits`` (`make_demo_psf`).

    Parameters
    ----------
    outdir : str or path-like, optional
        Output directory; ``astro_stargal/data`` by default.

    Returns
    -------
    paths : tuple of str
        The image file, the truth table and the PSF file.

    Examples
    --------
    >>> make_demo_data('/tmp/demo')  # doctest: +SKIP
    ('/tmp/demo/demo_field.fits', '/tmp/demo/demo_truth.ecsv', '/tmp/demo/demo_psf.fits')
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
    return image_path, truth_path, make_demo_psf(outdir)


def make_demo_psf(outdir=None):
    """Write the demo field's true PSF of each band, as a user would give it to ``classify_sources``.

    The demo field is too small to hold the eight bright, isolated stars per
    band that measuring a PSF needs, so its PSF ships with it, as a survey's
    PSF model ships with its images: ``demo_psf.fits`` holds one image
    extension per band (named after it), the effective (pixel-convolved) PSF
    of the field's nominal conditions sampled 4 times finer than the pixel
    (``OVERSAMP = 4``), centred on the image, with unit sum over the pixel
    samples.

    Parameters
    ----------
    outdir : str or path-like, optional
        Output directory; ``astro_stargal/data`` by default.

    Returns
    -------
    path : str

    Examples
    --------
    >>> make_demo_psf('/tmp/demo')  # doctest: +SKIP
    '/tmp/demo/demo_psf.fits'
    """
    if outdir is None:
        outdir = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
    galsim = import_galsim()
    gsparams = make_gsparams(galsim)
    hdus = [fits.PrimaryHDU()]
    for band in band_order():
        band_psf = build_band_psf(galsim, band, FieldConditions(), gsparams)
        tabulated = band_psf.effective.image.array
        start = (len(tabulated) - DEMO_PSF_SIZE) // 2
        image = tabulated[start : start + DEMO_PSF_SIZE, start : start + DEMO_PSF_SIZE]
        header = fits.Header()
        header["BAND"] = (band, "CSST band")
        header["OVERSAMP"] = (4, "PSF samples per image pixel")
        header["PIXSCALE"] = (PIXEL_SCALE, "[arcsec] image pixel scale")
        header["PSF_FWHM"] = (round(band_psf.fwhm, 5), "[arcsec] FWHM of the optical PSF")
        header["CONTENT"] = ("optics x jitter x pixel, nominal conditions", "the demo field's PSF")
        # Lossless compression (quantize_level=0): the PSF's faint wings keep every bit.
        data = np.float32(image / image.sum() * 16)  # unit sum over the pixel samples
        hdus.append(
            fits.CompImageHDU(data, header=header, name=band, compression_type="GZIP_2", quantize_level=0)
        )
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "demo_psf.fits")
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path
