"""Labelled fields and the training set prepared from them.

The training set is built with the inference routines themselves
(`~astro_stargal.io.read_images`, `~astro_stargal.io.positions_from_table`,
`~astro_stargal.pipeline.prepare_inputs`), so training and inference cannot
drift apart. It is cached in one ``.npz`` file with its provenance, and split
into training and validation by whole fields. With a teacher model to distil,
each field is also prepared as the teacher's metadata says (its stamp size,
features and normalisation) and the teacher's logits are kept beside the
student's inputs, so they are computed once, not once per epoch.
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
from astropy import units as u
from astropy.table import Table
from tqdm.auto import tqdm

from .._files import atomic_write
from .._version import __version__
from ..exceptions import StarGalaxyWarning
from ..instrument import PIXEL_SCALE, band_order
from ..io import SourcePositions, positions_from_table, read_images
from ..models import load_model
from ..pipeline import (
    FEATURE_NAMES,
    IMAGE_SOFTENING,
    PSF_FEATURE_NAMES,
    BandConstants,
    band_psfs,
    cut_stamps,
    finish_inputs,
    refine_positions,
)

__all__ = ["LabelledField", "TrainingSet", "build_training_set", "labelled_fields", "split_by_field"]

CACHE_FORMAT = 3

#: Sources per teacher forward pass while preparing a field.
TEACHER_BATCH_SIZE = 256

#: String labels counted as point-like (class 1): a QSO is a point source, so it counts with the stars.
POINT_LIKE_LABELS = ("star", "qso")

#: Arrays of a `TrainingSet` with one row per source.
_SOURCE_ARRAYS = ("stamps", "catalog", "labels", "field", "magnitude", "redshift", "flags", "teacher_logit")

#: Arrays of a `TrainingSet` with one row per field: each band's measured PSF.
_FIELD_ARRAYS = ("field_psf_fwhm", "field_psf_ellipticity")


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
        1 for point sources (stars and QSOs), 0 for galaxies.
    field : 1D int32 `~numpy.ndarray`
        Index into ``field_names``.
    magnitude : 1D float32 `~numpy.ndarray`
        True r magnitude when the truth table has ``mag_r`` (else NaN).
    redshift : 1D float32 `~numpy.ndarray`
        Truth redshift when known (else NaN).
    flags : 1D int32 `~numpy.ndarray`
    teacher_logit : 1D float32 `~numpy.ndarray`
        The distilled teacher's uncalibrated logit (NaN when no teacher was given).
    field_names : list of str
    provenance : dict
    field_psf_fwhm : 3D float32 `~numpy.ndarray`
        ``(n_fields, n_bands, 2)``: least and greatest FWHM (arcsec) over the
        nodes of each field's measured PSF; NaN where it was not measured.
    field_psf_ellipticity : 2D float32 `~numpy.ndarray`
        ``(n_fields, n_bands)``: greatest ellipticity of each field's measured PSF.

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
    teacher_logit: np.ndarray
    field_names: list
    provenance: dict
    field_psf_fwhm: np.ndarray = None
    field_psf_ellipticity: np.ndarray = None

    def __len__(self):
        return len(self.labels)

    def subset(self, rows):
        """The sources at ``rows`` (an index or boolean array); the per-field PSF summary is kept whole."""
        arrays = {name: getattr(self, name)[rows] for name in _SOURCE_ARRAYS}
        fields = {name: getattr(self, name) for name in _FIELD_ARRAYS}
        return TrainingSet(**arrays, field_names=self.field_names, provenance=self.provenance, **fields)

    def psf_range(self, bands):
        """The validity range the training fields' measured PSFs span, and each band's median FWHM.

        Parameters
        ----------
        bands : sequence of str
            The bands of the arrays, in order.

        Returns
        -------
        validity : dict
            ``{"psf_fwhm": {band: [min, max]}, "psf_ellipticity_max": {band: value}}``
            (arcsec) for the bands measured in at least one field.
        reference_fwhm : dict
            Band -> median over fields of the central FWHM (arcsec).
        """
        validity, reference = {"psf_fwhm": {}, "psf_ellipticity_max": {}}, {}
        if self.field_psf_fwhm is None:
            return validity, reference
        for index, band in enumerate(bands):
            fwhm = self.field_psf_fwhm[:, index]
            measured = np.isfinite(fwhm).all(axis=1)
            if not measured.any():
                continue
            validity["psf_fwhm"][band] = [
                round(float(fwhm[measured, 0].min()), 4),
                round(float(fwhm[measured, 1].max()), 4),
            ]
            ellipticity = self.field_psf_ellipticity[measured, index]
            validity["psf_ellipticity_max"][band] = round(float(max(np.nanmax(ellipticity), 1e-3)), 4)
            reference[band] = round(float(np.median(fwhm[measured].mean(axis=1))), 4)
        return validity, reference


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
        return [LabelledField(name=directory.name, table=truth, images=_simulated_images(directory, ""))]
    return [
        LabelledField(
            name=f"{directory.name}/tile{tile}",
            table=truth[truth["tile"] == tile],
            images=_simulated_images(directory, f"tile{tile}_"),
        )
        for tile in np.unique(truth["tile"])
    ]


def _simulated_images(directory, prefix):
    """Band -> image path, or ``(image, weight map)`` paths where the simulator wrote a weight map."""
    images = {}
    for band in band_order():
        image = directory / f"{prefix}{band}.fits"
        if not image.exists():
            continue
        weight = directory / f"{prefix}{band}.weight.fits"
        images[band] = (str(image), str(weight)) if weight.exists() else str(image)
    return images


def build_training_set(
    fields,
    *,
    bands,
    stamp_size,
    image_crop=None,
    teacher=None,
    label_column="label",
    cache=None,
    n_jobs=1,
    progress=None,
    features=FEATURE_NAMES,
    recentre=True,
    position_error=0.0,
    max_magnitude=None,
    reference_psf_fwhm=None,
    seed=0,
):
    """Prepare every labelled source with the inference routines (cached on disk).

    Each field goes through what `~astro_stargal.classify_sources` does to a
    table: its positions (moved at random by ``position_error``, as another
    catalog's would be) are recentred on the sources' light, each band's PSF
    is measured from the field's point sources, and stamps and features are
    made by the same routines, so training and inference cannot drift apart.

    Parameters
    ----------
    fields : list of `LabelledField`
    bands : sequence of str
        Bands, ordered by wavelength.
    stamp_size : int
    image_crop : int, optional
        Keep the central ``image_crop`` pixels of each stamp as the network's image
        (default: the whole stamp).
    teacher : str, optional
        Weights directory of a model to distil: its logits are computed for
        every source from its own preparation (``teacher_logit``).
    label_column : str, optional
        Truth column: strings (``'star'`` or ``'qso'`` for point sources,
        ``'galaxy'``), or booleans/integers (1 = point source).
    cache : str or `~pathlib.Path`, optional
        ``.npz`` file. Reused when its provenance matches; rebuilt when it is
        missing, stale or corrupted.
    n_jobs : int, optional
        Worker processes preparing fields in parallel.
    progress : bool, optional
    features : sequence of str, optional
        Catalog features, in the network's order (PSF-relative ones need each
        band's PSF: measured, or ``reference_psf_fwhm``).
    recentre : bool, optional
        Recentre each source on its light, as `~astro_stargal.classify_sources` does.
    position_error : float, optional
        Rms per axis (arcsec) of the random offset added to each true position first.
    max_magnitude : float, optional
        Leave out sources whose true r magnitude (``mag_r``) is fainter.
    reference_psf_fwhm : dict, optional
        Band -> FWHM (arcsec) assumed where a field has too few stars to measure the PSF.
    seed : int, optional
        Seed of the position offsets (per field, so fields can be prepared in parallel).

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
    preparation = {
        "bands": list(bands),
        "stamp_size": stamp_size,
        "image_crop": None if image_crop is None else int(image_crop),
        "teacher": None if teacher is None else str(teacher),
        "features": list(features),
        "label_column": label_column,
        "recentre": bool(recentre),
        "position_error": float(position_error),
        "max_magnitude": None if max_magnitude is None else float(max_magnitude),
        "reference_psf_fwhm": dict(reference_psf_fwhm or {}),
        "seed": int(seed),
    }
    provenance = {
        "cache_format": CACHE_FORMAT,
        "astro_stargal_version": __version__,
        "fields": [field.name for field in fields],
        **preparation,
    }
    if cache is not None:
        cached = _read_cache(Path(cache), provenance)
        if cached is not None:
            return cached
    tasks = [(field, preparation) for field in fields]
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
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in _SOURCE_ARRAYS}
    summaries = {name: np.stack([part[name] for part in parts]) for name in _FIELD_ARRAYS}
    training_set = TrainingSet(**arrays, field_names=provenance["fields"], provenance=provenance, **summaries)
    if cache is not None:
        _write_cache(Path(cache), training_set)
    return training_set


def _prepare_field(task):
    field, preparation = task
    table = field.table
    label_column, bands = preparation["label_column"], tuple(preparation["bands"])
    if label_column not in table.colnames:
        msg = f"field {field.name!r}: no label column {label_column!r}; columns are {table.colnames}"
        raise ValueError(msg)
    if preparation["max_magnitude"] is not None:
        table = table[~(_optional_column(table, "mag_r") > preparation["max_magnitude"])]
    labels = _star_labels(table[label_column], field.name)
    band_images = read_images(field.images, bands)
    positions = _offset(positions_from_table(table), preparation, field.name)
    if preparation["recentre"]:
        positions, _, _ = refine_positions(band_images, positions, bands, pixel_scale=PIXEL_SCALE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarGalaxyWarning)  # a field short of stars: its PSF stays unmeasured
        psfs = band_psfs(
            band_images,
            positions,
            bands,
            pixel_scale=PIXEL_SCALE,
            reference_fwhm=preparation["reference_psf_fwhm"],
        )
    features = preparation["features"]
    if any(name in PSF_FEATURE_NAMES for name in features):
        unknown = [band for band in band_images if band not in psfs.models]
        if unknown:
            msg = (
                f"field {field.name!r}: the PSF of band(s) {unknown} cannot be measured (too few stars) "
                "and no reference_psf_fwhm is given for them; use larger fields or give one"
            )
            raise ValueError(msg)
    preprocessing = {"image_softening": IMAGE_SOFTENING, "image_crop": preparation["image_crop"]}
    inputs = _model_inputs(
        band_images, positions, psfs, bands, preparation["stamp_size"], features, preprocessing
    )
    keep = inputs.classifiable
    teacher_logit = np.full(int(keep.sum()), np.nan, dtype=np.float32)
    if preparation["teacher"] is not None:
        teacher_logit = _teacher_logits(preparation["teacher"], band_images, positions[keep], psfs)
    return {
        "stamps": inputs.stamps[keep].astype(np.float16),
        "catalog": inputs.catalog[keep],
        "labels": labels[keep],
        "magnitude": _optional_column(table, "mag_r")[keep],
        "redshift": _optional_column(table, "redshift")[keep],
        "flags": inputs.flags[keep],
        "teacher_logit": teacher_logit,
        "field_psf_fwhm": np.array(
            [
                psfs.fwhm.get(band, (np.nan, np.nan))
                if psfs.origin.get(band) == "measured"
                else (np.nan, np.nan)
                for band in bands
            ],
            dtype=np.float32,
        ),
        "field_psf_ellipticity": np.array(
            [
                np.nanmax(psfs.models[band].ellipticity) if psfs.origin.get(band) == "measured" else np.nan
                for band in bands
            ],
            dtype=np.float32,
        ),
    }


def _model_inputs(band_images, positions, psfs, bands, stamp_size, features, preprocessing):
    """A model's inputs for ``positions``, prepared as its stamp size, features and ``preprocessing`` say."""
    raw = cut_stamps(band_images, positions, bands, stamp_size, psf_models=psfs.models)
    constants = BandConstants.from_images(
        band_images,
        bands,
        feature_names=features,
        image_softening=preprocessing.get("image_softening", IMAGE_SOFTENING),
        psf_models=psfs.models,
        stamp_size=stamp_size,
        image_crop=preprocessing.get("image_crop"),
    )
    return finish_inputs(raw, constants)


@torch.inference_mode()
def _teacher_logits(directory, band_images, positions, psfs):
    """The uncalibrated logits of the teacher in ``directory``, from its own stamps and features."""
    teacher = load_model(directory, device="cpu")
    inputs = _model_inputs(
        band_images,
        positions,
        psfs,
        teacher.bands,
        teacher.stamp_size,
        teacher.feature_names,
        teacher.metadata.get("preprocessing", {}),
    )
    logits = [
        teacher.net(
            torch.from_numpy(inputs.stamps[start : start + TEACHER_BATCH_SIZE]),
            torch.from_numpy(inputs.catalog[start : start + TEACHER_BATCH_SIZE]),
        ).float()
        for start in range(0, len(inputs), TEACHER_BATCH_SIZE)
    ]
    return torch.cat(logits).numpy() if logits else np.zeros(0, dtype=np.float32)


def _offset(positions, preparation, field_name):
    """``positions`` moved by a random offset of ``position_error`` arcsec rms per axis (seeded per field)."""
    error = preparation["position_error"]
    if error <= 0:
        return positions
    entropy = [preparation["seed"], *field_name.encode()]
    rng = np.random.default_rng(entropy)
    shift = rng.normal(0.0, error, size=(2, len(positions)))
    if positions.sky is None:
        return SourcePositions(
            sky=None,
            x=positions.x + shift[0] / PIXEL_SCALE,
            y=positions.y + shift[1] / PIXEL_SCALE,
            valid=positions.valid,
        )
    sky = positions.sky.spherical_offsets_by(shift[0] * u.arcsec, shift[1] * u.arcsec)
    return SourcePositions(sky=sky, x=None, y=None, valid=positions.valid)


def _star_labels(column, field_name):
    values = np.asarray(column)
    if values.dtype.kind in "US":
        lowered = np.char.lower(np.char.strip(values.astype(str)))
        known = np.isin(lowered, [*POINT_LIKE_LABELS, "galaxy"])
        if not known.all():
            msg = (
                f"field {field_name!r}: labels must be 'star', 'qso' (point sources) or 'galaxy', "
                f"found {sorted(set(lowered[~known]))}"
            )
            raise ValueError(msg)
        return np.isin(lowered, POINT_LIKE_LABELS).astype(np.uint8)
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
            arrays = {name: stored[name] for name in (*_SOURCE_ARRAYS, *_FIELD_ARRAYS)}
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
    arrays = {name: getattr(training_set, name) for name in (*_SOURCE_ARRAYS, *_FIELD_ARRAYS)}

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
