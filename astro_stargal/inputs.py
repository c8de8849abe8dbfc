"""From images and positions to network inputs: the one preparation routine.

`prepare_inputs` is used by `~astro_stargal.classify_sources`, by training and
by evaluation alike. For each source and band it cuts a stamp
(`~astro_stargal.cutouts.extract_stamps`), measures the catalog features
(`~astro_stargal.features.measure_features`) and normalises the stamp:

``asinh((pixel - local background) / (3 * sky noise))``

so that the network sees signal-to-noise maps whatever the image units. Pixels
that are off the image, NaN, infinite or masked are set to 0 and marked 0 in a
validity channel; a band that is missing for a source has both channels 0 and
its catalog step marked absent.
"""

from dataclasses import dataclass

import numpy as np

from .cutouts import extract_stamps, stamp_origin
from .features import FEATURE_NAMES, measure_features
from .flags import SourceFlag

__all__ = ["IMAGE_SOFTENING", "LOW_SNR_THRESHOLD", "PreparedInputs", "prepare_inputs"]

#: Stamps are divided by this many sky sigmas before the asinh stretch.
IMAGE_SOFTENING = 3.0

#: Sources whose best band has an aperture S/N below this get the LOW_SNR flag.
LOW_SNR_THRESHOLD = 5.0

#: Half-width (pixels) of the central box checked for saturated and bad pixels.
CENTRAL_HALF_WIDTH = 2


@dataclass
class PreparedInputs:
    """Network inputs for a batch of sources.

    Attributes
    ----------
    stamps : 4D float32 `~numpy.ndarray`
        ``(n_sources, 2 * n_bands, n, n)``: normalised pixels of each band,
        then one validity channel per band.
    catalog : 3D float32 `~numpy.ndarray`
        ``(n_sources, n_bands, n_features + 1)``: raw features of each band
        (ordered by wavelength) and a last column that is 1 where the band is present.
    flags : 1D int32 `~numpy.ndarray`
        `~astro_stargal.flags.SourceFlag` bits.

    Examples
    --------
    >>> from astro_stargal.images import read_images
    >>> from astro_stargal.positions import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0]), y=np.array([30.0]),
    ...                         valid=np.array([True]))
    >>> inputs = prepare_inputs(images, where, ["g", "r"], 32)
    >>> inputs.catalog.shape, inputs.classifiable
    ((1, 2, 7), array([ True]))
    """

    stamps: np.ndarray
    catalog: np.ndarray
    flags: np.ndarray

    @property
    def classifiable(self):
        """True for sources that have at least one band present."""
        return self.catalog[:, :, -1].any(axis=1)


def prepare_inputs(band_images, positions, bands, stamp_size):
    """Cut, measure and normalise every source in every band.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.images.BandImage`, any subset of ``bands``.
    positions : `~astro_stargal.positions.SourcePositions`
        The sources.
    bands : sequence of str
        The model's bands, ordered by wavelength.
    stamp_size : int
        Stamp side in pixels.

    Returns
    -------
    inputs : `PreparedInputs`

    Examples
    --------
    >>> import numpy as np
    >>> from astro_stargal.images import read_images
    >>> from astro_stargal.positions import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0]), y=np.array([30.0]),
    ...                         valid=np.array([True]))
    >>> prepare_inputs(images, where, ["g", "r"], 32).stamps.shape
    (1, 4, 32, 32)
    """
    n_sources, n_bands = len(positions), len(bands)
    stamps = np.zeros((n_sources, 2 * n_bands, stamp_size, stamp_size), dtype=np.float32)
    catalog = np.zeros((n_sources, n_bands, len(FEATURE_NAMES) + 1), dtype=np.float32)
    flags = np.where(positions.valid, 0, SourceFlag.BAD_POSITION).astype(np.int32)
    best_snr = np.full(n_sources, -np.inf)
    centre = slice(stamp_size // 2 - CENTRAL_HALF_WIDTH, stamp_size // 2 + CENTRAL_HALF_WIDTH)

    for index, band in enumerate(bands):
        image = band_images.get(band)
        if image is None:
            continue
        x, y = positions.pixel_positions(image.wcs)
        band_stamps, on_image = extract_stamps(image.data, x, y, stamp_size, mask=image.mask)
        valid = np.isfinite(band_stamps)
        present = valid[:, centre, centre].any(axis=(1, 2)) & _centre_on_image(x, y, image.shape)
        if not present.any():
            continue

        flags[present & ~on_image.all(axis=(1, 2))] |= SourceFlag.PARTIAL_OVERLAP
        flags[present & (valid != on_image).any(axis=(1, 2))] |= SourceFlag.BAD_PIXELS
        # Infinite pixels are bad pixels, not saturated ones (they would reach an unknown, infinite level).
        central = np.where(valid[:, centre, centre], band_stamps[:, centre, centre], -np.inf)
        saturated = (central >= image.saturation).any(axis=(1, 2))
        flags[present & saturated] |= SourceFlag.SATURATED

        # A slice when every source is present, so the stamps are not copied.
        rows = slice(None) if present.all() else np.flatnonzero(present)
        present_stamps, present_valid = band_stamps[rows], valid[rows]
        x0, y0 = stamp_origin(x[rows], y[rows], stamp_size)
        features, background, snr = measure_features(
            present_stamps,
            x[rows] - x0,
            y[rows] - y0,
            noise=image.noise,
            zeropoint=image.zeropoint,
        )
        normalised = present_stamps - background[:, None, None]
        normalised /= IMAGE_SOFTENING * image.noise
        np.arcsinh(normalised, out=normalised)
        normalised[~present_valid] = 0.0
        stamps[rows, index] = normalised
        stamps[rows, n_bands + index] = present_valid
        catalog[rows, index, :-1] = features
        catalog[rows, index, -1] = 1.0
        best_snr[rows] = np.maximum(best_snr[rows], snr)

    missing_band = (catalog[:, :, -1] == 0).any(axis=1)
    no_band = (catalog[:, :, -1] == 0).all(axis=1)
    flags[missing_band & ~no_band] |= SourceFlag.BAND_MISSING
    flags[no_band & positions.valid] |= SourceFlag.OFF_IMAGE
    flags[~no_band & (best_snr < LOW_SNR_THRESHOLD)] |= SourceFlag.LOW_SNR
    return PreparedInputs(stamps=stamps, catalog=catalog, flags=flags)


def _centre_on_image(x, y, shape):
    """True where the source centre falls on a pixel of the image (astropy pixel edges at -0.5)."""
    ny, nx = shape
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
