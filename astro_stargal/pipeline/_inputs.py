"""From images and positions to network inputs: the one preparation routine.

`prepare_inputs` is used by `~astro_stargal.classify_sources`, by training and
by evaluation alike. It runs in two stages, which the inference loop also runs
apart:

1. `cut_stamps` (NumPy, on CPU threads): each source's position on each
   band's pixel grid (`locate_sources`), and its raw stamp
   (`~astro_stargal.pipeline.extract_stamps`), NaN where a pixel is off the
   image, masked or not finite. Only memory gathers: the part of the work that
   has to touch the images. On a GPU with room for the images,
   `DeviceImages` cuts the stamps there instead.
2. `finish_inputs`: the flags, the catalog features and the normalised stamps
   ``asinh((pixel - local background) / (3 * sky noise))``, so that the
   network sees signal-to-noise maps whatever the image units. The features
   are measured on the whole stamp; the normalised stamps keep only its
   central ``image_crop`` pixels when a model asks for fewer. Where a band
   has a noise map (`~astro_stargal.io.NoiseMap`), its noise stamps are cut
   beside the pixel stamps and each pixel is divided by its own sigma;
   pixels of zero weight are bad pixels. On the CPU this
   is the NumPy reference (`~astro_stargal.pipeline.measure_features`); on a
   GPU the same arithmetic in PyTorch
   (`~astro_stargal.pipeline.measure_features_torch`) runs beside the
   network. The test suite holds the two equal to float32 rounding.

Pixels that are off the image, NaN, infinite or masked are set to 0 and marked
0 in a validity channel; a band that is missing for a source has both channels
0 and its catalog step marked absent.
"""

from dataclasses import dataclass, fields

import numpy as np
import torch

from ..flags import SourceFlag
from ._cutouts import extract_stamps, stamp_origin
from ._features import FEATURE_NAMES, PSF_FEATURE_NAMES, measure_features, measure_features_torch
from ._psf_tables import PSFTables

__all__ = [
    "IMAGE_SOFTENING",
    "LOW_SNR_THRESHOLD",
    "BandConstants",
    "DeviceImages",
    "PreparedInputs",
    "RawStamps",
    "cut_stamps",
    "finish_inputs",
    "locate_sources",
    "pixel_positions_by_band",
    "prepare_inputs",
    "shared_grids",
]

#: Stamps are divided by this many sky sigmas before the asinh stretch.
IMAGE_SOFTENING = 3.0

#: Sources whose best band has an aperture S/N below this get the LOW_SNR flag.
LOW_SNR_THRESHOLD = 5.0

#: Half-width (pixels) of the central box checked for saturated and bad pixels.
CENTRAL_HALF_WIDTH = 2

#: Stamp origins are clipped to this many pixels, so far-off positions fit in int32.
_ORIGIN_LIMIT = 2**30

_NUMPY_DTYPES = {torch.float32: np.float32, torch.int32: np.int32, torch.bool: np.bool_}

#: Every feature this version can measure: on the source alone, then against the local PSF.
KNOWN_FEATURES = FEATURE_NAMES + PSF_FEATURE_NAMES


def _field_values(record):
    return tuple(getattr(record, item.name) for item in fields(record))


def _map_fields(record, function):
    """A copy of the dataclass ``record`` with ``function`` applied to every field that is not None."""
    return type(record)(*(None if value is None else function(value) for value in _field_values(record)))


class _SourceRows:
    """Slicing, device moves and joining for a dataclass whose fields hold one row per source."""

    def __getitem__(self, rows):
        """The sources in ``rows`` (views for a slice)."""
        return _map_fields(self, lambda part: part[rows])

    def to(self, device, *, non_blocking=False):
        """Tensors on ``device`` (copied asynchronously from pinned memory when ``non_blocking``)."""
        return _map_fields(self, lambda part: torch.as_tensor(part).to(device, non_blocking=non_blocking))

    @classmethod
    def concatenate(cls, parts):
        """Join the sources of several records (all NumPy or all tensors), in order."""
        if len(parts) == 1:
            return parts[0]
        columns = zip(*(_field_values(part) for part in parts), strict=True)
        return cls(*(_join(column) for column in columns))


def _join(column):
    """Concatenate one field's values from several records (None stays None)."""
    if column[0] is None:
        return None
    return torch.cat(column) if torch.is_tensor(column[0]) else np.concatenate(column)


@dataclass
class PreparedInputs(_SourceRows):
    """Network inputs for a batch of sources (NumPy arrays or tensors).

    Attributes
    ----------
    stamps : 4D float32 array
        ``(n_sources, 2 * n_bands, n, n)``: normalised pixels of each band,
        then one validity channel per band.
    catalog : 3D float32 array
        ``(n_sources, n_bands, n_features + 1)``: raw features of each band
        (ordered by wavelength) and a last column that is 1 where the band is present.
    flags : 1D int32 array
        `~astro_stargal.flags.SourceFlag` bits.

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
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
        return (self.catalog[:, :, -1] != 0).any(1)

    def __len__(self):
        return len(self.flags)

    def numpy(self):
        """NumPy arrays (copied from the device if need be)."""
        return _map_fields(self, lambda part: np.asarray(part.cpu()) if torch.is_tensor(part) else part)


@dataclass
class RawStamps(_SourceRows):
    """Raw stamps of a run of sources in every band, as `cut_stamps` makes them (CPU tensors).

    Attributes
    ----------
    pixels : 4D float32 `torch.Tensor` or None
        ``(n_sources, n_bands, n, n)`` image pixels; NaN where off the image,
        masked or not finite, and everywhere in a band without an image.
        None until cut (`locate_sources` leaves it for `DeviceImages.cut`).
    x_in_stamp, y_in_stamp : 2D float32 `torch.Tensor`
        ``(n_sources, n_bands)`` source centre in stamp pixels (0 where unknown).
    origin : 3D int32 `torch.Tensor`
        ``(n_sources, n_bands, 2)`` image pixel ``(x0, y0)`` of each stamp's first pixel.
    centre_on_image : 2D bool `torch.Tensor`
        ``(n_sources, n_bands)``: the source centre falls on a pixel of the image.
    position_valid : 1D bool `torch.Tensor`
        False where the table's position is bad.
    noise : 4D float32 `torch.Tensor` or None
        ``(n_sources, n_bands, n, n)`` per-pixel sigma, when some band has a
        noise map (None otherwise): cut from the map (NaN where the pixel is
        bad or off the image), the band's sky noise everywhere in a band
        without one, NaN in a band without an image.
    psf_node : 2D int32 `torch.Tensor` or None
        ``(n_sources, n_bands)`` node of the band's PSF model nearest each
        source, when PSF models are given (None otherwise).

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0, 2.0]), y=np.array([30.0, 40.0]),
    ...                         valid=np.array([True, True]))
    >>> raw = cut_stamps(images, where, ["g", "r"], 32)
    >>> tuple(raw.pixels.shape), len(raw[1:])
    ((2, 2, 32, 32), 1)
    >>> bool(raw.pixels[:, 0].isnan().all())  # no g image
    True
    """

    pixels: torch.Tensor
    x_in_stamp: torch.Tensor
    y_in_stamp: torch.Tensor
    origin: torch.Tensor
    centre_on_image: torch.Tensor
    position_valid: torch.Tensor
    noise: torch.Tensor | None = None
    psf_node: torch.Tensor | None = None

    def __len__(self):
        return len(self.position_valid)


@dataclass
class BandConstants:
    """Per-band numbers that `finish_inputs` needs, as tensors (on the CPU unless moved with `to`).

    Attributes
    ----------
    available : 1D bool `torch.Tensor`
        The band has an image.
    noise, zeropoint, saturation : 1D float32 `torch.Tensor`
        Sky noise, AB zero point and saturation level (placeholders where unavailable).
    shape : 2D int64 `torch.Tensor`
        ``(n_bands, 2)`` image shape ``(ny, nx)`` (0 where unavailable).
    noise_map : 1D bool `torch.Tensor`
        The band has a per-pixel noise map.
    feature_index : 1D int64 `torch.Tensor`
        Columns of the measured features that make the model's catalog, in its order.
    image_softening : 0D float32 `torch.Tensor`
        Sky sigmas per unit of the stamps' asinh stretch.
    image_crop : 0D int64 `torch.Tensor`
        Side of the central part of each stamp kept as the network's image
        (0: the whole stamp).
    psf_tables : `PSFTables` or None
        Every band's PSF, nodes stacked, when the model uses PSF features.
    psf_offset : 1D int64 `torch.Tensor`
        Index in ``psf_tables`` of each band's node 0.

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> constants = BandConstants.from_images(images, ["g", "r"])
    >>> constants.available.tolist(), constants.shape.tolist()
    ([False, True], [[0, 0], [64, 64]])
    """

    available: torch.Tensor
    noise: torch.Tensor
    zeropoint: torch.Tensor
    saturation: torch.Tensor
    shape: torch.Tensor
    noise_map: torch.Tensor
    feature_index: torch.Tensor
    image_softening: torch.Tensor
    psf_tables: PSFTables | None
    psf_offset: torch.Tensor
    image_crop: torch.Tensor = None

    def crop(self, size):
        """The slice of a ``size``-pixel stamp that the network sees (centred as the stamp is)."""
        crop = int(self.image_crop) if self.image_crop is not None else 0
        if crop <= 0 or crop >= size:
            return slice(None)
        start = size // 2 - crop // 2
        return slice(start, start + crop)

    def to(self, device):
        """The same constants on ``device``."""
        return _map_fields(self, lambda part: part.to(device))

    @classmethod
    def from_images(
        cls,
        band_images,
        bands,
        device="cpu",
        *,
        feature_names=FEATURE_NAMES,
        image_softening=IMAGE_SOFTENING,
        psf_models=None,
        stamp_size=None,
        image_crop=None,
    ):
        """Collect the constants of ``band_images`` in the order of ``bands``.

        Parameters
        ----------
        band_images : dict
            Band -> `~astro_stargal.io.BandImage`, any subset of ``bands``.
        bands : sequence of str
        device : str or `torch.device`, optional
        feature_names : sequence of str, optional
            The model's catalog features, in its order (see `KNOWN_FEATURES`).
        image_softening : float, optional
            Sky sigmas per unit of the stamps' asinh stretch.
        psf_models : dict, optional
            Band -> `~astro_stargal.psf.PSFModel`, for every band in
            ``band_images``; needed when ``feature_names`` has PSF features.
        stamp_size : int, optional
            Needed with ``psf_models``.
        image_crop : int, optional
            Keep only the central ``image_crop`` pixels of each stamp as the
            network's image (default: the whole stamp).

        Returns
        -------
        constants : `BandConstants`

        Raises
        ------
        ValueError
            If a feature name is unknown, or PSF features are asked for
            without a PSF for every band.
        """
        feature_index, needs_psf = _feature_index(feature_names)
        tables, offsets = None, [0] * len(bands)
        if needs_psf:
            missing = [band for band in band_images if band not in (psf_models or {})]
            if missing:
                msg = f"the model measures sources against the PSF, but band(s) {missing} have no PSF model"
                raise ValueError(msg)
            present = [band for band in bands if band in band_images]
            stacked, first_nodes = PSFTables.stack(
                [PSFTables.from_psf(psf_models[b], stamp_size) for b in present]
            )
            tables = stacked.to(device)
            for band, first in zip(present, first_nodes, strict=True):
                offsets[list(bands).index(band)] = first
        images = [band_images.get(band) for band in bands]

        def column(value, missing, dtype=torch.float32):
            values = [missing if image is None else value(image) for image in images]
            return torch.tensor(values, dtype=dtype, device=device)

        return cls(
            available=column(lambda image: True, False, torch.bool),
            noise=column(lambda image: image.noise, 1.0),
            zeropoint=column(lambda image: image.zeropoint, 0.0),
            saturation=column(lambda image: image.saturation, np.inf),
            shape=column(lambda image: image.shape, (0, 0), torch.int64),
            noise_map=column(lambda image: image.noise_map is not None, False, torch.bool),
            feature_index=torch.tensor(feature_index, dtype=torch.int64, device=device),
            image_softening=torch.tensor(float(image_softening), dtype=torch.float32, device=device),
            psf_tables=tables,
            psf_offset=torch.tensor(offsets, dtype=torch.int64, device=device),
            image_crop=torch.tensor(int(image_crop or 0), dtype=torch.int64, device=device),
        )


def _feature_index(feature_names):
    """Columns of the measured features (`KNOWN_FEATURES` order) that make a model's catalog, and whether PSF ones are among them."""
    unknown = [name for name in feature_names if name not in KNOWN_FEATURES]
    if unknown:
        msg = f"unknown catalog feature(s) {unknown}; this version measures {list(KNOWN_FEATURES)}"
        raise ValueError(msg)
    index = [KNOWN_FEATURES.index(name) for name in feature_names]
    return index, any(name in PSF_FEATURE_NAMES for name in feature_names)


def shared_grids(band_images, bands):
    """For each band, the first band whose image has the same pixel grid (WCS), or None.

    Sources are transformed once per distinct grid rather than once per band.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`.
    bands : sequence of str

    Returns
    -------
    same_as : dict
        Band -> the band whose pixel positions it can reuse (itself when first).

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({b: (rng.normal(size=(64, 64)), None) for b in "gr"}, ["g", "r"],
    ...                      zeropoints={"g": 25.0, "r": 25.0})
    >>> shared_grids(images, ["g", "r"])
    {'g': 'g', 'r': 'g'}
    """
    same_as, seen = {}, []
    for band in bands:
        image = band_images.get(band)
        if image is None:
            continue
        key = _grid_key(image.wcs)
        match = next((first for first, first_key in seen if first_key == key), None)
        if match is None:
            seen.append((band, key))
        same_as[band] = match or band
    return same_as


def pixel_positions_by_band(band_images, positions, bands, same_grid=None):
    """Each present band's ``(x, y)`` pixel positions of the sources, transformed once per distinct grid.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`, any subset of ``bands``.
    positions : `~astro_stargal.io.SourcePositions`
    bands : sequence of str
    same_grid : dict, optional
        `shared_grids` of ``band_images`` (computed here when not given).

    Returns
    -------
    pixels : dict
        Band -> ``(x, y)`` arrays (NaN for bad positions), for the bands of
        ``bands`` that ``band_images`` holds; bands on one grid share the arrays.

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({b: (rng.normal(size=(64, 64)), None) for b in "gr"}, ["g", "r"],
    ...                      zeropoints={"g": 25.0, "r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0]), y=np.array([12.0]), valid=np.array([True]))
    >>> pixels = pixel_positions_by_band(images, where, ["g", "r"])
    >>> pixels["r"] is pixels["g"], pixels["r"][1].tolist()
    (True, [12.0])
    """
    if same_grid is None:
        same_grid = shared_grids(band_images, bands)
    transformed = {grid: positions.pixel_positions(band_images[grid].wcs) for grid in set(same_grid.values())}
    return {band: transformed[grid] for band, grid in same_grid.items()}


def locate_sources(
    band_images, positions, bands, stamp_size, *, same_grid=None, pin_memory=False, psf_models=None
):
    """Where each source's stamp falls in each band: everything of `RawStamps` but the pixels.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`, any subset of ``bands``.
    positions : `~astro_stargal.io.SourcePositions`
        The sources.
    bands : sequence of str
        The model's bands, ordered by wavelength.
    stamp_size : int
        Stamp side in pixels.
    same_grid : dict, optional
        `shared_grids` of ``band_images`` (computed here when not given).
    pin_memory : bool, optional
        Use page-locked memory, for asynchronous copies to a GPU.
    psf_models : dict, optional
        Band -> `~astro_stargal.psf.PSFModel`: fills ``psf_node``.

    Returns
    -------
    raw : `RawStamps`
        With ``pixels`` None. Sources without a finite position get stamp
        origins far off every image.

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0, 2.0]), y=np.array([30.0, 40.0]),
    ...                         valid=np.array([True, True]))
    >>> raw = locate_sources(images, where, ["g", "r"], 32)
    >>> raw.pixels is None, raw.origin[:, 1].tolist(), raw.x_in_stamp[:, 1].tolist()
    (True, [[14, 14], [-14, 24]], [16.0, 16.0])
    """
    return _locate(band_images, positions, bands, stamp_size, same_grid, pin_memory, psf_models)[0]


def _locate(band_images, positions, bands, stamp_size, same_grid, pin_memory=False, psf_models=None):
    """`locate_sources`, and each present band's pixel positions (`pixel_positions_by_band`)."""
    pixels = pixel_positions_by_band(band_images, positions, bands, same_grid)
    n_sources, n_bands = len(positions), len(bands)

    def zeros(shape, dtype):
        return _host_array(shape, dtype, pin_memory).zero_()

    tensors = RawStamps(
        pixels=None,
        x_in_stamp=zeros((n_sources, n_bands), torch.float32),
        y_in_stamp=zeros((n_sources, n_bands), torch.float32),
        origin=zeros((n_sources, n_bands, 2), torch.int32),
        centre_on_image=zeros((n_sources, n_bands), torch.bool),
        position_valid=zeros(n_sources, torch.bool),
        psf_node=None if psf_models is None else zeros((n_sources, n_bands), torch.int32),
    )
    x_in_stamp, y_in_stamp = tensors.x_in_stamp.numpy(), tensors.y_in_stamp.numpy()
    origin, centre_on_image = tensors.origin.numpy(), tensors.centre_on_image.numpy()
    origin[...] = -_ORIGIN_LIMIT
    tensors.position_valid.numpy()[...] = positions.valid
    for index, band in enumerate(bands):
        if band not in pixels:
            continue
        x, y = pixels[band]
        finite = np.isfinite(x) & np.isfinite(y)
        x0, y0 = stamp_origin(np.where(finite, x, 0.0), np.where(finite, y, 0.0), stamp_size)
        origin[:, index, 0] = np.where(finite, np.clip(x0, -_ORIGIN_LIMIT, _ORIGIN_LIMIT), -_ORIGIN_LIMIT)
        origin[:, index, 1] = np.where(finite, np.clip(y0, -_ORIGIN_LIMIT, _ORIGIN_LIMIT), -_ORIGIN_LIMIT)
        x_in_stamp[:, index] = np.where(finite, x - x0, 0.0)
        y_in_stamp[:, index] = np.where(finite, y - y0, 0.0)
        centre_on_image[:, index] = finite & _centre_on_image(x, y, band_images[band].shape)
        if psf_models is not None and band in psf_models:
            tensors.psf_node.numpy()[:, index] = psf_models[band].node_of(x, y)
    return tensors, pixels


def cut_stamps(
    band_images, positions, bands, stamp_size, *, same_grid=None, pin_memory=False, psf_models=None
):
    """Stage 1: cut every source's raw stamp in every band (NumPy gathers, no arithmetic on pixels).

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`, any subset of ``bands``.
    positions : `~astro_stargal.io.SourcePositions`
        The sources.
    bands : sequence of str
        The model's bands, ordered by wavelength.
    stamp_size : int
        Stamp side in pixels.
    same_grid : dict, optional
        `shared_grids` of ``band_images`` (computed here when not given).
    pin_memory : bool, optional
        Cut into page-locked memory, for fast asynchronous copies to a GPU.
    psf_models : dict, optional
        Band -> `~astro_stargal.psf.PSFModel`: fills ``psf_node``.

    Returns
    -------
    raw : `RawStamps`

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0, 2.0]), y=np.array([30.0, 40.0]),
    ...                         valid=np.array([True, True]))
    >>> raw = cut_stamps(images, where, ["g", "r"], 32)
    >>> int(raw.pixels[1, 1].isnan().sum())  # the second source's stamp runs 14 columns off the image
    448
    """
    raw, pixel_positions = _locate(
        band_images, positions, bands, stamp_size, same_grid, pin_memory, psf_models
    )
    shape = (len(positions), len(bands), stamp_size, stamp_size)
    pixels = _host_array(shape, torch.float32, pin_memory)
    pixel_view = pixels.numpy()
    noise = _host_array(shape, torch.float32, pin_memory) if _any_noise_map(band_images) else None
    for index, band in enumerate(bands):
        image = band_images.get(band)
        if image is None:
            pixel_view[:, index] = np.nan
            if noise is not None:
                noise.numpy()[:, index] = np.nan
            continue
        x, y = pixel_positions[band]
        extract_stamps(image.data, x, y, stamp_size, mask=image.mask, out=pixel_view[:, index])
        if noise is None:
            continue
        noise_view = noise.numpy()[:, index]
        if image.noise_map is None:
            noise_view[...] = image.noise
            continue
        extract_stamps(image.noise_map.values, x, y, stamp_size, out=noise_view)
        image.noise_map.sigma(noise_view, out=noise_view)
        # A pixel of zero weight (or unusable noise) is a bad pixel.
        np.copyto(pixel_view[:, index], np.nan, where=np.isnan(noise_view))
    raw.pixels = pixels
    raw.noise = noise
    return raw


def _any_noise_map(band_images):
    return any(image.noise_map is not None for image in band_images.values())


class DeviceImages:
    """Every band's pixels held on a device (float32, NaN where masked), to cut stamps there.

    On a GPU with room for the images, stamps are gathered by the GPU itself
    and the CPU only transforms positions: the images cross the bus once
    instead of once per stamp pixel. Noise maps travel as per-pixel sigma
    planes beside their images.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`, any subset of ``bands``.
    bands : sequence of str
    stamp_size : int
    device : `torch.device`

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0, 2.0]), y=np.array([30.0, 40.0]),
    ...                         valid=np.array([True, True]))
    >>> on_device = DeviceImages(images, ["g", "r"], 32, "cpu")  # "cuda" in use
    >>> raw = on_device.cut(locate_sources(images, where, ["g", "r"], 32))
    >>> torch.equal(raw.pixels.nan_to_num(), cut_stamps(images, where, ["g", "r"], 32).pixels.nan_to_num())
    True
    """

    #: Rows of an image converted and copied at a time (bounds the host memory used).
    UPLOAD_ROWS = 2048

    def __init__(self, band_images, bands, stamp_size, device):
        self.device = torch.device(device)
        self.stamp_size = stamp_size
        images = [band_images.get(band) for band in bands]
        uploaded = [None if image is None else self._upload(image, self.device) for image in images]
        self.planes = [None if planes is None else planes[0] for planes in uploaded]
        self.noise_planes = [None if planes is None else planes[1] for planes in uploaded]
        # As in cut_stamps: noise stamps only when some band has a noise map; the sky noise in the others.
        self.sky_noise = None
        if _any_noise_map(band_images):
            self.sky_noise = [np.nan if image is None else image.noise for image in images]

    @staticmethod
    def fit(band_images, device, fraction=0.25):
        """True if the images (and noise maps) take at most ``fraction`` of the device's free memory.

        Always False on a CPU.
        """
        device = torch.device(device)
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        needed = sum(
            4 * image.data.size * (1 if image.noise_map is None else 2) for image in band_images.values()
        )
        return needed <= fraction * free

    @classmethod
    def _upload(cls, image, device):
        """The image plane and its sigma plane (None without a noise map) on ``device``."""
        ny, _ = image.shape
        plane = torch.empty(image.shape, dtype=torch.float32, device=device)
        noise_plane = None
        if image.noise_map is not None:
            noise_plane = torch.empty(image.shape, dtype=torch.float32, device=device)
        for start in range(0, ny, cls.UPLOAD_ROWS):
            rows = slice(start, start + cls.UPLOAD_ROWS)
            block = np.ascontiguousarray(image.data[rows], dtype=np.float32)
            if image.mask is not None:
                block[np.asarray(image.mask[rows], dtype=bool)] = np.nan
            if noise_plane is not None:
                sigma = image.noise_map.sigma(image.noise_map.values[rows])
                block[np.isnan(sigma)] = np.nan
                noise_plane[rows].copy_(torch.from_numpy(sigma))
            plane[rows].copy_(torch.from_numpy(block))
        return plane, noise_plane

    def cut(self, raw):
        """Fill ``raw.pixels`` (and ``raw.noise``) by gathering on the device.

        ``raw`` is from `locate_sources`, on this device. The result equals
        `cut_stamps`: NaN off the image and where masked.
        """
        n_sources, n_bands = raw.x_in_stamp.shape
        shape = (n_sources, n_bands, self.stamp_size, self.stamp_size)
        pixels = torch.full(shape, torch.nan, device=self.device)
        noise = None if self.sky_noise is None else torch.full(shape, torch.nan, device=self.device)
        offsets = torch.arange(self.stamp_size, device=self.device)
        for index, plane in enumerate(self.planes):
            if plane is None:
                continue
            ny, nx = plane.shape
            columns = raw.origin[:, index, 0, None] + offsets
            rows = raw.origin[:, index, 1, None] + offsets
            on_image = ((rows >= 0) & (rows < ny))[:, :, None] & ((columns >= 0) & (columns < nx))[:, None, :]
            flat = rows.clamp(0, ny - 1)[:, :, None] * nx + columns.clamp(0, nx - 1)[:, None, :]
            pixels[:, index] = torch.where(on_image, plane.flatten()[flat], torch.nan)
            if noise is None:
                continue
            if self.noise_planes[index] is None:
                noise[:, index] = self.sky_noise[index]
            else:
                noise[:, index] = torch.where(on_image, self.noise_planes[index].flatten()[flat], torch.nan)
        raw.pixels = pixels
        raw.noise = noise
        return raw


def finish_inputs(raw, constants):
    """Stage 2: flags, catalog features and normalised stamps, where ``raw`` is.

    On the CPU this runs the NumPy reference (`measure_features`); with
    ``raw`` on a GPU, the PyTorch kernels (`measure_features_torch`) there.
    The test suite holds the two equal to float32 rounding.

    Parameters
    ----------
    raw : `RawStamps`
        On the device where the work should run.
    constants : `BandConstants`

    Returns
    -------
    inputs : `PreparedInputs`
        NumPy arrays for CPU input, tensors on the device otherwise.

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0, 2.0]), y=np.array([30.0, 40.0]),
    ...                         valid=np.array([True, True]))
    >>> raw = cut_stamps(images, where, ["g", "r"], 32)
    >>> inputs = finish_inputs(raw, BandConstants.from_images(images, ["g", "r"]))
    >>> inputs.stamps.shape, inputs.flags.tolist()  # BAND_MISSING | LOW_SNR (noise only), and PARTIAL_OVERLAP
    ((2, 4, 32, 32), [40, 42])
    """
    if raw.pixels.device.type == "cpu":
        return _finish_numpy(raw, constants)
    return _finish_torch(raw, constants.to(raw.pixels.device))


def _finish_numpy(raw, constants):
    pixels = raw.pixels.numpy()
    x_in_stamp, y_in_stamp = raw.x_in_stamp.numpy(), raw.y_in_stamp.numpy()
    origin = raw.origin.numpy()
    n_sources, n_bands, size, _ = pixels.shape
    crop = constants.crop(size)
    side = len(range(size)[crop])
    stamps = np.zeros((n_sources, 2 * n_bands, side, side), dtype=np.float32)
    feature_index = constants.feature_index.cpu().numpy()
    catalog = np.zeros((n_sources, n_bands, len(feature_index) + 1), dtype=np.float32)
    softening = float(constants.image_softening)
    position_valid = raw.position_valid.numpy()
    flags = np.where(position_valid, 0, SourceFlag.BAD_POSITION).astype(np.int32)
    best_snr = np.full(n_sources, -np.inf)
    centre = slice(size // 2 - CENTRAL_HALF_WIDTH, size // 2 + CENTRAL_HALF_WIDTH)
    available = constants.available.cpu().numpy()

    for index in np.flatnonzero(available):
        band_pixels = pixels[:, index]
        central = band_pixels[:, centre, centre]
        central_valid = np.isfinite(central)
        present = raw.centre_on_image[:, index].numpy() & central_valid.any(axis=(1, 2))
        if not present.any():
            continue
        # A slice when every source is present, so the stamps are not copied.
        rows = slice(None) if present.all() else np.flatnonzero(present)
        present_pixels = band_pixels[rows]
        valid = np.isfinite(present_pixels)
        ny, nx = (int(value) for value in constants.shape[index])
        x0, y0 = origin[rows, index, 0], origin[rows, index, 1]
        wholly_on = (x0 >= 0) & (y0 >= 0) & (x0 + size <= nx) & (y0 + size <= ny)
        # Every pixel off the image is invalid, so a stamp has bad pixels when it has more invalid pixels.
        off_image = size * size - _on_image_count(x0, size, nx) * _on_image_count(y0, size, ny)
        bad_pixels = (size * size - valid.sum(axis=(1, 2))) > off_image
        # Infinite pixels are bad pixels, not saturated ones (they would reach an unknown, infinite level).
        saturation = float(constants.saturation[index])
        saturated = (np.where(central_valid[rows], central[rows], -np.inf) >= saturation).any(axis=(1, 2))
        flags[rows] |= np.where(wholly_on, 0, SourceFlag.PARTIAL_OVERLAP).astype(np.int32)
        flags[rows] |= np.where(bad_pixels, SourceFlag.BAD_PIXELS, 0).astype(np.int32)
        flags[rows] |= np.where(saturated, SourceFlag.SATURATED, 0).astype(np.int32)

        noise = float(constants.noise[index])
        if constants.noise_map[index]:
            noise = raw.noise.numpy()[rows, index]
        psf = {}
        if constants.psf_tables is not None:
            node = raw.psf_node.numpy()[rows, index].astype(np.intp) + int(constants.psf_offset[index])
            psf = {"psf_tables": constants.psf_tables.numpy(), "psf_node": node}
        features, background, snr = measure_features(
            present_pixels,
            x_in_stamp[rows, index],
            y_in_stamp[rows, index],
            noise=noise,
            zeropoint=float(constants.zeropoint[index]),
            **psf,
        )
        # Only the pixels the network sees are normalised.
        if not np.isscalar(noise):
            noise = noise[:, crop, crop]
        kept_valid = valid[:, crop, crop]
        normalised = present_pixels[:, crop, crop] - background[:, None, None]
        normalised /= softening * noise
        np.arcsinh(normalised, out=normalised)
        normalised[~kept_valid] = 0.0
        stamps[rows, index] = normalised
        stamps[rows, n_bands + index] = kept_valid
        catalog[rows, index, :-1] = features[:, feature_index]
        catalog[rows, index, -1] = 1.0
        best_snr[rows] = np.maximum(best_snr[rows], snr)

    present = catalog[:, :, -1] != 0
    missing_band = ~present.all(axis=1)
    no_band = ~present.any(axis=1)
    flags[missing_band & ~no_band] |= SourceFlag.BAND_MISSING
    flags[no_band & position_valid] |= SourceFlag.OFF_IMAGE
    flags[~no_band & (best_snr < LOW_SNR_THRESHOLD)] |= SourceFlag.LOW_SNR
    return PreparedInputs(stamps=stamps, catalog=catalog, flags=flags)


def _on_image_count(first, size, length):
    """Number of the ``size`` pixels from index ``first`` on that lie within ``[0, length)``."""
    return np.clip(np.minimum(first + size, length) - np.maximum(first, 0), 0, size)


@torch.inference_mode()
def _finish_torch(raw, constants):
    pixels = raw.pixels
    n_sources, n_bands, size, _ = pixels.shape
    valid = torch.isfinite(pixels)
    centre = slice(size // 2 - CENTRAL_HALF_WIDTH, size // 2 + CENTRAL_HALF_WIDTH)
    central_valid = valid[..., centre, centre]
    present = constants.available & raw.centre_on_image & central_valid.any(dim=-1).any(dim=-1)

    # Which stamp pixels lie on the image follows from the stamp origin and the image shape.
    offsets = torch.arange(size, device=pixels.device)
    columns = raw.origin[..., 0, None] + offsets
    rows = raw.origin[..., 1, None] + offsets
    column_on = (columns >= 0) & (columns < constants.shape[:, 1, None])
    row_on = (rows >= 0) & (rows < constants.shape[:, 0, None])
    partial = ~(column_on.all(dim=-1) & row_on.all(dim=-1))
    # Every pixel off the image is invalid, so a stamp has bad pixels when it has more invalid pixels.
    off_image = size * size - column_on.sum(dim=-1) * row_on.sum(dim=-1)
    bad_pixels = (size * size - valid.flatten(2).sum(dim=-1)) > off_image
    # Infinite pixels are bad pixels, not saturated ones (they would reach an unknown, infinite level).
    central = torch.where(central_valid, pixels[..., centre, centre], -torch.inf)
    saturated = (central >= constants.saturation[:, None, None]).flatten(2).any(dim=-1)

    # Per-pixel noise stamps when some band has a noise map, else one sky noise per band.
    noise = constants.noise[:, None, None] if raw.noise is None else raw.noise
    psf = {}
    if constants.psf_tables is not None:
        node = raw.psf_node.long() + constants.psf_offset
        psf = {"psf_tables": constants.psf_tables, "psf_node": node.flatten()}
    features, background, snr = measure_features_torch(
        pixels.flatten(0, 1),
        raw.x_in_stamp.flatten(),
        raw.y_in_stamp.flatten(),
        noise=constants.noise.repeat(n_sources) if raw.noise is None else raw.noise.flatten(0, 1),
        zeropoint=constants.zeropoint.repeat(n_sources),
        **psf,
    )
    features = features.view(n_sources, n_bands, -1)[..., constants.feature_index]
    background = background.view(n_sources, n_bands)
    snr = snr.view(n_sources, n_bands)

    crop = constants.crop(size)
    keep = valid[..., crop, crop] & present[..., None, None]
    if raw.noise is not None:
        noise = noise[..., crop, crop]
    normalised = (pixels[..., crop, crop] - background[..., None, None]) / (constants.image_softening * noise)
    normalised = torch.where(keep, torch.asinh(normalised), 0.0)
    stamps = torch.cat([normalised, keep.float()], dim=1)
    present_column = present[..., None].float()
    catalog = torch.cat([features * present_column, present_column], dim=-1)

    flags = torch.where(raw.position_valid, 0, int(SourceFlag.BAD_POSITION)).int()
    for flag, condition in (
        (SourceFlag.PARTIAL_OVERLAP, partial),
        (SourceFlag.BAD_PIXELS, bad_pixels),
        (SourceFlag.SATURATED, saturated),
    ):
        flags |= torch.where((present & condition).any(dim=1), int(flag), 0).int()
    missing_band = (~present).any(dim=1)
    no_band = (~present).all(dim=1)
    best_snr = torch.where(present, snr, -torch.inf).amax(dim=1)
    flags |= torch.where(missing_band & ~no_band, int(SourceFlag.BAND_MISSING), 0).int()
    flags |= torch.where(no_band & raw.position_valid, int(SourceFlag.OFF_IMAGE), 0).int()
    flags |= torch.where(~no_band & (best_snr < LOW_SNR_THRESHOLD), int(SourceFlag.LOW_SNR), 0).int()
    return PreparedInputs(stamps=stamps, catalog=catalog, flags=flags)


def prepare_inputs(band_images, positions, bands, stamp_size, *, device="cpu", image_crop=None):
    """Cut, measure and normalise every source in every band (both stages).

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`, any subset of ``bands``.
    positions : `~astro_stargal.io.SourcePositions`
        The sources.
    bands : sequence of str
        The model's bands, ordered by wavelength.
    stamp_size : int
        Stamp side in pixels.
    device : str or `torch.device`, optional
        Where `finish_inputs` runs.
    image_crop : int, optional
        Side of the central part of each stamp kept as the network's image
        (a model's `~astro_stargal.models.LoadedModel.image_crop`; default the whole stamp).

    Returns
    -------
    inputs : `PreparedInputs`
        NumPy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import SourcePositions
    >>> rng = np.random.default_rng(1)
    >>> images = read_images({"r": (rng.normal(size=(64, 64)), None)}, ["g", "r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0]), y=np.array([30.0]),
    ...                         valid=np.array([True]))
    >>> prepare_inputs(images, where, ["g", "r"], 32).stamps.shape
    (1, 4, 32, 32)
    """
    raw = cut_stamps(band_images, positions, bands, stamp_size).to(device)
    inputs = finish_inputs(raw, BandConstants.from_images(band_images, bands, image_crop=image_crop))
    return inputs.numpy()


def _grid_key(wcs):
    """What identifies a pixel grid: the full header (SIP included), or the object itself.

    Lookup-table distortions are not in the header, so a WCS that has them shares
    its grid with no other.
    """
    if wcs is None:
        return None
    if any(getattr(wcs, name, None) is not None for name in ("cpdis1", "cpdis2", "det2im1", "det2im2")):
        return id(wcs)
    return wcs.to_header_string(relax=True)


def _host_array(shape, dtype, pin_memory):
    """An uninitialised CPU tensor: page-locked, or NumPy-allocated (so that memory tracing sees it)."""
    if pin_memory:
        return torch.empty(shape, dtype=dtype, pin_memory=True)
    return torch.from_numpy(np.empty(shape, dtype=_NUMPY_DTYPES[dtype]))


def _centre_on_image(x, y, shape):
    """True where the source centre falls on a pixel of the image (astropy pixel edges at -0.5)."""
    ny, nx = shape
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
