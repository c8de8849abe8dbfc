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

Models have names, in one namespace filled from two places: the entry-point
group ``astro_stargal.models`` (read with `importlib.metadata`), where each
entry point names a callable that returns the path of a weights directory and
the bundled models (``csst-resnet50-bilstm`` and ``csst-fast``) register
themselves there too, and `register_model` for models
defined in code. A name claimed twice is an error unless forced; a plugin
that fails to load is a warning naming it, never a crash, and `list_models`
says why it is unavailable.
"""

from ._device import resolve_device
from ._format import METADATA_FILE, TENSOR_FILE
from ._network import BACKBONES, StarGalaxyNet
from ._registry import (
    DEFAULT_MODEL,
    ENTRY_POINT_GROUP,
    FAST_MODEL,
    bundled_model,
    fast_model,
    list_models,
    register_model,
    unregister_model,
)
from ._weights import LoadedModel, build_network, load_model, save_weights

__all__ = [
    "BACKBONES",
    "DEFAULT_MODEL",
    "ENTRY_POINT_GROUP",
    "FAST_MODEL",
    "METADATA_FILE",
    "TENSOR_FILE",
    "LoadedModel",
    "StarGalaxyNet",
    "build_network",
    "bundled_model",
    "fast_model",
    "list_models",
    "load_model",
    "register_model",
    "resolve_device",
    "save_weights",
    "unregister_model",
]
