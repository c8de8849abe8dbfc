"""`train`: a whole training run, put together from its parts.

A run is configured by one `TrainConfig` and goes through these steps, each
in its own module:

1. the initial network: random, the bundled weights, or another model (here);
2. the labelled fields, prepared with the inference routines, cached, and
   split into training and validation by whole fields (``_data.py``); with a
   ``teacher``, the teacher's logits are computed there too, once per source,
   from the teacher's own stamps and features;
3. the epoch loop (``_loop.py``) with its augmentations (``_augmentation.py``)
   and callbacks (``_callbacks.py``): the time budget, an atomic checkpoint
   after every epoch (a resumed run gives the same weights, bit for bit on a
   CPU), the history and early stopping;
4. calibration of the best epoch's averaged weights, quantised exactly as they
   will be stored, on the validation fields (``_calibration.py``);
5. a weights directory that `~astro_stargal.classify_sources` loads, whose
   metadata records the configuration whole (``metadata["training"]["config"]``).
"""

import copy
import warnings
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..exceptions import StarGalaxyWarning
from ..instrument import PIXEL_SCALE, band_order
from ..models import StarGalaxyNet, bundled_model, load_model, resolve_device, save_weights
from ..models._format import dequantise_state, quantise_state, read_metadata
from ..models._registry import weights_directory
from ..pipeline import FEATURE_NAMES, IMAGE_SOFTENING
from ._calibration import calibrate
from ._callbacks import Checkpoint, EarlyStopping, EpochEndFunction, History, TimeBudget
from ._config import TrainConfig
from ._data import build_training_set, labelled_fields, split_by_field
from ._loop import TrainingLoop

__all__ = ["train"]


def train(sources, output_dir, config=None, *, on_epoch_end=None, **options):
    """Train (or fine-tune) the classifier and write a weights directory.

    Parameters
    ----------
    sources : path, tuple or list
        Labelled fields; see `labelled_fields`.
    output_dir : str or `~pathlib.Path`
        Receives the training-set cache, the checkpoint, ``history.csv`` and
        ``history.json``, a learning curve PNG (if matplotlib is installed)
        and the weights in ``weights/``.
    config : `TrainConfig`, optional
        The options of the run (default: ``TrainConfig()``).
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epoch, history_row)`` after each checkpoint.
    **options
        `TrainConfig` options that override ``config``, such as
        ``epochs=20``; ``augment=`` and ``band_dropout=`` are also taken (see
        `TrainConfig.with_options`).

    Returns
    -------
    weights_dir : `~pathlib.Path`
        Directory to pass as ``weights=`` to `~astro_stargal.classify_sources`.

    Examples
    --------
    >>> from astro_stargal.training import SkyNoise, TrainConfig, train
    >>> weights_dir = train("training_sky/", "run1", init="random", epochs=20)  # doctest: +SKIP
    >>> config = TrainConfig(init="random", epochs=20, augmentations=[SkyNoise(max_sigma=0.5)])
    >>> weights_dir = train("training_sky/", "ablation_noise_only", config)  # doctest: +SKIP
    """
    config = _configure(config, options)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    net, base_metadata, fresh_features = _initial_network(config)
    data = build_training_set(
        labelled_fields(sources),
        cache=config.cache or output_dir / "training_set.npz",
        **_preparation(config, base_metadata),
    )
    is_validation = split_by_field(data, config.validation_fraction, config.seed)
    training, validation = data.subset(~is_validation), data.subset(is_validation)
    if len(np.unique(training.labels)) < 2:
        msg = "the training fields must contain both stars and galaxies"
        raise ValueError(msg)
    _set_feature_normalisation(net, training.catalog, fresh_features)

    loop = TrainingLoop(net, training, validation, config, device=device)
    callbacks = [
        TimeBudget(config.max_minutes),  # before the checkpoint, which records the plan it sets
        Checkpoint(output_dir, resume=config.resume),
        History(output_dir),
        EarlyStopping(config.patience),
        EpochEndFunction(on_epoch_end),
    ]
    loop.fit(callbacks)

    net.load_state_dict(dequantise_state(quantise_state(loop.best_state)))  # calibrate what will be stored
    metrics = calibrate(net, loop.logits(validation, net), validation)
    metadata = _metadata(config, base_metadata, data, training, validation, loop, metrics)
    return save_weights(net.cpu(), output_dir / "weights", metadata=metadata)


def _configure(config, options):
    if config is None:
        config = TrainConfig()
    elif not isinstance(config, TrainConfig):
        msg = f"config must be a TrainConfig or None, got {type(config).__name__}"
        raise TypeError(msg)
    return config.with_options(**options)


def _preparation(config, base_metadata):
    """How `build_training_set` prepares the fields: as inference will for this model."""
    return {
        "bands": base_metadata["bands"],
        "stamp_size": base_metadata["stamp_size"],
        "image_crop": base_metadata.get("preprocessing", {}).get("image_crop"),
        "teacher": _teacher_directory(config.teacher, base_metadata["bands"]),
        "label_column": config.label_column,
        "n_jobs": config.n_jobs,
        "progress": config.progress,
        "features": base_metadata["feature_names"],
        "recentre": config.recentre,
        "position_error": config.position_error,
        "max_magnitude": config.max_magnitude,
        "reference_psf_fwhm": config.reference_psf_fwhm or base_metadata.get("reference_psf_fwhm"),
        "seed": config.seed,
    }


def _teacher_directory(teacher, bands):
    """The weights directory of the model to distil (None without one), checked to have the student's bands."""
    if teacher is None:
        return None
    directory = weights_directory(teacher)
    teacher_bands = load_model(directory, device="cpu").bands
    if list(teacher_bands) != list(bands):
        msg = f"teacher {teacher!r} has bands {list(teacher_bands)}, the model trained has {list(bands)}"
        raise ValueError(msg)
    return str(directory.resolve())


def _teacher_description(directory):
    """Name and SHA-256 of the distilled teacher (None without one)."""
    if directory is None:
        return None
    metadata = read_metadata(directory)
    return {"name": metadata["name"], "sha256": metadata["sha256"]}


def _initial_network(config):
    """The network to start from, its metadata, and which of its features need a fresh normalisation."""
    init, bands = config.init, config.bands
    if init == "bundled":
        try:
            init = bundled_model()
        except FileNotFoundError:
            warnings.warn(
                "the bundled weights are not installed; training from random weights",
                StarGalaxyWarning,
                stacklevel=3,
            )
            init = "random"
    if init == "random":
        bands = list(bands or band_order())
        features = list(config.features or FEATURE_NAMES)
        net = StarGalaxyNet(
            len(bands),
            len(features),
            backbone=config.backbone,
            lstm_hidden=config.lstm_hidden,
            branches=config.branches,
        )
        metadata = {
            "bands": bands,
            "stamp_size": config.stamp_size,
            "name": "astro_stargal",
            "feature_names": features,
            "preprocessing": {"image_crop": config.image_crop or config.stamp_size},
        }
        return net, metadata, np.ones(len(features), dtype=bool)
    model = load_model(init, device="cpu")
    if bands is not None and list(bands) != list(model.bands):
        msg = f"cannot fine-tune a model with bands {list(model.bands)} on bands {list(bands)}; use init='random'"
        raise ValueError(msg)
    # A copy: the loaded network is shared with every classify_sources call in this process.
    net = copy.deepcopy(model.net)
    net.temperature.fill_(1.0)
    net.calibration_bias.fill_(0.0)
    metadata = dict(model.metadata)
    features = list(config.features or model.feature_names)
    fresh = np.array([name not in model.feature_names for name in features])
    if features != list(model.feature_names):
        net = _with_features(net, list(model.feature_names), features)
        metadata["feature_names"] = features
    return net, metadata, fresh


def _with_features(net, old_names, new_names):
    """A copy of ``net`` whose catalog branch reads ``new_names``: known features keep their weights,
    new ones start at zero weight (so the network's first predictions are the initial model's)."""
    grown = StarGalaxyNet(
        net.n_bands, len(new_names), backbone=net.backbone, lstm_hidden=net.lstm_hidden, branches=net.branches
    )
    state = net.state_dict()
    columns = [old_names.index(name) if name in old_names else None for name in new_names]
    for name, value in grown.state_dict().items():
        old = state[name]
        if name in ("feature_mean", "feature_std"):
            for column, source in enumerate(columns):
                if source is not None:
                    value[:, column] = old[:, source]
        elif name.startswith("catalog_branch.weight_ih_l0"):
            value.zero_()
            for column, source in enumerate(columns):
                if source is not None:
                    value[:, column] = old[:, source]
            value[:, -1] = old[:, -1]  # the band-present marker
        else:
            value.copy_(old)
    return grown


def _set_feature_normalisation(net, catalog, fresh):
    """Standardise the ``fresh`` features (a boolean per feature) with the training set's statistics."""
    if not fresh.any():
        return
    present = catalog[:, :, -1:] > 0
    features = catalog[:, :, :-1]
    counts = np.maximum(present.sum(axis=0), 1)
    mean = (features * present).sum(axis=0) / counts
    variance = (((features - mean) * present) ** 2).sum(axis=0) / counts
    std = np.sqrt(variance).clip(1e-3)
    net.feature_mean[:, fresh] = torch.from_numpy(mean[:, fresh].astype(np.float32))
    net.feature_std[:, fresh] = torch.from_numpy(std[:, fresh].astype(np.float32))


def _metadata(config, base_metadata, data, training, validation, loop, metrics):
    """The weights' metadata: what the model is, how it was trained (the config whole) and its validation metrics."""
    validity, reference_fwhm = data.psf_range(base_metadata["bands"])
    stamp_size = base_metadata["stamp_size"]
    image_crop = base_metadata.get("preprocessing", {}).get("image_crop", stamp_size)
    image_branch = "compact CNN" if loop.net.backbone == "compact" else "ResNet"
    return {
        "name": config.name or f"{base_metadata.get('name', 'astro_stargal')}-retrained",
        "description": f"astro_stargal star-galaxy fusion network ({image_branch} image branch + BiLSTM catalog branch)",
        "bands": list(base_metadata["bands"]),
        "stamp_size": base_metadata["stamp_size"],
        "pixel_scale": base_metadata.get("pixel_scale", PIXEL_SCALE),
        "feature_names": list(base_metadata["feature_names"]),
        "image_normalisation": f"asinh((pixel - local background) / ({IMAGE_SOFTENING} * sky sigma)); "
        "validity channel per band",
        "preprocessing": {"image_softening": IMAGE_SOFTENING, "image_crop": image_crop},
        # The range of PSFs measured in the training fields: the model's validity range.
        "validity": validity,
        # Measured where the training fields allowed, else the reference the fields were prepared with.
        "reference_psf_fwhm": {
            **base_metadata.get("reference_psf_fwhm", {}),
            **(config.reference_psf_fwhm or {}),
            **reference_fwhm,
        },
        "training": {
            **(config.provenance or {}),
            "astro_stargal_version": __version__,
            "init": config.init,
            "teacher": _teacher_description(data.provenance.get("teacher")),
            "fields": data.field_names,
            "validation_fields": sorted({data.field_names[i] for i in np.unique(validation.field)}),
            "n_train": len(training),
            "n_train_stars": int(training.labels.sum()),
            "n_validation": len(validation),
            "epochs_run": loop.epoch,
            "best_epoch": loop.best_epoch,
            "device": str(loop.device),
            "batch_size": loop.batch_size,
            "config": config.to_dict(),
        },
        "metrics": {"validation": metrics},
    }
