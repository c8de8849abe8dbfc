"""Trained weights: the file format, its checksum and metadata, and the model registry.

A weights directory holds two files:

``model.safetensors``
    The network's tensors (safetensors: loading it cannot execute code).
    Large weight matrices are stored as int8 with one float16 scale per output
    channel (``name`` and ``name.scale``) and dequantised at load time.
``model.json``
    What the weights are: name, SHA-256 of the tensor file (checked before
    anything is loaded), bands, stamp size, pixel scale, feature names and
    normalisation, architecture, training-data provenance and metrics.

Models are found through the entry-point group ``astro_stargal.models``
(read with `importlib.metadata`). Each entry point names a callable that
returns the path of a weights directory; the bundled model registers itself
there too. A plugin that fails to load becomes a warning, never a crash.
"""

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from astropy.table import Table
from safetensors.torch import load_file, save_file

from .exceptions import StarGalaxyWarning
from .network import StarGalaxyNet

__all__ = [
    "DEFAULT_MODEL",
    "ENTRY_POINT_GROUP",
    "LoadedModel",
    "bundled_model",
    "list_models",
    "load_model",
    "resolve_device",
    "save_weights",
]

ENTRY_POINT_GROUP = "astro_stargal.models"
DEFAULT_MODEL = "csst-resnet50-bilstm"
METADATA_FILE = "model.json"
TENSOR_FILE = "model.safetensors"
FORMAT_VERSION = 1

#: Tensors with at least this many elements (and 2+ dimensions) are stored as int8.
QUANTISE_MIN_SIZE = 4096


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference, with the description of its weights.

    Attributes
    ----------
    net : `~astro_stargal.network.StarGalaxyNet`
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
    def name(self):
        """The model's name."""
        return self.metadata["name"]


def resolve_device(device=None):
    """Return the `torch.device` to run on: CUDA, then Apple MPS, then CPU by default.

    Parameters
    ----------
    device : str or `torch.device`, optional
        An explicit device such as ``'cpu'`` or ``'cuda:0'``.

    Returns
    -------
    device : `torch.device`

    Raises
    ------
    ValueError
        If ``device`` is not a device name, or names CUDA/MPS where none is available.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        msg = f"device={device!r} is not a torch device name (try 'cpu', 'cuda' or 'cuda:0')"
        raise ValueError(msg) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            msg = (
                f"device={str(device)!r} asked for CUDA, but no CUDA GPU is available here; use device='cpu'"
            )
            raise ValueError(msg)
        if device.index is not None and device.index >= torch.cuda.device_count():
            msg = f"device={str(device)!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
            raise ValueError(msg)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        msg = "device='mps' asked for Apple MPS, which is not available here; use device='cpu'"
        raise ValueError(msg)
    elif device.type not in ("cpu", "cuda", "mps"):
        msg = f"device={str(device)!r} is not supported; use 'cpu', 'cuda' or 'mps'"
        raise ValueError(msg)
    return device


def save_weights(net, directory, *, metadata, quantise=True):
    """Write a weights directory that `load_model` and `~astro_stargal.classify_sources` read.

    Parameters
    ----------
    net : `~astro_stargal.network.StarGalaxyNet`
        The trained network (its feature normalisation and temperature included).
    directory : str or `~pathlib.Path`
        Created if needed; existing weight files are replaced atomically.
    metadata : dict
        At least ``name``, ``bands`` and ``stamp_size``; anything else JSON-able
        (training provenance, metrics) is kept.
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
    >>> meta = {"name": "demo", "bands": ["g", "r"], "stamp_size": 32}
    >>> path = save_weights(net, tempfile.mkdtemp(), metadata=meta)
    >>> sorted(p.name for p in path.iterdir())
    ['model.json', 'model.safetensors']
    """
    missing = {"name", "bands", "stamp_size"} - set(metadata)
    if missing:
        msg = f"metadata lacks {sorted(missing)}"
        raise ValueError(msg)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in net.state_dict().items()}
    tensors = _quantise(state) if quantise else state
    tensor_path = directory / TENSOR_FILE
    _atomic_write(tensor_path, lambda path: save_file(tensors, path))

    full_metadata = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "weights_file": TENSOR_FILE,
        "sha256": _sha256(tensor_path),
        "quantisation": "int8 per output channel, float16 scales" if quantise else "none",
        "architecture": {
            "backbone": _backbone_name(net),
            "lstm_hidden": net.catalog_branch.hidden_size if "catalog" in net.branches else None,
            "branches": list(net.branches),
            "n_features": net.n_features,
        },
        "feature_mean": net.feature_mean.tolist(),
        "feature_std": net.feature_std.tolist(),
        "temperature": float(net.temperature),
        "calibration_bias": float(net.calibration_bias),
    }
    text = json.dumps(full_metadata, indent=2)
    _atomic_write(directory / METADATA_FILE, lambda path: Path(path).write_text(text))
    return directory


def load_model(weights=None, *, device=None):
    """Load a model for inference.

    Parameters
    ----------
    weights : str, `~pathlib.Path` or `LoadedModel`, optional
        A registered model name (see `list_models`; default the bundled
        ``'csst-resnet50-bilstm'``), a weights directory or its ``model.json``,
        or an already loaded model (moved to ``device`` if needed).
    device : str or `torch.device`, optional
        See `resolve_device`.

    Returns
    -------
    model : `LoadedModel`

    Raises
    ------
    ValueError
        If the tensor file's SHA-256 differs from the metadata (tampered or
        truncated), or the tensors do not fit the described architecture.
    FileNotFoundError
        If the weights cannot be found.

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
    directory = _weights_directory(weights)
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
    metadata = _read_metadata(directory)
    tensor_path = directory / metadata.get("weights_file", TENSOR_FILE)
    if not tensor_path.exists():
        msg = f"weights file {str(tensor_path)!r} named in {METADATA_FILE} does not exist"
        raise FileNotFoundError(msg)
    digest = _sha256(tensor_path)
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
        net.load_state_dict(_dequantise(tensors), strict=True)
    except RuntimeError as error:
        msg = (
            f"weights in {str(directory)!r} do not fit the architecture their {METADATA_FILE} describes "
            f"({metadata['architecture']}): {_state_mismatch(net.state_dict(), _dequantise(tensors))}"
        )
        raise ValueError(msg) from error
    net.eval().to(device)
    if torch.device(device).type == "cuda":
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
    """Build an untrained `~astro_stargal.network.StarGalaxyNet` from weights metadata."""
    architecture = metadata["architecture"]
    return StarGalaxyNet(
        len(metadata["bands"]),
        architecture["n_features"],
        backbone=architecture["backbone"],
        lstm_hidden=architecture["lstm_hidden"] or 64,
        branches=tuple(architecture["branches"]),
    )


def bundled_model():
    """Return the directory of the bundled CSST model (the entry point of ``csst-resnet50-bilstm``).

    Returns
    -------
    directory : `~pathlib.Path`
        Holds ``model.json`` and ``model.safetensors``.

    Raises
    ------
    FileNotFoundError
        If the package was installed without its weights.

    Examples
    --------
    >>> sorted(path.name for path in bundled_model().glob("model.*"))  # doctest: +SKIP
    ['model.json', 'model.safetensors']
    """
    # Installed from a wheel, weights/ is the namespace package astro_stargal._bundled_weights;
    # in a source checkout it sits next to the package.
    spec = importlib.util.find_spec("astro_stargal._bundled_weights")
    candidates = [Path(location) for location in (spec.submodule_search_locations or [])] if spec else []
    candidates.append(Path(__file__).resolve().parent.parent / "weights")
    for candidate in candidates:
        if (candidate / METADATA_FILE).exists():
            return candidate
    msg = f"the bundled weights ({METADATA_FILE}) are not installed; looked in {[str(c) for c in candidates]}"
    raise FileNotFoundError(msg)


def list_models():
    """List the models registered under the ``astro_stargal.models`` entry-point group.

    Returns
    -------
    models : `~astropy.table.Table`
        One row per model: ``name``, ``entry_point``, ``path``, ``bands``,
        ``stamp_size`` and ``available`` (False when its weights cannot be found).

    Examples
    --------
    >>> "csst-resnet50-bilstm" in list_models()["name"]  # doctest: +SKIP
    True
    """
    rows = []
    for name, entry_point, target in _registered_models():
        try:
            directory = _call_plugin(target)
            metadata = _read_metadata(directory)
            rows.append(
                (
                    name,
                    entry_point,
                    str(directory),
                    " ".join(metadata["bands"]),
                    metadata["stamp_size"],
                    True,
                )
            )
        except Exception as error:  # a third-party plugin may fail in any way; list it as unavailable
            warnings.warn(
                f"model {name!r} ({entry_point}) is unavailable: {error!r}",
                StarGalaxyWarning,
                stacklevel=2,
            )
            rows.append((name, entry_point, "", "", 0, False))
    return Table(
        rows=rows or None,
        names=("name", "entry_point", "path", "bands", "stamp_size", "available"),
        dtype=(str, str, str, str, int, bool),
    )


def _registered_models():
    """Yield ``(name, entry point text, loaded target)``; plugins that fail to import become warnings."""
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry_point.load()
        except Exception as error:  # a third-party plugin may fail in any way; it must not crash us
            warnings.warn(
                f"model plugin {entry_point.name!r} ({entry_point.value}) failed to load and is skipped: {error!r}",
                StarGalaxyWarning,
                stacklevel=3,
            )
            continue
        yield entry_point.name, entry_point.value, target


def _call_plugin(target):
    directory = Path(target() if callable(target) else target)
    return directory.parent if directory.is_file() else directory


def _weights_directory(weights):
    if weights is None:
        weights = DEFAULT_MODEL
    if isinstance(weights, str) and not os.path.exists(weights):
        registered = {name: target for name, _, target in _registered_models()}
        if weights in registered:
            return _call_plugin(registered[weights])
        known = sorted(registered)
        msg = f"weights={weights!r} is neither an existing path nor a registered model; registered: {known}"
        raise FileNotFoundError(msg)
    path = Path(weights)
    if not path.exists():
        msg = f"weights path {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    return path.parent if path.is_file() else path


def _read_metadata(directory):
    path = Path(directory) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        msg = f"weights metadata {str(path)!r} is not valid JSON ({error})"
        raise ValueError(msg) from error
    required = {"name", "bands", "stamp_size", "sha256", "architecture"}
    missing = required - set(metadata)
    if missing:
        msg = f"weights metadata {str(path)!r} lacks {sorted(missing)}"
        raise ValueError(msg)
    return metadata


def _quantise(state):
    tensors = {}
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.ndim >= 2 and tensor.numel() >= QUANTISE_MIN_SIZE:
            flat = tensor.float().reshape(tensor.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            scale = scale.half()
            tensors[name] = (
                torch.round(flat / scale.float()[:, None])
                .clamp(-127, 127)
                .to(torch.int8)
                .reshape(tensor.shape)
            )
            tensors[f"{name}.scale"] = scale
        else:
            tensors[name] = tensor
    return tensors


def _dequantise(tensors):
    state = {}
    for name, tensor in tensors.items():
        if name.endswith(".scale") and name[: -len(".scale")] in tensors:
            continue
        scale = tensors.get(f"{name}.scale")
        if scale is not None and tensor.dtype == torch.int8:
            shape = (-1,) + (1,) * (tensor.ndim - 1)
            tensor = tensor.float() * scale.float().reshape(shape)
        state[name] = tensor
    return state


def _backbone_name(net):
    if "image" not in net.branches:
        return "resnet50"
    blocks = net.image_branch.layer1[0]
    return "resnet50" if hasattr(blocks, "conv3") else "resnet18"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path, write):
    """Write through a temporary file in the same directory, then rename (never a half-written file)."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
