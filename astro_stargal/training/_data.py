"""Labelled fields and the training set prepared from them.

The training set is built with the inference routines themselves
(`~astro_stargal.io.read_images`, `~astro_stargal.io.positions_from_table`,
`~astro_stargal.pipeline.prepare_inputs`), so training and inference cannot
drift apart. It is cached in one ``.npz`` file with its provenance, and split
into training and validation by whole fields.
"""

import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table
from tqdm.auto import tqdm

from .._files import atomic_write
from .._version import __version__
from ..exceptions import StarGalaxyWarning
from ..instrument import band_order
from ..io import positions_from_table, read_images
from ..pipeline import FEATURE_NAMES, prepare_inputs

__all__ = ["LabelledField", "TrainingSet", "build_training_set", "labelled_fields", "split_by_field"]

CACHE_FORMAT = 1


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
    """Choose whole fields at random for validation, so neighbours never straddle the split.

    Parameters
    ----------
    training_set : `TrainingSet`
        Sources of at least two fields.
    validation_fraction : float
        Fraction of the fields to hold out, rounded; at least one field goes
        to each side.
    seed : int
        Seed of the choice.

    Returns
    -------
    is_validation : 1D bool `~numpy.ndarray`
        True for the sources of the validation fields.

    Examples
    --------
    >>> data = build_training_set(labelled_fields("training_sky/"), bands=band_order(), stamp_size=32)  # doctest: +SKIP
    >>> is_validation = split_by_field(data, 0.15, seed=0)  # doctest: +SKIP
    >>> training, validation = data.subset(~is_validation), data.subset(is_validation)  # doctest: +SKIP
    """
    n_fields = len(training_set.field_names)
    if n_fields < 2:
        msg = f"need at least two fields to split training and validation by field, got {n_fields}"
        raise ValueError(msg)
    n_validation = min(n_fields - 1, max(1, round(validation_fraction * n_fields)))
    chosen = np.random.default_rng(seed).choice(n_fields, size=n_validation, replace=False)
    return np.isin(training_set.field, chosen)
