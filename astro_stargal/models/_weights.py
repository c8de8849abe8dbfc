"""Loading and saving trained weights (checksum checked before anything is read)."""

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .._files import atomic_write, sha256
from ._device import resolve_device
from ._format import (
    FORMAT_VERSION,
    METADATA_FILE,
    TENSOR_FILE,
    check_metadata,
    dequantise_state,
    quantise_state,
    read_metadata,
)
from ._network import StarGalaxyNet
from ._registry import weights_directory

__all__ = ["LoadedModel", "build_network", "load_model", "save_weights"]


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference, with the description of its weights.

    Attributes
    ----------
    net : `~astro_stargal.models.StarGalaxyNet`
        The network, in evaluation mode, on ``device``.
    metadata : dict
        The contents of ``model.json``.
    device : `torch.device`

    Examples
    --------
    >>> model = load_model(device="cpu")  # doctest: +SKIP
    >>> model.name, model.bands, model.stamp_size  # doctest: +SKIP
    ('csst-resnet50-bilstm', ('NUV', 'u', 'g', 'r', 'i', 'z', 'y'), 32)
    """

    net: StarGalaxyNet
    metadata: dict
    device: torch.device

    @property
    def bands(self):
        """The model's bands, ordered by wavelength."""
        return tuple(self.metadata["bands"])

    @property
    def stamp_size(self):
        """Stamp side in pixels."""
        return int(self.metadata["stamp_size"])

    @property
    def feature_names(self):
        """The catalog features, in the network's order."""
        return tuple(self.metadata["feature_names"])

    @property
    def image_softening(self):
        """Sky sigmas per unit of the stamps' asinh stretch (3 for models that predate the entry)."""
        return float(self.metadata.get("preprocessing", {}).get("image_softening", 3.0))

    @property
    def image_crop(self):
        """Side (pixels) of the central part of each stamp that the network sees (the whole stamp by default).

        The catalog features are measured on the whole stamp; only the image
        branch's input is cropped.
        """
        return int(self.metadata.get("preprocessing", {}).get("image_crop", self.stamp_size))

    @property
    def pixel_scale(self):
        """Arcsec per pixel of the images the model was trained on (None if it does not say)."""
        return self.metadata.get("pixel_scale")

    @property
    def validity(self):
        """The measured validity range: ``psf_fwhm`` (arcsec) and ``psf_ellipticity_max`` per band."""
        return self.metadata.get("validity", {})

    @property
    def reference_psf_fwhm(self):
        """Band -> FWHM (arcsec) of the PSF assumed where a band's PSF cannot be measured."""
        return self.metadata.get("reference_psf_fwhm", {})

    @property
    def name(self):
        """The model's name."""
        return self.metadata["name"]


def save_weights(net, directory, *, metadata, quantise=True):
    """Write a weights directory that `load_model` and `~astro_stargal.classify_sources` read.

    Parameters
    ----------
    net : `~astro_stargal.models.StarGalaxyNet`
        The trained network (its feature normalisation and temperature included).
    directory : str or `~pathlib.Path`
        Created if needed; existing weight files are replaced atomically.
    metadata : dict
        At least ``name``, ``bands``, ``stamp_size`` and ``feature_names`` (in the
        network's order); ``preprocessing``, ``validity``, ``reference_psf_fwhm``
        and anything else JSON-able (training provenance, metrics) are kept.
    quantise : bool, optional
        Store large weight matrices as per-channel int8 (about 4x smaller).

    Returns
    -------
    path : `~pathlib.Path`
        The directory.

    Examples
    --------
    >>> import tempfile
    >>> net = StarGalaxyNet(2, 6, backbone="resnet18")
    >>> from astro_stargal.pipeline import FEATURE_NAMES
    >>> meta = {"name": "demo", "bands": ["g", "r"], "stamp_size": 32, "feature_names": list(FEATURE_NAMES)}
    >>> path = save_weights(net, tempfile.mkdtemp(), metadata=meta)
    >>> sorted(p.name for p in path.iterdir())
    ['model.json', 'model.safetensors']
    """
    missing = {"name", "bands", "stamp_size", "feature_names"} - set(metadata)
    if missing:
        msg = f"metadata lacks {sorted(missing)}"
        raise ValueError(msg)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in net.state_dict().items()}
    tensors = quantise_state(state) if quantise else state
    tensor_path = directory / TENSOR_FILE
    atomic_write(tensor_path, lambda path: save_file(tensors, path))

    full_metadata = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "weights_file": TENSOR_FILE,
        "sha256": sha256(tensor_path),
        "quantisation": "int8 per output channel, float16 scales" if quantise else "none",
        "architecture": {
            "backbone": net.backbone,
            "lstm_hidden": net.catalog_branch.hidden_size if "catalog" in net.branches else None,
            "branches": list(net.branches),
            "n_features": net.n_features,
        },
        "feature_mean": net.feature_mean.tolist(),
        "feature_std": net.feature_std.tolist(),
        "temperature": float(net.temperature),
        "calibration_bias": float(net.calibration_bias),
    }
    # The file says how its stamps are normalised, even when the caller left the standard value implicit.
    full_metadata["preprocessing"] = {"image_softening": 3.0, **metadata.get("preprocessing", {})}
    check_metadata(full_metadata, f"metadata for {str(directory)!r}")
    text = json.dumps(full_metadata, indent=2)
    atomic_write(directory / METADATA_FILE, lambda path: Path(path).write_text(text))
    return directory


def load_model(weights=None, *, device=None):
    """Load a model for inference.

    Parameters
    ----------
    weights : str, `~pathlib.Path` or `LoadedModel`, optional
        A registered model name (see `list_models` and `register_model`;
        default the bundled ``'csst-resnet50-bilstm'``), a weights directory
        or its ``model.json``, or an already loaded model (moved to
        ``device`` if needed). A string is a name when a model has it; one
        that is also an existing path is refused as ambiguous.
    device : str or `torch.device`, optional
        See `resolve_device`.

    Returns
    -------
    model : `LoadedModel`

    Raises
    ------
    ValueError
        If the tensor file's SHA-256 differs from the metadata (tampered or
        truncated), the tensors do not fit the described architecture, the
        name is claimed by two packages, or the named model's plugin fails.
    FileNotFoundError
        If the weights cannot be found.
    ImportError
        If the named model's plugin cannot be imported.

    Examples
    --------
    >>> model = load_model(device="cpu")  # doctest: +SKIP
    >>> model.bands  # doctest: +SKIP
    ('NUV', 'u', 'g', 'r', 'i', 'z', 'y')
    """
    device = resolve_device(device)
    if isinstance(weights, LoadedModel):
        if weights.device == device:
            return weights
        return LoadedModel(net=weights.net.to(device), metadata=weights.metadata, device=device)
    directory = weights_directory(weights)
    return _load_cached(str(directory.resolve()), _files_version(directory), str(device))


def _files_version(directory):
    """Cache key of a weights directory's contents: the metadata text and the tensor file's mtime and size."""
    metadata_path, tensor_path = directory / METADATA_FILE, directory / TENSOR_FILE
    text = metadata_path.read_text() if metadata_path.is_file() else ""
    stat = tensor_path.stat() if tensor_path.is_file() else None
    return text, None if stat is None else (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_cached(directory, version, device):
    directory = Path(directory)
    metadata = read_metadata(directory)
    tensor_path = directory / metadata.get("weights_file", TENSOR_FILE)
    if not tensor_path.exists():
        msg = f"weights file {str(tensor_path)!r} named in {METADATA_FILE} does not exist"
        raise FileNotFoundError(msg)
    digest = sha256(tensor_path)
    if digest != metadata.get("sha256"):
        msg = (
            f"weights file {str(tensor_path)!r} has SHA-256 {digest}, but {METADATA_FILE} records "
            f"{metadata.get('sha256')}: the file is tampered or truncated; refusing to load it"
        )
        raise ValueError(msg)
    try:
        tensors = load_file(tensor_path)
    except Exception as error:  # safetensors raises its own error type for malformed files
        msg = f"weights file {str(tensor_path)!r} is not a valid safetensors file ({error})"
        raise ValueError(msg) from error
    net = build_network(metadata)
    try:
        net.load_state_dict(dequantise_state(tensors), strict=True)
    except RuntimeError as error:
        msg = (
            f"weights in {str(directory)!r} do not fit the architecture their {METADATA_FILE} describes "
            f"({metadata['architecture']}): {_state_mismatch(net.state_dict(), dequantise_state(tensors))}"
        )
        raise ValueError(msg) from error
    net.eval().to(device)
    if torch.device(device).type == "cuda" or net.backbone == "compact":
        # The compact backbone's small convolutions are faster channels-last on a CPU too.
        net = net.to(memory_format=torch.channels_last)
    return LoadedModel(net=net, metadata=metadata, device=torch.device(device))


def _state_mismatch(expected, found):
    """One line saying how two state dicts differ (torch's own message lists every tensor)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(found) if expected[k].shape != found[k].shape)
    return (
        f"{len(missing)} tensor(s) missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
        f"{len(reshaped)} of another shape {reshaped[:3]}"
    )


def build_network(metadata):
    """Build an untrained `~astro_stargal.models.StarGalaxyNet` from weights metadata.

    Parameters
    ----------
    metadata : dict
        The contents of a ``model.json``: ``bands`` and ``architecture``
        (``backbone``, ``lstm_hidden``, ``branches``, ``n_features``).

    Returns
    -------
    net : `~astro_stargal.models.StarGalaxyNet`
        With random weights, ready for ``load_state_dict``.

    Examples
    --------
    >>> architecture = {"backbone": "resnet18", "lstm_hidden": 64, "branches": ["catalog"], "n_features": 6}
    >>> build_network({"bands": ["g", "r"], "architecture": architecture}).branches
    ('catalog',)
    """
    architecture = metadata["architecture"]
    return StarGalaxyNet(
        len(metadata["bands"]),
        architecture["n_features"],
        backbone=architecture["backbone"],
        lstm_hidden=architecture.get("lstm_hidden") or 64,
        branches=tuple(architecture["branches"]),
    )
