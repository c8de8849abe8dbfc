"""Reading the per-band images a user passes: FITS paths, HDUs, NDData or (array, WCS).

Every accepted form becomes one `BandImage`: a 2-D array (memory-mapped when it
comes from an uncompressed FITS file, so only the pixels around sources are
read), its celestial WCS, an optional bad-pixel mask, the AB zero point, the
saturation level, a robust estimate of the per-pixel sky noise and, when the
user gives one, a per-pixel `NoiseMap` (a weight, variance or sigma map beside
the image, or the uncertainty of an NDData), read only where stamps fall.

A band with no usable pixel (all NaN, masked, zero weight, or constant) is
left out with one warning for the call, so its sources get ``BAND_MISSING``:
a survey run over many tiles must not stop because one band of one tile is
blank.
"""

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import InverseVariance, NDData, StdDevUncertainty, VarianceUncertainty
from astropy.stats import mad_std
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from ..exceptions import StarGalaxyWarning
from ..instrument import CSST_BANDS, ab_zeropoint
from ._bands import HEADER_BAND_KEYWORDS, band_named_by_header, resolve_band

__all__ = ["NOISE_MAP_KINDS", "BandImage", "NoiseMap", "read_images"]

#: Header keywords searched, in this order, for the AB zero point.
ZEROPOINT_KEYWORDS = ("MAGZERO", "MAGZPT", "MAGZP", "ZEROPNT", "ZEROPOINT", "PHOTZP", "ZP", "ZPT")

#: Header keywords searched for the saturation level (in image units).
SATURATION_KEYWORDS = ("SATURATE", "SATLEVEL", "SATURATION")

#: Number of pixels sampled (on a regular grid) to estimate the sky noise.
NOISE_SAMPLE_SIZE = 250_000

#: What the values of a `NoiseMap` are: inverse variance, variance or standard deviation.
NOISE_MAP_KINDS = ("weight", "variance", "sigma")

#: EXTNAME values that say a map holds something other than weights (inverse variances).
_NOT_WEIGHT_EXTNAMES = {
    "VAR": "variance",
    "VARIANCE": "variance",
    "SIGMA": "sigma",
    "RMS": "sigma",
    "ERR": "sigma",
    "ERROR": "sigma",
    "STDDEV": "sigma",
    "NOISE": "sigma",
}

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)

#: Forms of one image that can be paired with a noise map: ``(image, noise)``.
_SINGLE_IMAGE_FORMS = (str, Path, fits.HDUList, *_IMAGE_HDUS, NDData, tuple)

_PATH_WITH_EXTENSION = re.compile(r"^(?P<path>.+)\[(?P<ext>[^\[\]]+)\]$")


@dataclass(frozen=True)
class NoiseMap:
    """A per-pixel noise map given beside an image: weights, variances or standard deviations.

    A plain map beside an image, ``{"r": ("r.fits", "r.weight.fits")}``, is
    read as a weight map (inverse variance, as SWarp's ``MAP_WEIGHT`` and the
    DES co-adds write it); wrap it in a `NoiseMap` to say that it holds
    variances (as the LSST ``VARIANCE`` plane) or standard deviations (an RMS
    map). A pixel whose value is zero, negative or not finite is a bad pixel.

    Parameters
    ----------
    values : str, `~pathlib.Path`, HDU, `~astropy.io.fits.HDUList` or 2D `~numpy.ndarray`
        The map: a FITS path (optionally ``'file.fits[ext]'``), an HDU (its
        first image HDU for an HDUList) or an array of the image's shape.
    kind : {'weight', 'variance', 'sigma'}, optional
        What the values are: inverse variances (default), variances or
        standard deviations, in image units.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(0.0, 2.0, size=(64, 64))
    >>> weight = np.full((64, 64), 0.25)  # sigma 2
    >>> read_images({"r": ((image, None), weight)}, ["r"], zeropoints={"r": 25.0})["r"].noise
    2.0
    >>> NoiseMap(np.full((64, 64), 4.0), kind="variance").sigma(np.array([4.0, 0.0]))
    array([ 2., nan], dtype=float32)
    """

    values: object
    kind: str = "weight"

    def __post_init__(self):
        if self.kind not in NOISE_MAP_KINDS:
            msg = f"NoiseMap kind must be one of {NOISE_MAP_KINDS}, got {self.kind!r}"
            raise ValueError(msg)

    @property
    def shape(self):
        """Shape of the map, ``(ny, nx)`` (once read, as in `BandImage.noise_map`)."""
        return np.shape(self.values)

    def sigma(self, values, *, out=None):
        """Per-pixel standard deviations (float32) from values of this map; NaN where a pixel is bad.

        Parameters
        ----------
        values : `~numpy.ndarray`
            Values of the map (any shape), e.g. stamps cut from it; read as float32.
        out : float32 `~numpy.ndarray`, optional
            Where to write the result (may be ``values`` itself).

        Returns
        -------
        sigma : float32 `~numpy.ndarray`
            Same shape; NaN where the value is zero, negative or not finite
            (or gives a sigma of zero or infinity).
        """
        values = np.asarray(values, dtype=np.float32)
        if out is None:
            out = np.empty(values.shape, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.kind == "weight":
                np.sqrt(values, out=out)
                np.reciprocal(out, out=out)
            elif self.kind == "variance":
                np.sqrt(values, out=out)
            else:
                np.copyto(out, values)
            # NaN, zero and infinity all fail this test, whatever the kind gave them.
            np.copyto(out, np.nan, where=~((out > 0) & (out < np.inf)))
        return out


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
        Standard deviation of the sky pixels, in image units: the median of
        the noise map where there is one, else a robust estimate from the pixels.
    noise_map : `NoiseMap` or None
        Per-pixel noise (an array of the image's shape, possibly memory-mapped)
        by which stamps are normalised; None to use ``noise`` everywhere.

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
    noise_map: NoiseMap | None = None

    @property
    def shape(self):
        """Shape of the pixel array, ``(ny, nx)``."""
        return self.data.shape

    @property
    def pixel_scale(self):
        """Mean pixel scale in arcsec from the WCS, or None for an image without one."""
        if self.wcs is None:
            return None
        return float(np.mean(proj_plane_pixel_scales(self.wcs))) * 3600.0


def read_images(images, bands, *, zeropoints=None, header_bands=True):
    """Turn the user's ``images`` mapping into `BandImage` objects.

    Parameters
    ----------
    images : dict
        Band name -> image. Band names follow `resolve_band` (exact, else the
        one band equal to it ignoring case and blanks). An image is a FITS
        path (`str` or `~pathlib.Path`, optionally ``'file.fits[ext]'`` with an
        extension number or name), an `~astropy.io.fits.HDUList` or image
        HDU, an `~astropy.nddata.NDData` (or `~astropy.nddata.CCDData`; its
        ``mask`` and ``uncertainty`` are used), or an ``(array, wcs)`` pair
        (``wcs`` may be None for pixel positions). Any of these but a bare array may come in an
        ``(image, noise)`` pair with a per-pixel noise map: a weight map
        (inverse variance) as a FITS path, HDU or array, or a `NoiseMap` that
        says whether it holds weights, variances or standard deviations.
    bands : sequence of str
        The model's bands; every key of ``images`` must name one of them.
    zeropoints : dict, optional
        Band -> AB zero point, overriding the FITS header.
    header_bands : bool, optional
        Read the band that FITS headers name (``FILTER``, ``BAND``,
        ``EXTNAME``; see `band_named_by_header`): a file or HDUList holding
        several images gives the image of the band asked for, and an image
        whose header names another band is refused, or used with a warning
        when chosen explicitly (``'file.fits[3]'``, an HDU, an NDData). False
        ignores what headers say (for mislabelled headers): a file then gives
        its first image.

    Returns
    -------
    band_images : dict
        Band -> `BandImage`, in the order of ``bands``, for the bands given.
        Blank images (no finite, unmasked pixel of positive weight, or every
        such pixel equal) are left out with one warning, as missing bands; the
        dict is empty when every image is blank.

    Raises
    ------
    ValueError
        If ``images`` is empty, names an unknown band or one band twice; if a
        file's headers name other bands than the one asked for; or if an
        image or noise map is not 2-D, unreadable, or of another shape than
        its image.
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
    if not hasattr(images, "items"):
        msg = f"images must be a mapping from band name to image, got {type(images).__name__}"
        raise TypeError(msg)
    if len(images) == 0:
        msg = f"images is empty; give at least one of the model's bands {list(bands)}"
        raise ValueError(msg)
    images = _by_band(images, bands, "images")
    zeropoints = _by_band(zeropoints or {}, bands, "zeropoints")
    call = _Call(tuple(bands), header_bands)
    band_images = {}
    for band in bands:
        if band not in images:
            continue
        image = _read_one(band, images[band], zeropoints.get(band), call)
        if image is not None:
            band_images[band] = image
    call.warn(any_left=bool(band_images))
    return band_images


def _by_band(mapping, bands, argument):
    """``mapping`` with its keys resolved to the model's bands (`resolve_band`); a band named twice is an error."""
    resolved, given_as = {}, {}
    for name, value in mapping.items():
        band = resolve_band(name, bands, what=f"band name in {argument}")
        if band in resolved:
            msg = f"{argument} names band {band!r} twice, as {given_as[band]!r} and {name!r}"
            raise ValueError(msg)
        resolved[band], given_as[band] = value, name
    return resolved


class _Call:
    """What one `read_images` call needs beside each image: the model's bands, and what to warn about once."""

    def __init__(self, bands, header_bands):
        self.bands = bands
        self.header_bands = header_bands
        self.assumed_zeropoints = {}
        self.blank = {}
        self.relabelled = {}

    def warn(self, *, any_left):
        """One warning per kind of problem, so a call warns once however many bands it concerns."""
        if self.relabelled:
            said = "; ".join(f"{band!r}: {what}" for band, what in self.relabelled.items())
            warnings.warn(
                f"the headers of the images chosen for band(s) {list(self.relabelled)} name other bands "
                f"({said}); they are used as asked (if the headers are wrong, pass header_bands=False, "
                "or --ignore-header-bands on the command line, to silence this)",
                StarGalaxyWarning,
                stacklevel=4,
            )
        if self.assumed_zeropoints:
            assumed = ", ".join(f"{band}: {value:.3f}" for band, value in self.assumed_zeropoints.items())
            warnings.warn(
                f"no zero point in the header ({'/'.join(ZEROPOINT_KEYWORDS[:3])}...) or zeropoints= for "
                f"band(s) {list(self.assumed_zeropoints)}; assuming the CSST AB zero points ({assumed}) "
                "for images in electron/s",
                StarGalaxyWarning,
                stacklevel=4,
            )
        if self.blank:
            reasons = "; ".join(f"{band!r}: {reason}" for band, reason in self.blank.items())
            consequence = (
                "they are treated as missing for every source (BAND_MISSING)"
                if any_left
                else "no band is left, so no source can be classified (OFF_IMAGE, p_star NaN)"
            )
            warnings.warn(
                f"band(s) {list(self.blank)} hold no usable pixel ({reasons}); {consequence}",
                StarGalaxyWarning,
                stacklevel=4,
            )


def _read_one(band, image, zeropoint, call):
    """The `BandImage` of one band, or None (with the reason in ``call.blank``) for a blank image."""
    data, wcs, mask, noise_map, header = _unpack(band, image, call)
    data = _as_2d(band, data)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            msg = f"band {band!r}: mask shape {mask.shape} differs from image shape {data.shape}"
            raise ValueError(msg)
    if noise_map is not None:
        noise_map = _check_noise_map(band, noise_map, data.shape)
    pixels, sigmas = _usable_pixels(band, data, mask, noise_map)
    if pixels.size == 0:
        call.blank[band] = "no finite, unmasked pixel" + ("" if noise_map is None else " of positive weight")
        return None
    if pixels.min() == pixels.max():
        call.blank[band] = f"every usable pixel is {pixels[0]:g}"
        return None
    return BandImage(
        band=band,
        data=data,
        wcs=wcs,
        mask=mask,
        zeropoint=_zeropoint(band, header, zeropoint, call.assumed_zeropoints),
        saturation=_saturation(header),
        noise=_sky_noise(pixels, sigmas),
        noise_map=noise_map,
    )


def _unpack(band, image, call):
    """Return ``(data, wcs, mask, noise_map, header)`` for any accepted image form."""
    if isinstance(image, (str, Path)):
        return _from_hdu(band, _fits_image(band, image, call))
    if isinstance(image, fits.HDUList):
        return _from_hdu(band, _band_image_hdu(band, image, call))
    if isinstance(image, _IMAGE_HDUS):
        _check_named_band(band, image.header, call, _describe_hdu(image))
        return _from_hdu(band, image)
    if isinstance(image, NDData):
        wcs = image.wcs
        if wcs is not None and not isinstance(wcs, WCS):
            msg = (
                f"band {band!r}: only astropy.wcs.WCS is supported as an NDData wcs, got {type(wcs).__name__}"
            )
            raise TypeError(msg)
        if wcs is not None:
            wcs = _check_celestial(band, wcs)
        noise_map = None if image.uncertainty is None else _uncertainty_map(band, image.uncertainty)
        header = image.meta if hasattr(image.meta, "get") else {}
        _check_named_band(band, header, call, f"the meta of the {type(image).__name__}")
        return image.data, wcs, image.mask, noise_map, header
    if isinstance(image, tuple) and len(image) == 2 and isinstance(image[0], _SINGLE_IMAGE_FORMS):
        picture, noise = image
        data, wcs, mask, noise_map, header = _unpack(band, picture, call)
        if noise_map is not None:
            msg = f"band {band!r}: the image already carries an uncertainty; give it or a noise map, not both"
            raise ValueError(msg)
        return data, wcs, mask, _read_noise_map(band, noise, call), header
    if isinstance(image, tuple) and len(image) == 2:
        data, wcs = image
        if wcs is not None and not isinstance(wcs, WCS):
            msg = (
                f"band {band!r}: the second item of an (array, wcs) pair must be an astropy WCS or None, "
                f"got {type(wcs).__name__}; to give a noise map with an array, use ((array, wcs), noise)"
            )
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
        "an HDU or HDUList, an NDData/CCDData, or an (array, WCS) pair (each optionally paired "
        "with a noise map)"
    )
    raise TypeError(msg)


def _from_hdu(band, hdu):
    return _hdu_data(band, hdu), _celestial_wcs(band, hdu.header), None, None, hdu.header


def _uncertainty_map(band, uncertainty):
    """The `NoiseMap` of an NDData uncertainty, read as it is stored (no conversion of the whole array)."""
    for uncertainty_class, kind in (
        (StdDevUncertainty, "sigma"),
        (VarianceUncertainty, "variance"),
        (InverseVariance, "weight"),
    ):
        if isinstance(uncertainty, uncertainty_class):
            return NoiseMap(uncertainty.array, kind)
    try:
        return NoiseMap(uncertainty.represent_as(StdDevUncertainty).array, "sigma")
    except TypeError as error:
        msg = (
            f"band {band!r}: cannot turn an uncertainty of type {type(uncertainty).__name__} into a "
            "standard deviation; give a StdDevUncertainty, VarianceUncertainty or InverseVariance"
        )
        raise TypeError(msg) from error


def _read_noise_map(band, noise, call):
    """A `NoiseMap` holding an array, from a path, HDU, array or `NoiseMap` of those.

    A noise-map file is chosen among its images by band as an image file is.
    """
    explicit = isinstance(noise, NoiseMap)
    kind = noise.kind if explicit else "weight"
    values = noise.values if explicit else noise
    if isinstance(values, (str, Path)):
        values = _fits_image(band, values, call, what="noise map")
    elif isinstance(values, fits.HDUList):
        values = _band_image_hdu(band, values, call, what="noise map")
    elif isinstance(values, _IMAGE_HDUS):
        _check_named_band(band, values.header, call, f"the noise map {_describe_hdu(values)}")
    if isinstance(values, _IMAGE_HDUS):
        extname = str(values.header.get("EXTNAME", "")).strip().upper()
        if not explicit and extname in _NOT_WEIGHT_EXTNAMES:
            # A variance plane read as weights would be silently wrong by a factor of sigma^4.
            other = _NOT_WEIGHT_EXTNAMES[extname]
            msg = (
                f"band {band!r}: the noise map's EXTNAME is {extname!r}, so it seems to hold "
                f"{'variances' if other == 'variance' else 'standard deviations'}, not weights; "
                f"say so with NoiseMap(..., kind={other!r}), or kind='weight' if it does hold weights"
            )
            raise ValueError(msg)
        values = _hdu_data(band, values)
    elif isinstance(values, (NoiseMap, NDData, tuple)) or not hasattr(values, "__array__"):
        msg = (
            f"band {band!r}: cannot read a noise map of type {type(values).__name__}; give a FITS "
            "path, an HDU, an array or a NoiseMap of one of these"
        )
        raise TypeError(msg)
    return NoiseMap(values, kind)


def _check_noise_map(band, noise_map, shape):
    values = np.asanyarray(noise_map.values)
    if isinstance(values, np.ma.MaskedArray):
        msg = f"band {band!r}: give the noise map as a plain array; mark bad pixels with zero weight"
        raise TypeError(msg)
    if values.shape != shape:
        msg = f"band {band!r}: noise map shape {values.shape} differs from image shape {shape}"
        raise ValueError(msg)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        msg = f"band {band!r}: noise map values must be real numbers, got dtype {values.dtype}"
        raise TypeError(msg)
    return NoiseMap(values, noise_map.kind)


def _fits_image(band, path, call, *, what="image"):
    """The image HDU of ``band`` in a FITS file: the ``'file.fits[ext]'`` one, else `_band_image_hdu`."""
    hdulist, extension = _open_fits(band, path, what)
    try:
        if extension is None:
            return _band_image_hdu(band, hdulist, call, what=what)
        try:
            hdu = hdulist[extension]
        except (KeyError, IndexError) as error:
            msg = f"band {band!r}: {str(path)!r} has no extension {extension!r}"
            raise ValueError(msg) from error
    except ValueError:
        hdulist.close()
        raise
    # The extension the user chose wins over its header; a header naming another band is only warned about.
    _check_named_band(band, hdu.header, call, repr(str(path)), hdulist[0].header)
    return hdu


def _open_fits(band, path, what):
    """``(hdulist, extension)``: the open file and the extension of a ``'file.fits[ext]'`` suffix (or None)."""
    noun = "FITS file" if what == "image" else f"{what} FITS file"
    extension = None
    match = _PATH_WITH_EXTENSION.match(str(path))
    if match and not Path(path).exists():
        path, extension = match["path"], match["ext"]
        extension = int(extension) if extension.isdigit() else extension
    path = Path(path)
    if not path.exists():
        msg = f"band {band!r}: {noun} {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        hdulist = fits.open(path, memmap=True, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError) as error:
        msg = f"band {band!r}: {str(path)!r} is not a readable FITS file ({error})"
        raise ValueError(msg) from error
    return hdulist, extension


def _band_image_hdu(band, hdulist, call, *, what="image"):
    """The image of ``band`` in an HDUList: the first whose header names it, else the first image.

    The first image is refused when its header names another band: a
    multi-band file given without ``[ext]`` must not silently give the wrong band.
    """
    images = [
        (index, hdu)
        for index, hdu in enumerate(hdulist)
        if isinstance(hdu, _IMAGE_HDUS) and hdu.header.get("NAXIS", 0) >= 2
    ]
    if not images:
        msg = f"band {band!r}: the {what} FITS file holds no image with two or more axes (is it truncated, or a table?)"
        raise ValueError(msg)
    if not call.header_bands:
        return images[0][1]
    primary = hdulist[0].header
    named = [_named_band(hdu.header, call.bands, primary)[0] for _, hdu in images]
    if band in named:
        return images[named.index(band)][1]
    if named[0] is None:
        return images[0][1]  # the first image says nothing about its band: trust the user
    source = f"{what} file {hdulist.filename()!r}" if hdulist.filename() else f"{what} HDUList"
    holds = ", ".join(
        f"[{index}] {named_band or 'unnamed'}" for (index, _), named_band in zip(images, named, strict=True)
    )
    msg = (
        f"band {band!r}: the {source} holds no image of band {band!r}; its headers "
        f"({'/'.join(HEADER_BAND_KEYWORDS)}) name its images {holds}. Give the file of band {band!r}, "
        "choose an image with 'file.fits[EXT]' (an extension number or name wins over its header), "
        "or pass header_bands=False (--ignore-header-bands) if the headers are wrong"
    )
    raise ValueError(msg)


def _named_band(header, bands, primary=None):
    """`band_named_by_header` of ``header``, else of the file's primary header."""
    band, card = band_named_by_header(header, bands)
    if band is None and primary is not None:
        band, card = band_named_by_header(primary, bands)
    return band, card


def _check_named_band(band, header, call, where, primary=None):
    """Note (for one warning) an image chosen explicitly for ``band`` whose header names another band."""
    if not call.header_bands:
        return
    named, card = _named_band(header, call.bands, primary)
    if named is not None and named != band:
        call.relabelled[band] = f"{where} has {card}"


def _describe_hdu(hdu):
    extname = hdu.header.get("EXTNAME")
    return f"{type(hdu).__name__} {extname!r}" if extname else type(hdu).__name__


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


def _usable_pixels(band, data, mask, noise_map):
    """Values (float64) of a regular sample of the usable pixels, and their sigmas (None without a noise map).

    Usable: finite, not masked and, with a noise map, of positive weight.
    """
    step = max(1, int(np.sqrt(data.size / NOISE_SAMPLE_SIZE)))
    pixels, sigmas = _usable_in(band, data, mask, noise_map, np.s_[::step, ::step])
    if pixels.size or step == 1:
        return pixels, sigmas
    # The grid can miss a small patch of data (a tile's corner): read every row before calling the band blank.
    parts, found = [], 0
    rows_per_block = max(1, NOISE_SAMPLE_SIZE // data.shape[1])
    for start in range(0, data.shape[0], rows_per_block):
        part = _usable_in(band, data, mask, noise_map, np.s_[start : start + rows_per_block])
        parts.append(part)
        found += part[0].size
        if found >= NOISE_SAMPLE_SIZE:
            break
    pixels = np.concatenate([part[0] for part in parts])
    sigmas = None if noise_map is None else np.concatenate([part[1] for part in parts])
    return pixels, sigmas


def _usable_in(band, data, mask, noise_map, index):
    try:
        pixels = np.asarray(data[index], dtype=np.float64)
        sigmas = None if noise_map is None else noise_map.sigma(noise_map.values[index])
    except (OSError, ValueError) as error:
        msg = f"band {band!r}: cannot read the image pixels; the file may be truncated ({error})"
        raise ValueError(msg) from error
    good = np.isfinite(pixels)
    if mask is not None:
        good &= ~mask[index]
    if sigmas is not None:
        good &= np.isfinite(sigmas)
    return pixels[good], None if sigmas is None else sigmas[good]


def _sky_noise(pixels, sigmas):
    """The median per-pixel sigma with a noise map, else `~astropy.stats.mad_std` of the pixels.

    Not sigma-clipped: clipping halves the upward bias that sources give on a
    crowded image (docs/user_guide/inputs.rst has the numbers), but the
    bundled model was trained on stamps normalised by the plain estimate.
    """
    if sigmas is not None:
        return float(np.median(sigmas))
    noise = float(mad_std(pixels))
    if noise == 0:  # more than half the pixels equal (a mostly empty image): their spread, not zero
        noise = float(np.std(pixels))
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
