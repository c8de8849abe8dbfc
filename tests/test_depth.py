"""The simulator's 5-sigma depth agrees with photutils' ImageDepth on the same image.

`~astro_stargal.simulate.measure_depth` places random apertures off the
sources and takes five times the MAD standard deviation of their sums;
`photutils.utils.ImageDepth` does the same with a sigma-clipped standard
deviation. Given the same kind of source mask (photutils' recipe: 3-sigma
segments of the smoothed image, grown by the aperture radius plus 2 pixels)
and the same aperture-to-total correction, the two must agree to 0.1 mag: the
scatter of one 2000-aperture estimate is about 0.02 mag, and clipping makes
ImageDepth up to 0.07 mag deeper on simulated CSST fields.
"""

import math
import warnings

import numpy as np
import pytest
from astropy.convolution import convolve
from astropy.stats import mad_std
from photutils.segmentation import detect_sources, make_2dgaussian_kernel
from photutils.utils import ImageDepth

from astro_stargal.simulate import measure_depth, simulate_field

pytest.importorskip("galsim")

#: Largest |measure_depth - ImageDepth| accepted, in magnitudes.
DEPTH_TOLERANCE = 0.1


@pytest.mark.parametrize("band", ["g", "r", "y"])
def test_measure_depth_agrees_with_photutils_image_depth(band):
    images, truth = simulate_field(512, seed=1, bands=[band])
    assert len(truth) > 100  # sources to mask, not a blank sky
    data, header = images[band].data.astype(float), images[band].header
    smoothed = convolve(data, make_2dgaussian_kernel(2.355, size=5))
    sources = detect_sources(smoothed, 3.0 * mad_std(smoothed), n_pixels=10).make_source_mask()
    # ImageDepth gives the depth of the aperture flux; APFRAC turns it into a total magnitude.
    zeropoint = header["MAGZERO"] + 2.5 * math.log10(header["APFRAC"])
    image_depth = ImageDepth(
        header["APRAD"],
        n_sigma=5.0,
        mask_pad=2,
        n_apertures=2000,
        n_iters=5,
        seed=0,
        zeropoint=zeropoint,
        progress_bar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few non-overlapping apertures is not at issue here
        _, photutils_depth = image_depth(data, sources)

    depth = measure_depth(data, header, seed=0)

    assert np.isfinite(depth)
    assert abs(depth - photutils_depth) < DEPTH_TOLERANCE, (depth, photutils_depth)
