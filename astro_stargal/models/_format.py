"""The weights file format: metadata, int8 quantisation of large tensors."""

import json
from pathlib import Path

import torch

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILE",
    "QUANTISE_MIN_SIZE",
    "TENSOR_FILE",
    "dequantise_state",
    "quantise_state",
    "read_metadata",
]

METADATA_FILE = "model.json"

TENSOR_FILE = "model.safetensors"

FORMAT_VERSION = 1

#: Tensors with at least this many elements (and 2+ dimensions) are stored as int8.
QUANTISE_MIN_SIZE = 4096


def read_metadata(directory):
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


def quantise_state(state):
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


def dequantise_state(tensors):
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
