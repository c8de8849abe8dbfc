"""The PSF of each band: measured from the image's own stars, or given by the user.

"Point-like" only means something relative to the PSF of the image at that
place. This subpackage describes that PSF as a `PSFModel` (effective,
pixel-convolved PSFs at a grid of nodes over the image) which the pipeline
uses to measure each source against its local PSF and to check that the
image is inside the model's validity range.

A PSF comes from

- `measure_psf`: the isolated, unsaturated, bright point sources among the
  table's own sources (`select_psf_stars`), stacked into effective PSFs with
  photutils' `~photutils.psf.EPSFBuilder` on a grid that follows the PSF
  across the image as far as the stars allow;
- or the user: a PSFEx ``.psf`` file (`read_psfex`), a FITS PSF image or
  grid (`read_psf_image`), an array, or a GalSim profile
  (`psf_from_galsim`), through `as_psf_model`.

`psf_fwhm` and `psf_ellipticity` describe any PSF image the same way, so a
measured PSF can be compared with the range the model was trained on.
"""

from ._inputs import as_psf_model, psf_from_galsim, read_psf_file, read_psf_image, read_psfex
from ._measure import MIN_PSF_STARS, PSFMeasurementError, measure_psf, select_psf_stars
from ._model import PSFModel
from ._stats import psf_ellipticity, psf_fwhm

__all__ = [
    "MIN_PSF_STARS",
    "PSFMeasurementError",
    "PSFModel",
    "as_psf_model",
    "measure_psf",
    "psf_ellipticity",
    "psf_from_galsim",
    "psf_fwhm",
    "read_psf_file",
    "read_psf_image",
    "read_psfex",
    "select_psf_stars",
]
