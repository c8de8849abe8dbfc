"""The weights file format: metadata (checked for consistency), int8 quantisation of large tensors.

A model's metadata says everything needed to use it, as torchvision's weight
enums carry their transforms: its bands, stamp size and pixel scale, the
catalog features in the network's order and their normalisation, the image
normalisation and the central part of each stamp the network sees
(``preprocessing``: ``image_softening``, ``image_crop``), the architecture,
and the range it is valid in (``validity``). `check_metadata` refuses metadata that contradicts itself,
so no module constant ever decides for a model.
"""

import json
from pathlib import Path

import torch

from ._network import BACKBONES

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILE",
    "QUANTISE_MIN_SIZE",
    "TENSOR_FILE",
    "check_metadata",
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
    check_metadata(metadata, str(path))
    return metadata


#: Smallest and largest stamp a model may ask for (the features need 24 pixels: a 16-pixel
#: photometry box and a background ring beyond 11 pixels from the centre).
STAMP_SIZE_RANGE = (24, 256)

#: What `check_metadata` requires.
REQUIRED_METADATA = ("name", "bands", "stamp_size", "sha256", "architecture", "feature_names")


def check_metadata(metadata, where="weights metadata"):
    """Refuse metadata that is incomplete or contradicts itself, saying what is wrong.

    Parameters
    ----------
    metadata : dict
        The contents of a ``model.json``.
    where : str, optional
        Names the file in messages.

    Raises
    ------
    ValueError
        If a required entry is missing or entries disagree (feature names and
        the architecture's feature count, the normalisation's shape and the
        bands, an image crop larger than the stamps or too small for the
        backbone, validity ranges for bands the model does not have, ...).

    Examples
    --------
    >>> check_metadata({"name": "m", "bands": ["r"], "stamp_size": 32, "sha256": "0",
    ...                 "architecture": {"backbone": "compact", "n_features": 2}, "feature_names": ["size"]})
    Traceback (most recent call last):
    ...
    ValueError: weights metadata: feature_names lists 1 feature(s) but the architecture has n_features=2
    """
    problems = [f"lacks {name!r}" for name in REQUIRED_METADATA if name not in metadata]
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}")
    bands = metadata["bands"]
    if not (isinstance(bands, list) and bands and all(isinstance(band, str) and band for band in bands)):
        problems.append(f"bands must be a non-empty list of band names, got {bands!r}")
    elif len(set(bands)) != len(bands):
        problems.append(f"bands {bands} repeat a band")
    stamp_size = metadata["stamp_size"]
    low, high = STAMP_SIZE_RANGE
    if isinstance(stamp_size, bool) or not isinstance(stamp_size, int) or not low <= stamp_size <= high:
        problems.append(f"stamp_size must be an integer from {low} to {high}, got {stamp_size!r}")
    names = metadata["feature_names"]
    n_features = (
        metadata["architecture"].get("n_features") if isinstance(metadata["architecture"], dict) else None
    )
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)) or len(
        set(names)
    ) != len(names):
        problems.append(f"feature_names must be a list of distinct names, got {names!r}")
    elif n_features != len(names):
        problems.append(
            f"feature_names lists {len(names)} feature(s) but the architecture has n_features={n_features}"
        )
    for key in ("feature_mean", "feature_std"):
        value = metadata.get(key)
        if value is not None and isinstance(bands, list) and isinstance(names, list):
            shape = (len(value), len(value[0]) if value else 0)
            if shape != (len(bands), len(names)):
                problems.append(
                    f"{key} has shape {shape}, not (bands, features) = {(len(bands), len(names))}"
                )
    softening = metadata.get("preprocessing", {}).get("image_softening", 3.0)
    if isinstance(softening, bool) or not isinstance(softening, (int, float)) or not softening > 0:
        problems.append(f"preprocessing.image_softening must be a positive number, got {softening!r}")
    problems += _architecture_problems(
        metadata["architecture"], metadata.get("preprocessing", {}), stamp_size
    )
    problems += _validity_problems(
        metadata.get("validity", {}), metadata.get("reference_psf_fwhm", {}), bands
    )
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}")


def _architecture_problems(architecture, preprocessing, stamp_size):
    """What is wrong with the network configuration, alone or with the stamps it is given."""
    if not isinstance(architecture, dict):
        return [f"architecture must be a dict, got {architecture!r}"]
    problems = []
    backbone = architecture.get("backbone")
    branches = architecture.get("branches", ["image", "catalog"])
    if not (isinstance(branches, list) and branches and set(branches) <= {"image", "catalog"}):
        problems.append(f"architecture.branches must list 'image' and/or 'catalog', got {branches!r}")
        branches = []
    if "image" in branches and backbone not in BACKBONES:
        problems.append(f"architecture.backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
    hidden = architecture.get("lstm_hidden")
    if (
        "catalog" in branches
        and hidden is not None
        and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1)
    ):
        problems.append(f"architecture.lstm_hidden must be a positive integer, got {hidden!r}")
    crop = preprocessing.get("image_crop")
    if crop is None or not isinstance(stamp_size, int):
        return problems
    smallest = BACKBONES.get(backbone, 1) if "image" in branches else 1
    if isinstance(crop, bool) or not isinstance(crop, int) or not smallest <= crop <= stamp_size:
        problems.append(
            f"preprocessing.image_crop must be an integer from {smallest} (the smallest stamp backbone "
            f"{backbone!r} takes) to stamp_size={stamp_size}, got {crop!r}"
        )
    return problems


def _validity_problems(validity, reference_fwhm, bands):
    problems = []
    known = set(bands) if isinstance(bands, list) else set()
    for band, limits in validity.get("psf_fwhm", {}).items():
        if band not in known:
            problems.append(f"validity.psf_fwhm names band {band!r}, which the model does not have")
        elif not (isinstance(limits, list) and len(limits) == 2 and 0 < limits[0] < limits[1]):
            problems.append(
                f"validity.psf_fwhm[{band!r}] must be [min, max] arcsec with 0 < min < max, got {limits!r}"
            )
    for band, limit in validity.get("psf_ellipticity_max", {}).items():
        if band not in known or not (isinstance(limit, (int, float)) and 0 < limit <= 1):
            problems.append(
                f"validity.psf_ellipticity_max[{band!r}] must be in (0, 1] for a model band, got {limit!r}"
            )
    for band, fwhm in reference_fwhm.items():
        if band not in known or not (isinstance(fwhm, (int, float)) and fwhm > 0):
            problems.append(f"reference_psf_fwhm[{band!r}] must be a positive FWHM (arcsec) for a model band")
    return problems


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
