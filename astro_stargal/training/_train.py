"""Retraining the classifier on simulated or real labelled fields.

The training set is built with the inference routines themselves
(`~astro_stargal.io.read_images`, `~astro_stargal.io.positions_from_table`,
`~astro_stargal.pipeline.prepare_inputs`), so training and inference cannot
drift apart. It is cached in one ``.npz`` file with its provenance.

Training splits train/validation by field, weights the two classes equally,
augments with the eight 90-degree rotations and flips, extra sky noise (a new
noise realisation on top of the old) and band dropout (so that any subset of
bands works), uses AdamW with a warm-up and cosine learning rate, mixed precision and
``channels_last`` on a GPU, keeps an exponential moving average of the weights
(which is what is validated and kept), stops early on the validation loss,
checkpoints every epoch (atomically) and resumes where it stopped with the same
result. The best epoch's averaged weights are quantised exactly as they will be stored, then
calibrated (temperature and bias) on the validation fields and written as a
weights directory that `~astro_stargal.classify_sources` loads.
"""

import copy
import json
import math
import os
import time
import warnings
import zipfile
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table
from scipy.optimize import minimize
from tqdm.auto import tqdm

from .._files import atomic_write
from .._version import __version__
from ..evaluation import expected_calibration_error
from ..exceptions import StarGalaxyWarning
from ..instrument import PIXEL_SCALE, band_order
from ..io import positions_from_table, read_images
from ..models import StarGalaxyNet, bundled_model, load_model, resolve_device, save_weights
from ..models._format import dequantise_state, quantise_state
from ..pipeline import FEATURE_NAMES, IMAGE_SOFTENING, prepare_inputs

__all__ = ["LabelledField", "TrainingSet", "build_training_set", "labelled_fields", "train"]

CACHE_FORMAT = 1
CHECKPOINT_FILE = "checkpoint.pt"
WARMUP_FRACTION = 0.15
HISTORY_FILE = "history.csv"


@dataclass(frozen=True)
class LabelledField:
    """One field of labelled sources: a table and its images (any form `classify_sources` takes).

    Attributes
    ----------
    name : str
        Unique name of the field (the train/validation split is by field).
    table : `~astropy.table.Table`
        Sources with positions and a label column.
    images : dict
        Band -> image, as for `~astro_stargal.classify_sources`.

    Examples
    --------
    >>> from astropy.table import Table
    >>> field = LabelledField("f1", Table({"ra": [150.0], "dec": [2.0], "label": ["star"]}), {"r": "r.fits"})
    >>> field.name
    'f1'
    """

    name: str
    table: Table
    images: dict


@dataclass
class TrainingSet:
    """Prepared inputs of labelled sources, with the field each came from.

    Attributes
    ----------
    stamps : 4D float16 `~numpy.ndarray`
    catalog : 3D float32 `~numpy.ndarray`
    labels : 1D uint8 `~numpy.ndarray`
        1 for stars, 0 for galaxies.
    field : 1D int32 `~numpy.ndarray`
        Index into ``field_names``.
    magnitude : 1D float32 `~numpy.ndarray`
        True r magnitude when the truth table has ``mag_r`` (else NaN).
    redshift : 1D float32 `~numpy.ndarray`
        Truth redshift when known (else NaN).
    flags : 1D int32 `~numpy.ndarray`
    field_names : list of str
    provenance : dict

    Examples
    --------
    >>> data = build_training_set(labelled_fields("sky/"), bands=band_order(), stamp_size=32)  # doctest: +SKIP
    >>> stars = data.subset(data.labels == 1)  # doctest: +SKIP
    """

    stamps: np.ndarray
    catalog: np.ndarray
    labels: np.ndarray
    field: np.ndarray
    magnitude: np.ndarray
    redshift: np.ndarray
    flags: np.ndarray
    field_names: list
    provenance: dict

    def __len__(self):
        return len(self.labels)

    def subset(self, rows):
        """The sources at ``rows`` (an index or boolean array)."""
        arrays = {
            name: getattr(self, name)[rows]
            for name in ("stamps", "catalog", "labels", "field", "magnitude", "redshift", "flags")
        }
        return TrainingSet(**arrays, field_names=self.field_names, provenance=self.provenance)


def labelled_fields(sources):
    """Normalise the ``sources`` argument of `train` into `LabelledField` objects.

    Parameters
    ----------
    sources : path, tuple or list
        A simulator output directory (``truth.ecsv`` plus ``{band}.fits`` or
        ``tile{k}_{band}.fits``), a ``(table, images)`` or
        ``(table, images, name)`` tuple, or a list of any of these.

    Returns
    -------
    fields : list of `LabelledField`

    Examples
    --------
    >>> fields = labelled_fields("training_sky/")  # doctest: +SKIP
    """
    if isinstance(sources, (str, os.PathLike)) or (isinstance(sources, tuple) and _is_table_pair(sources)):
        sources = [sources]
    fields = []
    for index, source in enumerate(sources):
        if isinstance(source, (str, os.PathLike)):
            fields.extend(_fields_from_simulation(Path(source)))
        elif isinstance(source, tuple) and _is_table_pair(source):
            name = source[2] if len(source) == 3 else f"field{index}"
            fields.append(LabelledField(name=str(name), table=source[0], images=dict(source[1])))
        else:
            msg = f"cannot use {type(source).__name__} as a training source; give a simulator directory or (table, images)"
            raise TypeError(msg)
    names = [field.name for field in fields]
    if len(set(names)) != len(names):
        msg = f"training field names must be unique, got {names}"
        raise ValueError(msg)
    return fields


def _is_table_pair(source):
    return len(source) in (2, 3) and isinstance(source[0], Table)


def _fields_from_simulation(directory):
    truth_path = directory / "truth.ecsv"
    if not truth_path.exists():
        msg = f"{str(directory)!r} is not a simulator output directory (no truth.ecsv)"
        raise FileNotFoundError(msg)
    truth = Table.read(truth_path)
    if "tile" not in truth.colnames:
        images = {
            band: str(directory / f"{band}.fits")
            for band in band_order()
            if (directory / f"{band}.fits").exists()
        }
        return [LabelledField(name=directory.name, table=truth, images=images)]
    fields = []
    for tile in np.unique(truth["tile"]):
        images = {
            band: str(directory / f"tile{tile}_{band}.fits")
            for band in band_order()
            if (directory / f"tile{tile}_{band}.fits").exists()
        }
        fields.append(
            LabelledField(
                name=f"{directory.name}/tile{tile}", table=truth[truth["tile"] == tile], images=images
            )
        )
    return fields


def build_training_set(
    fields, *, bands, stamp_size, label_column="label", cache=None, n_jobs=1, progress=None
):
    """Prepare every labelled source with the inference routines (cached on disk).

    Parameters
    ----------
    fields : list of `LabelledField`
    bands : sequence of str
        Bands, ordered by wavelength.
    stamp_size : int
    label_column : str, optional
        Truth column: ``'star'``/``'galaxy'`` strings, or booleans/integers (1 = star).
    cache : str or `~pathlib.Path`, optional
        ``.npz`` file. Reused when its provenance matches; rebuilt when it is
        missing, stale or corrupted.
    n_jobs : int, optional
        Worker processes preparing fields in parallel.
    progress : bool, optional

    Returns
    -------
    training_set : `TrainingSet`

    Examples
    --------
    >>> fields = labelled_fields("training_sky/")  # doctest: +SKIP
    >>> data = build_training_set(fields, bands=band_order(), stamp_size=32,
    ...                           cache="training_set.npz", n_jobs=4)  # doctest: +SKIP
    >>> data.stamps.shape  # doctest: +SKIP
    (129510, 14, 32, 32)
    """
    provenance = {
        "cache_format": CACHE_FORMAT,
        "astro_stargal_version": __version__,
        "fields": [field.name for field in fields],
        "bands": list(bands),
        "stamp_size": stamp_size,
        "features": list(FEATURE_NAMES),
        "label_column": label_column,
    }
    if cache is not None:
        cached = _read_cache(Path(cache), provenance)
        if cached is not None:
            return cached
    tasks = [(field, tuple(bands), stamp_size, label_column) for field in fields]
    with tqdm(total=len(tasks), disable=progress is False, unit="field", desc="preparing fields") as bar:
        if n_jobs > 1 and len(tasks) > 1:
            with get_context("spawn").Pool(
                min(n_jobs, len(tasks)), initializer=torch.set_num_threads, initargs=(1,)
            ) as pool:
                parts = []
                for part in pool.imap(_prepare_field, tasks):
                    parts.append(part)
                    bar.update()
        else:
            parts = []
            for task in tasks:
                parts.append(_prepare_field(task))
                bar.update()
    for index, part in enumerate(parts):
        part["field"] = np.full(len(part["labels"]), index, dtype=np.int32)
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    training_set = TrainingSet(**arrays, field_names=provenance["fields"], provenance=provenance)
    if cache is not None:
        _write_cache(Path(cache), training_set)
    return training_set


def _prepare_field(task):
    field, bands, stamp_size, label_column = task
    table = field.table
    if label_column not in table.colnames:
        msg = f"field {field.name!r}: no label column {label_column!r}; columns are {table.colnames}"
        raise ValueError(msg)
    labels = _star_labels(table[label_column], field.name)
    inputs = prepare_inputs(read_images(field.images, bands), positions_from_table(table), bands, stamp_size)
    keep = inputs.classifiable
    return {
        "stamps": inputs.stamps[keep].astype(np.float16),
        "catalog": inputs.catalog[keep],
        "labels": labels[keep],
        "magnitude": _optional_column(table, "mag_r")[keep],
        "redshift": _optional_column(table, "redshift")[keep],
        "flags": inputs.flags[keep],
    }


def _star_labels(column, field_name):
    values = np.asarray(column)
    if values.dtype.kind in "US":
        lowered = np.char.lower(np.char.strip(values.astype(str)))
        known = np.isin(lowered, ["star", "galaxy"])
        if not known.all():
            msg = f"field {field_name!r}: labels must be 'star' or 'galaxy', found {sorted(set(lowered[~known]))}"
            raise ValueError(msg)
        return (lowered == "star").astype(np.uint8)
    if values.dtype.kind in "biu":
        if not np.isin(values, [0, 1]).all():
            msg = f"field {field_name!r}: integer labels must be 1 (star) or 0 (galaxy)"
            raise ValueError(msg)
        return values.astype(np.uint8)
    msg = f"field {field_name!r}: cannot read labels of dtype {values.dtype}"
    raise ValueError(msg)


def _optional_column(table, name):
    if name not in table.colnames:
        return np.full(len(table), np.nan, dtype=np.float32)
    return np.asarray(getattr(table[name], "value", table[name]), dtype=np.float32)


def _read_cache(path, provenance):
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            stored_provenance = json.loads(str(stored["provenance"]))
            if stored_provenance != provenance:
                return None
            arrays = {
                name: stored[name]
                for name in ("stamps", "catalog", "labels", "field", "magnitude", "redshift", "flags")
            }
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        warnings.warn(
            f"training-set cache {str(path)!r} is unreadable ({error}); rebuilding it",
            StarGalaxyWarning,
            stacklevel=3,
        )
        return None
    return TrainingSet(**arrays, field_names=provenance["fields"], provenance=provenance)


def _write_cache(path, training_set):
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        name: getattr(training_set, name)
        for name in ("stamps", "catalog", "labels", "field", "magnitude", "redshift", "flags")
    }

    def write(temporary):
        with open(temporary, "wb") as stream:
            np.savez(stream, provenance=np.array(json.dumps(training_set.provenance)), **arrays)

    atomic_write(path, write)


def split_by_field(training_set, validation_fraction, seed):
    """Boolean mask of validation sources: whole fields, chosen at random (at least one)."""
    n_fields = len(training_set.field_names)
    if n_fields < 2:
        msg = f"need at least two fields to split training and validation by field, got {n_fields}"
        raise ValueError(msg)
    n_validation = min(n_fields - 1, max(1, round(validation_fraction * n_fields)))
    chosen = np.random.default_rng(seed).choice(n_fields, size=n_validation, replace=False)
    return np.isin(training_set.field, chosen)


def train(
    sources,
    output_dir,
    *,
    bands=None,
    stamp_size=32,
    label_column="label",
    init="bundled",
    backbone="resnet50",
    branches=("image", "catalog"),
    epochs=30,
    batch_size=None,
    learning_rate=2e-3,
    weight_decay=0.05,
    average_decay=0.998,
    band_dropout=0.15,
    augment=True,
    validation_fraction=0.15,
    patience=6,
    seed=0,
    device=None,
    cache=None,
    n_jobs=1,
    max_minutes=None,
    resume=True,
    progress=None,
    name=None,
    provenance=None,
    on_epoch_end=None,
):
    """Train (or fine-tune) the classifier and write a weights directory.

    Parameters
    ----------
    sources : path, tuple or list
        Labelled fields; see `labelled_fields`.
    output_dir : str or `~pathlib.Path`
        Receives the checkpoint, ``history.csv``/``history.json``, a learning
        curve PNG (if matplotlib is installed) and the weights in ``weights/``.
    bands : sequence of str, optional
        Model bands (default: the initial model's, or the seven CSST bands).
    stamp_size : int, optional
        Stamp side in pixels (ignored when fine-tuning: the initial model's is used).
    label_column : str, optional
        Truth column (``'star'``/``'galaxy'`` or 1/0).
    init : {'bundled', 'random'} or path, optional
        Start from the bundled weights (fine-tuning; the default), from random
        weights, or from another weights directory. Falls back to random,
        with a warning, when the bundled weights are not installed.
    backbone : {'resnet50', 'resnet18'}, optional
        Image branch for a randomly initialised model.
    branches : tuple of str, optional
        ``('image', 'catalog')``, or one branch alone for an ablation.
    epochs, batch_size, learning_rate, weight_decay : optional
        Optimisation (AdamW; linear warm-up then cosine decay over ``epochs``).
        ``batch_size`` defaults to 1024 on a GPU and 128 on a CPU.
    average_decay : float, optional
        Decay per step of the exponential moving average of the weights that
        is validated and kept (0 keeps the raw weights). The history's
        ``val_loss_raw`` column is the validation loss of the raw weights, to
        show what the average buys.
    band_dropout : float, optional
        Probability of hiding each band of each training source.
    augment : bool, optional
        Rotations, flips and extra noise.
    validation_fraction : float, optional
        Fraction of fields held out for early stopping and calibration.
    patience : int, optional
        Epochs without a better validation loss before stopping.
    seed : int, optional
        Same seed and data give the same weights (bit for bit on a CPU).
    device : str, optional
        See `~astro_stargal.models.resolve_device`.
    cache : path, optional
        Training-set cache file (default ``output_dir/training_set.npz``).
    n_jobs : int, optional
        Processes preparing the training set.
    max_minutes : float, optional
        Wall-clock budget: after the first and again after the second epoch
        the schedule is shortened to the number of epochs that fit (recorded
        in the checkpoint).
    resume : bool, optional
        Continue from ``output_dir/checkpoint.pt`` if present.
    progress : bool, optional
        Progress bars (per epoch).
    name : str, optional
        Model name written in the metadata.
    provenance : dict, optional
        Extra provenance (e.g. the simulator command) for the metadata.
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epoch, history_row)`` after each checkpoint.

    Returns
    -------
    weights_dir : `~pathlib.Path`
        Directory to pass as ``weights=`` to `~astro_stargal.classify_sources`.

    Examples
    --------
    >>> from astro_stargal import train
    >>> weights_dir = train("training_sky/", "run1", init="random", epochs=20)  # doctest: +SKIP
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    torch.manual_seed(seed)
    net, base_metadata = _initial_network(init, bands, stamp_size, backbone, branches)
    bands, stamp_size = base_metadata["bands"], base_metadata["stamp_size"]

    fields = labelled_fields(sources)
    data = build_training_set(
        fields,
        bands=bands,
        stamp_size=stamp_size,
        label_column=label_column,
        cache=cache or output_dir / "training_set.npz",
        n_jobs=n_jobs,
        progress=progress,
    )
    is_validation = split_by_field(data, validation_fraction, seed)
    training, validation = data.subset(~is_validation), data.subset(is_validation)
    if len(np.unique(training.labels)) < 2:
        msg = "the training fields must contain both stars and galaxies"
        raise ValueError(msg)
    if init == "random" or base_metadata.get("fresh"):
        _set_feature_normalisation(net, training.catalog)

    batch_size = batch_size or (1024 if device.type == "cuda" else 128)
    loop = _TrainingLoop(
        net,
        training,
        validation,
        device=device,
        batch_size=batch_size,
        epochs=epochs,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        average_decay=average_decay,
        band_dropout=band_dropout,
        augment=augment,
        seed=seed,
        progress=progress,
    )
    checkpoint_path = output_dir / CHECKPOINT_FILE
    if resume and checkpoint_path.exists():
        loop.restore(torch.load(checkpoint_path, map_location="cpu", weights_only=True))
    started = time.monotonic()
    while loop.epoch < loop.planned_epochs and loop.epochs_without_improvement < patience:
        row = loop.run_epoch()
        if max_minutes is not None and loop.epoch <= 2:
            # Planned twice: the first epoch also pays for warm-up (cuDNN autotuning and the like).
            loop.fit_plan_to_budget(row["seconds"], 60 * max_minutes - (time.monotonic() - started))
        state = loop.state()
        atomic_write(checkpoint_path, lambda path, state=state: torch.save(state, path))
        _write_history(output_dir, loop.history)
        if on_epoch_end is not None:
            on_epoch_end(loop.epoch, row)

    net.load_state_dict(dequantise_state(quantise_state(loop.best_state)))
    net.to(device)
    validation_logits = loop.logits(validation, net)
    temperature, bias = fit_calibration(validation_logits, validation.labels)
    net.temperature.fill_(temperature)
    net.calibration_bias.fill_(bias)
    p_star = 1 / (1 + np.exp(-(validation_logits / temperature + bias)))
    metrics = validation_metrics(p_star, validation.labels, validation.magnitude)
    metadata = {
        "name": name or f"{base_metadata.get('name', 'astro_stargal')}-retrained",
        "description": "astro_stargal star-galaxy fusion network (ResNet image branch + BiLSTM catalog branch)",
        "bands": list(bands),
        "stamp_size": stamp_size,
        "pixel_scale": base_metadata.get("pixel_scale", PIXEL_SCALE),
        "feature_names": list(FEATURE_NAMES),
        "image_normalisation": f"asinh((pixel - local background) / ({IMAGE_SOFTENING} * sky sigma)); "
        "validity channel per band",
        "training": {
            "astro_stargal_version": __version__,
            "init": str(init),
            "fields": data.field_names,
            "validation_fields": sorted({data.field_names[i] for i in np.unique(validation.field)}),
            "n_train": len(training),
            "n_train_stars": int(training.labels.sum()),
            "n_validation": len(validation),
            "epochs_run": loop.epoch,
            "best_epoch": loop.best_epoch,
            "options": {
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "weight_decay": weight_decay,
                "average_decay": average_decay,
                "band_dropout": band_dropout,
                "augment": augment,
                "seed": seed,
                "backbone": backbone,
            },
            **(provenance or {}),
        },
        "metrics": {"validation": metrics},
    }
    weights_dir = save_weights(net.cpu(), output_dir / "weights", metadata=metadata)
    _write_learning_curve(output_dir)
    return weights_dir


def _initial_network(init, bands, stamp_size, backbone, branches):
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
        net = StarGalaxyNet(len(bands), len(FEATURE_NAMES), backbone=backbone, branches=branches)
        return net, {"bands": bands, "stamp_size": int(stamp_size), "fresh": True, "name": "astro_stargal"}
    model = load_model(init, device="cpu")
    if bands is not None and list(bands) != list(model.bands):
        msg = f"cannot fine-tune a model with bands {list(model.bands)} on bands {list(bands)}; use init='random'"
        raise ValueError(msg)
    # A copy: the loaded network is shared with every classify_sources call in this process.
    net = copy.deepcopy(model.net)
    net.temperature.fill_(1.0)
    net.calibration_bias.fill_(0.0)
    return net, dict(model.metadata)


def _set_feature_normalisation(net, catalog):
    present = catalog[:, :, -1:] > 0
    features = catalog[:, :, :-1]
    counts = np.maximum(present.sum(axis=0), 1)
    mean = (features * present).sum(axis=0) / counts
    variance = (((features - mean) * present) ** 2).sum(axis=0) / counts
    net.feature_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    net.feature_std.copy_(torch.from_numpy(np.sqrt(variance).clip(1e-3).astype(np.float32)))


class _TrainingLoop:
    """Epoch loop with deterministic per-epoch randomness, so a resumed run equals an uninterrupted one."""

    def __init__(
        self,
        net,
        training,
        validation,
        *,
        device,
        batch_size,
        epochs,
        learning_rate,
        weight_decay,
        average_decay,
        band_dropout,
        augment,
        seed,
        progress,
    ):
        self.net = net.to(device)
        self.device = device
        self.on_gpu = device.type == "cuda"
        if self.on_gpu:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.training = _to_tensors(training, device)
        self.validation = validation
        self.batch_size = batch_size
        self.band_dropout = band_dropout
        self.augment = augment
        self.seed = seed
        self.progress = progress
        self.n_bands = net.n_bands
        n_stars = int(training.labels.sum())
        n_total = len(training)
        self.class_weight = torch.tensor(
            [n_total / (2 * (n_total - n_stars)), n_total / (2 * n_stars)], device=device
        )
        self.steps_per_epoch = math.ceil(n_total / batch_size)
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
        self.average = _WeightAverage(self.net, average_decay)
        self.learning_rate = learning_rate
        self.requested_epochs = epochs
        self.planned_epochs = epochs
        self.step = 0
        self.epoch = 0
        self.history = []
        self.best_state = {name: value.detach().cpu().clone() for name, value in net.state_dict().items()}
        self.best_loss = math.inf
        self.best_epoch = 0
        self.epochs_without_improvement = 0

    def state(self):
        return {
            "epoch": self.epoch,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "average": self.average.state(),
            "step": self.step,
            "planned_epochs": self.planned_epochs,
            "history": self.history,
            "best_state": self.best_state,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def restore(self, state):
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.average.restore(state["average"])
        self.step = state["step"]
        self.planned_epochs = state["planned_epochs"]
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.best_state = state["best_state"]
        self.best_loss = state["best_loss"]
        self.best_epoch = state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]

    def run_epoch(self):
        started = time.monotonic()
        epoch_seed = self.seed * 100_003 + self.epoch
        torch.manual_seed(epoch_seed)
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed)
        n_total = len(self.training["labels"])
        order = torch.randperm(n_total, generator=generator, device=self.device)
        self.net.train()
        total_loss = 0.0
        steps = range(0, n_total, self.batch_size)
        for start in tqdm(steps, disable=not self.progress, desc=f"epoch {self.epoch + 1}", unit="batch"):
            rows = order[start : start + self.batch_size]
            stamps, catalog, labels = (self.training[key][rows] for key in ("stamps", "catalog", "labels"))
            stamps = stamps.float()
            if self.augment:
                stamps = _rotate_and_flip(stamps, generator)
                stamps = _add_noise(stamps, generator, self.n_bands)
            stamps, catalog = _drop_bands(stamps, catalog, generator, self.n_bands, self.band_dropout)
            if self.on_gpu:
                stamps = stamps.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_gpu):
                logits = self.net(stamps, catalog).float()
            weights = self.class_weight[labels.long()]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, labels.float(), weight=weights
            )
            for group in self.optimizer.param_groups:
                group["lr"] = self.current_learning_rate()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.average.update(self.net)
            self.step += 1
            total_loss += float(loss.detach()) * len(rows)
        self.epoch += 1

        val_loss_raw = _weighted_bce(self.logits(self.validation, self.net), self.validation.labels)
        logits = self.logits(self.validation)
        val_loss = _weighted_bce(logits, self.validation.labels)
        predicted_star = logits > 0
        row = {
            "epoch": self.epoch,
            "train_loss": total_loss / n_total,
            "val_loss": val_loss,
            "val_loss_raw": val_loss_raw,
            "val_accuracy": float(np.mean(predicted_star == self.validation.labels.astype(bool))),
            "val_star_recall": _recall(predicted_star, self.validation.labels, 1),
            "val_galaxy_recall": _recall(predicted_star, self.validation.labels, 0),
            "learning_rate": self.current_learning_rate(),
            "seconds": time.monotonic() - started,
        }
        self.history.append(row)
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.epochs_without_improvement = val_loss, self.epoch, 0
            self.best_state = {
                name: value.detach().cpu().clone() for name, value in self.average.net.state_dict().items()
            }
        else:
            self.epochs_without_improvement += 1
        return row

    def current_learning_rate(self):
        """One-cycle schedule: linear warm-up over 15% of the planned steps, then cosine decay to zero."""
        total = max(1, self.planned_epochs * self.steps_per_epoch)
        progress = min(self.step / total, 1.0)
        if progress < WARMUP_FRACTION:
            return self.learning_rate * (0.04 + 0.96 * progress / WARMUP_FRACTION)
        decay = (progress - WARMUP_FRACTION) / (1 - WARMUP_FRACTION)
        return self.learning_rate * 0.5 * (1 + math.cos(math.pi * decay))

    def fit_plan_to_budget(self, seconds_per_epoch, seconds_left):
        """Shorten the schedule (never beyond the requested epochs) so that it ends inside the time budget."""
        affordable = self.epoch + int(seconds_left // seconds_per_epoch)
        self.planned_epochs = max(self.epoch, min(self.requested_epochs, affordable))

    @torch.inference_mode()
    def logits(self, data, net=None):
        """Uncalibrated logits of ``data`` (a `TrainingSet`) with ``net`` (default: the averaged weights)."""
        net = self.average.net if net is None else net
        net.eval()
        outputs = []
        for start in range(0, len(data), self.batch_size):
            stamps = torch.from_numpy(data.stamps[start : start + self.batch_size].astype(np.float32))
            catalog = torch.from_numpy(data.catalog[start : start + self.batch_size])
            stamps, catalog = stamps.to(self.device), catalog.to(self.device)
            if self.on_gpu:
                stamps = stamps.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_gpu):
                outputs.append(net(stamps, catalog).float().cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)


class _WeightAverage:
    """Exponential moving average of a network's weights and BatchNorm statistics.

    The decay ramps up as ``(1 + n) / (10 + n)`` over the first updates, so
    that a short run is not dominated by its random starting weights.
    Integer buffers (BatchNorm's batch counters) are copied, not averaged.
    """

    def __init__(self, net, decay):
        self.decay = float(decay)
        self.net = copy.deepcopy(net)
        self.net.requires_grad_(False)
        self.updates = 0
        self._pairs = None

    @torch.no_grad()
    def update(self, net):
        if self._pairs is None:
            pairs = list(zip(self.net.state_dict().values(), net.state_dict().values(), strict=True))
            self._pairs = (
                [(mine, theirs) for mine, theirs in pairs if mine.is_floating_point()],
                [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()],
            )
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floating, counters = self._pairs
        torch._foreach_lerp_([mine for mine, _ in floating], [theirs for _, theirs in floating], 1.0 - decay)
        for mine, theirs in counters:
            mine.copy_(theirs)

    def state(self):
        return {"net": self.net.state_dict(), "updates": self.updates}

    def restore(self, state):
        self.net.load_state_dict(state["net"])
        self.updates = state["updates"]


def _to_tensors(data, device):
    """The training arrays as tensors on ``device`` (stamps kept in float16 to halve memory)."""
    return {
        "stamps": torch.from_numpy(data.stamps).to(device),
        "catalog": torch.from_numpy(data.catalog).to(device),
        "labels": torch.from_numpy(data.labels).to(device),
    }


def _rotate_and_flip(stamps, generator):
    """Apply one of the eight rotations/flips of the square to each stamp."""
    choice = torch.randint(0, 8, (len(stamps),), generator=generator, device=stamps.device)
    result = stamps.clone()
    for transform in range(1, 8):
        rows = choice == transform
        if rows.any():
            transformed = torch.rot90(stamps[rows], k=transform % 4, dims=(2, 3))
            result[rows] = torch.flip(transformed, dims=(3,)) if transform >= 4 else transformed
    return result


def _add_noise(stamps, generator, n_bands):
    """Add a new Gaussian sky-noise realisation of up to 0.5 sigma to the pixel channels."""
    pixels = stamps[:, :n_bands]
    valid = stamps[:, n_bands:]
    level = 0.5 * torch.rand((len(stamps), 1, 1, 1), generator=generator, device=stamps.device)
    noise = torch.randn(pixels.shape, generator=generator, device=stamps.device) * level
    linear = torch.sinh(pixels) + noise / IMAGE_SOFTENING
    return torch.cat([torch.asinh(linear) * valid, valid], dim=1)


def _drop_bands(stamps, catalog, generator, n_bands, probability):
    """Hide each band of each source with ``probability``, always keeping one present band."""
    if probability <= 0:
        return stamps, catalog
    present = catalog[:, :, -1] > 0
    dropped = (torch.rand(present.shape, generator=generator, device=present.device) < probability) & present
    emptied = (present & ~dropped).sum(dim=1) == 0
    dropped[emptied] = False
    keep = (~dropped).to(stamps.dtype)
    stamps = stamps * torch.cat([keep, keep], dim=1)[:, :, None, None]
    catalog = catalog * keep[:, :, None]
    return stamps, catalog


def _weighted_bce(logits, labels):
    """Class-balanced binary cross-entropy (the training loss) on numpy arrays."""
    labels = labels.astype(np.float64)
    logits = logits.astype(np.float64)
    per_source = np.logaddexp(0, logits) - labels * logits
    star = labels == 1
    return float(0.5 * per_source[star].mean() + 0.5 * per_source[~star].mean())


def _recall(predicted_star, labels, cls):
    truth = labels == cls
    if not truth.any():
        return float("nan")
    return float(np.mean(predicted_star[truth] == bool(cls)))


def fit_calibration(logits, labels):
    """Temperature and bias minimising the validation log-loss of ``sigmoid(logit / T + b)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, 1000)
    >>> temperature, bias = fit_calibration(3.0 * (2 * labels - 1) + rng.normal(size=1000), labels)
    >>> temperature > 0
    True
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)

    def log_loss(parameters):
        scaled = logits * np.exp(-parameters[0]) + parameters[1]
        return float(np.mean(np.logaddexp(0, scaled) - labels * scaled))

    result = minimize(log_loss, x0=np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9})
    return float(np.exp(result.x[0])), float(result.x[1])


def validation_metrics(p_star, labels, magnitude):
    """Recalls, accuracy and expected calibration error of calibrated probabilities."""
    predicted_star = p_star >= 0.5
    ece = expected_calibration_error(Table({"p_star": p_star, "label": labels.astype(bool)}))
    metrics = {
        "n_sources": len(labels),
        "accuracy": float(np.mean(predicted_star == labels.astype(bool))),
        "star_recall": _recall(predicted_star, labels, 1),
        "galaxy_recall": _recall(predicted_star, labels, 0),
        "expected_calibration_error": float(ece),
    }
    bright = magnitude < 25
    if bright.any():
        metrics["star_recall_r_lt_25"] = _recall(predicted_star[bright], labels[bright], 1)
        metrics["galaxy_recall_r_lt_25"] = _recall(predicted_star[bright], labels[bright], 0)
    return metrics


def _write_history(output_dir, history):
    table = Table(rows=history) if history else Table()
    table.write(output_dir / HISTORY_FILE, overwrite=True)
    (output_dir / "history.json").write_text(json.dumps(history, indent=1))


def _write_learning_curve(output_dir):
    try:
        from ..evaluation import plot_training_curves
    except ImportError:
        return
    try:
        figure = plot_training_curves(output_dir / HISTORY_FILE)
    except ImportError:
        return
    figure.savefig(output_dir / "learning_curve.png", dpi=120)
