"""Reading the per-band images a user passes: FITS paths, HDUs, NDData or (array, WCS).

Every accepted form becomes one `BandImage`: a 2-D array (memory-mapped when it
comes from an uncompressed FITS file, so only the pixels around sources are
read), its celestial WCS, an optional bad-pixel mask, the AB zero point, the
saturation level and a robust estimate of the per-pixel sky noise.
"""

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import NDData, StdDevUncertainty
from astropy.stats import mad_std
from astropy.wcs import WCS, FITSFixedWarning

from ..exceptions import StarGalaxyWarning
from ..instrument import CSST_BANDS, ab_zeropoint

__all__ = ["BandImage", "read_images"]

#: Header keywords searched, in this order, for the AB zero point.
ZEROPOINT_KEYWORDS = ("MAGZERO", "MAGZPT", "MAGZP", "ZEROPNT", "ZEROPOINT", "PHOTZP", "ZP", "ZPT")

#: Header keywords searched for the saturation level (in image units).
SATURATION_KEYWORDS = ("SATURATE", "SATLEVEL", "SATURATION")

#: Number of pixels sampled (on a regular grid) to estimate the sky noise.
NOISE_SAMPLE_SIZE = 250_000

_PATH_WITH_EXTENSION = re.compile(r"^(?P<path>.+)\[(?P<ext>[^\[\]]+)\]$")


@dataclass(frozen=True)
class BandImage:
    """One band's image, ready for cutouts and photometry.

    Attributes
    ----------
    band : str
        Band name.
    data : 2D `~numpy.ndarray`
        The pixels, possibly memory-mapped, in their original dtype.
    wcs : `~astropy.wcs.WCS` or None
        Celestial WCS; None when the image has none (pixel positions only).
    mask : 2D bool `~numpy.ndarray` or None
        True where a pixel is bad.
    zeropoint : float
        AB magnitude of a source with a total flux of one image unit.
    saturation : float
        Pixel value at and above which a pixel counts as saturated (inf if unknown).
    noise : float
        Robust standard deviation of the sky pixels, in image units.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["r"], zeropoints={"r": 25.0})["r"]
    >>> image.shape, image.wcs is None, image.zeropoint
    ((64, 64), True, 25.0)
    """

    band: str
    data: np.ndarray
    wcs: WCS | None
    mask: np.ndarray | None
    zeropoint: float
    saturation: float
    noise: float

    @property
    def shape(self):
        """Shape of the pixel array, ``(ny, nx)``."""
        return self.data.shape


def read_images(images, bands, *, zeropoints=None):
    """Turn the user's ``images`` mapping into `BandImage` objects.

    Parameters
    ----------
    images : dict
        Band name -> image. An image is a FITS path (`str` or `~pathlib.Path`,
        optionally ``'file.fits[ext]'`` with an extension number or name), an
        `~astropy.io.fits.HDUList` or image HDU, an `~astropy.nddata.NDData`
        (or `~astropy.nddata.CCDData`; its ``mask`` and ``uncertainty`` are
        used), or an ``(array, wcs)`` pair (``wcs`` may be None for pixel
        positions).
    bands : sequence of str
        The model's bands; every key of ``images`` must be one of them.
    zeropoints : dict, optional
        Band -> AB zero point, overriding the FITS header.

    Returns
    -------
    band_images : dict
        Band -> `BandImage`, in the order of ``bands``, for the bands given.
        Constant images are left out with a warning (they carry no information).

    Raises
    ------
    ValueError
        If ``images`` is empty, names an unknown band, or an image is not 2-D,
        unreadable, or has no finite pixel.
    FileNotFoundError
        If a FITS path does not exist.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = {"r": (rng.normal(size=(64, 64)), None)}
    >>> read_images(images, ["g", "r"], zeropoints={"r": 25.0})["r"].shape
    (64, 64)
    """
    _validate_band_names(images, bands)
    zeropoints = dict(zeropoints or {})
    unknown = sorted(set(zeropoints) - set(bands))
    if unknown:
        msg = f"zeropoints names bands {unknown} that the model does not have; its bands are {list(bands)}"
        raise ValueError(msg)
    band_images = {}
    assumed_zeropoints = {}
    for band in bands:
        if band not in images:
            continue
        image = _read_one(band, images[band], zeropoints.get(band), assumed_zeropoints)
        if image is not None:
            band_images[band] = image
    if assumed_zeropoints:
        # One warning for all bands, so a call warns once however many images lack a zero point.
        assumed = ", ".join(f"{band}: {value:.3f}" for band, value in assumed_zeropoints.items())
        warnings.warn(
            f"no zero point in the header ({'/'.join(ZEROPOINT_KEYWORDS[:3])}...) or zeropoints= for "
            f"band(s) {list(assumed_zeropoints)}; assuming the CSST AB zero points ({assumed}) "
            "for images in electron/s",
            StarGalaxyWarning,
            stacklevel=3,
        )
    if not band_images:
        msg = "none of the images holds usable pixels (all were constant); nothing can be classified"
        raise ValueError(msg)
    return band_images


def _validate_band_names(images, bands):
    if not hasattr(images, "items"):
        msg = f"images must be a mapping from band name to image, got {type(images).__name__}"
        raise TypeError(msg)
    if len(images) == 0:
        msg = f"images is empty; give at least one of the model's bands {list(bands)}"
        raise ValueError(msg)
    unknown = [name for name in images if name not in bands]
    if unknown:
        msg = f"unknown band name(s) {unknown}; the model's bands are {list(bands)}"
        raise ValueError(msg)


def _read_one(band, image, zeropoint, assumed_zeropoints):
    data, wcs, mask, uncertainty, header = _unpack(band, image)
    data = _as_2d(band, data)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            msg = f"band {band!r}: mask shape {mask.shape} differs from image shape {data.shape}"
            raise ValueError(msg)
    noise = _estimate_noise(band, data, mask, uncertainty)
    if noise == 0:
        warnings.warn(
            f"band {band!r}: the image is constant; it carries no information and is "
            "treated as missing (sources get the BAND_MISSING flag)",
            StarGalaxyWarning,
            stacklevel=4,
        )
        return None
    return BandImage(
        band=band,
        data=data,
        wcs=wcs,
        mask=mask,
        zeropoint=_zeropoint(band, header, zeropoint, assumed_zeropoints),
        saturation=_saturation(header),
        noise=noise,
    )


def _unpack(band, image):
    """Return ``(data, wcs, mask, uncertainty, header)`` for any accepted image form."""
    if isinstance(image, (str, Path)):
        return _unpack(band, _open_fits(band, image))
    if isinstance(image, fits.HDUList):
        return _unpack(band, _first_image_hdu(band, image))
    if isinstance(image, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        data = _hdu_data(band, image)
        return data, _celestial_wcs(band, image.header), None, None, image.header
    if isinstance(image, NDData):
        wcs = image.wcs
        if wcs is not None and not isinstance(wcs, WCS):
            msg = (
                f"band {band!r}: only astropy.wcs.WCS is supported as an NDData wcs, got {type(wcs).__name__}"
            )
            raise TypeError(msg)
        if wcs is not None:
            wcs = _check_celestial(band, wcs)
        uncertainty = None if image.uncertainty is None else _as_stddev(band, image.uncertainty)
        header = image.meta if hasattr(image.meta, "get") else {}
        return image.data, wcs, image.mask, uncertainty, header
    if isinstance(image, tuple) and len(image) == 2:
        data, wcs = image
        if wcs is not None and not isinstance(wcs, WCS):
            msg = f"band {band!r}: the second item of an (array, wcs) pair must be an astropy WCS or None, got {type(wcs).__name__}"
            raise TypeError(msg)
        return (
            np.asanyarray(data),  # keeps a masked array visible, so _as_2d can refuse it
            None if wcs is None else _check_celestial(band, wcs),
            None,
            None,
            {},
        )
    msg = (
        f"band {band!r}: cannot read an image of type {type(image).__name__}; give a FITS path, "
        "an HDU or HDUList, an NDData/CCDData, or an (array, WCS) pair"
    )
    raise TypeError(msg)


def _as_stddev(band, uncertainty):
    try:
        return uncertainty.represent_as(StdDevUncertainty)
    except TypeError as error:
        msg = (
            f"band {band!r}: cannot turn an uncertainty of type {type(uncertainty).__name__} into a "
            "standard deviation; give a StdDevUncertainty, VarianceUncertainty or InverseVariance"
        )
        raise TypeError(msg) from error


def _open_fits(band, path):
    extension = None
    match = _PATH_WITH_EXTENSION.match(str(path))
    if match and not Path(path).exists():
        path, extension = match["path"], match["ext"]
        extension = int(extension) if extension.isdigit() else extension
    path = Path(path)
    if not path.exists():
        msg = f"band {band!r}: FITS file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        hdulist = fits.open(path, memmap=True, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError) as error:
        msg = f"band {band!r}: {str(path)!r} is not a readable FITS file ({error})"
        raise ValueError(msg) from error
    if extension is None:
        return hdulist
    try:
        return hdulist[extension]
    except (KeyError, IndexError) as error:
        msg = f"band {band!r}: {str(path)!r} has no extension {extension!r}"
        raise ValueError(msg) from error


def _first_image_hdu(band, hdulist):
    for hdu in hdulist:
        if (
            isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
            and hdu.header.get("NAXIS", 0) >= 2
        ):
            return hdu
    msg = f"band {band!r}: the FITS file holds no image with two or more axes (is it truncated, or a table?)"
    raise ValueError(msg)


def _hdu_data(band, hdu):
    try:
        data = hdu.data
    except (OSError, ValueError, TypeError) as error:
        msg = f"band {band!r}: cannot read the image pixels; the FITS file may be truncated ({error})"
        raise ValueError(msg) from error
    if data is None:
        msg = f"band {band!r}: the FITS HDU has no data"
        raise ValueError(msg)
    return data


def _celestial_wcs(band, header):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception as error:  # astropy raises several types for broken WCS headers
            warnings.warn(
                f"band {band!r}: the header WCS cannot be read ({error}); only pixel positions will work",
                StarGalaxyWarning,
                stacklevel=6,
            )
            return None
    return wcs.celestial if wcs.has_celestial else None


def _check_celestial(band, wcs):
    if not wcs.has_celestial:
        msg = f"band {band!r}: the WCS has no celestial axes (CTYPE {list(wcs.wcs.ctype)}); give a celestial WCS or None"
        raise ValueError(msg)
    return wcs.celestial


def _as_2d(band, data):
    data = np.asanyarray(data)
    if isinstance(data, np.ma.MaskedArray):
        msg = f"band {band!r}: pass a masked array as NDData(data, mask=...) so the mask is kept"
        raise TypeError(msg)
    if data.ndim != 2:
        msg = f"band {band!r}: the image must be 2-D, got shape {data.shape}; select one plane of a cube, e.g. cube[0]"
        raise ValueError(msg)
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        msg = f"band {band!r}: image pixels must be real numbers, got dtype {data.dtype}"
        raise TypeError(msg)
    return data


def _estimate_noise(band, data, mask, uncertainty):
    """Robust sky standard deviation from a regular sample of pixels (`~astropy.stats.mad_std`).

    Not sigma-clipped: clipping halves the upward bias that sources give on a
    crowded image (docs/user_guide/inputs.rst has the numbers), but the
    bundled model was trained on stamps normalised by the plain estimate.
    """
    step = max(1, int(np.sqrt(data.size / NOISE_SAMPLE_SIZE)))
    if uncertainty is not None:
        sample = np.asarray(uncertainty.array, dtype=np.float64)[::step, ::step]
        good = np.isfinite(sample) & (sample > 0)
        if good.any():
            return float(np.median(sample[good]))
    try:
        sample = np.asarray(data[::step, ::step], dtype=np.float64)
    except (OSError, ValueError) as error:
        msg = f"band {band!r}: cannot read the image pixels; the file may be truncated ({error})"
        raise ValueError(msg) from error
    good = np.isfinite(sample)
    if mask is not None:
        good &= ~mask[::step, ::step]
    if not good.any():
        msg = f"band {band!r}: the image has no finite, unmasked pixel"
        raise ValueError(msg)
    sample = sample[good]
    noise = float(mad_std(sample))
    if noise == 0:
        noise = float(np.std(sample))
    return noise


def _zeropoint(band, header, zeropoint, assumed_zeropoints):
    """The AB zero point: ``zeropoint``, else the header, else the CSST one (recorded in ``assumed_zeropoints``)."""
    if zeropoint is not None:
        return float(zeropoint)
    for keyword in ZEROPOINT_KEYWORDS:
        value = header.get(keyword)
        if value is not None:
            return float(value)
    if band in CSST_BANDS:
        assumed_zeropoints[band] = ab_zeropoint(band)
        return assumed_zeropoints[band]
    msg = f"band {band!r}: no zero point in the header; pass zeropoints={{{band!r}: ...}}"
    raise ValueError(msg)


def _saturation(header):
    for keyword in SATURATION_KEYWORDS:
        value = header.get(keyword)
        if value is not None:
            return float(value)
    return np.inf
