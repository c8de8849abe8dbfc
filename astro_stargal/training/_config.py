"""`TrainConfig`: every option of a training run in one frozen, validated object.

The configuration is recorded whole in the weights' metadata
(``metadata["training"]["config"]``, written by `TrainConfig.to_dict`) and
`TrainConfig.from_dict` rebuilds it exactly, so a model says how it was
trained and the run can be repeated from its weights alone.
"""

import dataclasses
import json
import math
import numbers
import os

import torch

from ..models import BACKBONES
from ..pipeline import KNOWN_FEATURES
from ._augmentation import DEFAULT_AUGMENTATIONS, Augmentation, standard_augmentations

__all__ = ["TrainConfig"]

#: Keywords of `train` before `TrainConfig`, still accepted by `TrainConfig.with_options`.
LEGACY_AUGMENTATION_OPTIONS = ("augment", "band_dropout")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of `train`: the network, the data, the optimisation and the run.

    Every option has the default `train` uses. Values are checked when the
    configuration is made, so a wrong one fails at once with a message that
    names it, not hours into a run. Sequences are stored as tuples and paths
    as strings, so the configuration is immutable and JSON-able.

    Parameters
    ----------
    bands : tuple of str or None
        Model bands, ordered by wavelength (default: the initial model's, or
        the seven CSST bands).
    stamp_size : int
        Stamp side in pixels (ignored when fine-tuning: the initial model's is used).
    image_crop : int or None
        Side of the central part of each stamp that the image branch sees
        (default: the whole stamp; ignored when fine-tuning). The catalog
        features are still measured on the whole stamp, so a model can read
        its features from 24-pixel stamps and its image from the central 16.
    label_column : str
        Truth column: ``'star'``/``'qso'`` (point sources) and ``'galaxy'``, or 1/0.
    features : tuple of str or None
        The network's catalog features, in order (default: the initial
        model's, or `~astro_stargal.pipeline.FEATURE_NAMES` for a random one).
        Add `~astro_stargal.pipeline.PSF_FEATURE_NAMES` to measure each source
        against its local PSF; when fine-tuning a model with fewer features,
        the new ones start with zero weight, so training starts from the
        initial model's predictions.
    recentre : bool
        Recentre each training source on its light, as `~astro_stargal.classify_sources` does.
    position_error : float
        Rms per axis (arcsec) of a random offset added to each true position
        before recentring, as real catalogs' positions carry.
    max_magnitude : float or None
        Leave out training sources fainter than this true r magnitude.
    reference_psf_fwhm : dict or None
        Band -> FWHM (arcsec) assumed where a field has too few stars to
        measure its PSF (default: the initial model's).
    init : str
        ``'bundled'`` (fine-tune the bundled weights), ``'random'``, or a
        weights directory to continue from. Falls back to random, with a
        warning, when the bundled weights are not installed.
    backbone : {'resnet50', 'resnet18', 'compact'}
        Image branch of a randomly initialised model (``'compact'``: the
        small network for CPUs, `~astro_stargal.models.CompactBackbone`).
    lstm_hidden : int
        Hidden units per direction of the catalog branch's BiLSTM (random initialisation).
    branches : tuple of str
        ``('image', 'catalog')``, or one branch alone for an ablation.
    teacher : str or None
        A model (registered name or weights directory) to distil: its
        probabilities, computed once while the training set is prepared
        (with the teacher's own stamps and features), are soft targets mixed
        with the truth labels. It must have the student's bands.
    teacher_weight : float
        Weight of the teacher's soft target in each source's target, in
        [0, 1] (``0.5``: the mean of the teacher's probability and the truth
        label); used only with ``teacher``.
    epochs : int
        Length of the learning-rate schedule (linear warm-up over 15% of the
        steps, then cosine decay to zero).
    batch_size : int or None
        Sources per step (default: 1024 on a GPU, 128 on a CPU).
    learning_rate, weight_decay : float
        AdamW's peak learning rate and decoupled weight decay.
    average_decay : float
        Decay per step of the exponential moving average of the weights that
        is validated and kept (0 keeps the raw weights).
    augmentations : tuple of `Augmentation`
        Transforms applied, in this order, to every training batch (default:
        `RotateFlip`, `SkyNoise`, `BandDropout`); ``()`` trains on the
        stamps as they are.
    validation_fraction : float
        Fraction of fields held out for early stopping and calibration.
    patience : int
        Epochs without a better validation loss before stopping.
    seed : int
        Same seed and data give the same weights (bit for bit on a CPU).
    device : str or None
        See `~astro_stargal.models.resolve_device`.
    cache : str or None
        Training-set cache file (default ``output_dir/training_set.npz``).
    n_jobs : int
        Processes preparing the training set.
    max_minutes : float or None
        Wall-clock budget: after the first and again after the second epoch
        the schedule is shortened to the number of epochs that fit.
    resume : bool
        Continue from ``output_dir/checkpoint.pt`` if present.
    progress : bool or None
        Progress bars: True while preparing the fields and during each epoch,
        False never, None (the default) only while preparing the fields.
    name : str or None
        Model name written in the metadata.
    provenance : dict or None
        Extra JSON-able provenance (e.g. the simulator command), added to
        ``metadata["training"]``; what `train` records itself (fields,
        counts, this configuration) takes precedence over a key of the same name.

    Examples
    --------
    >>> from astro_stargal.training import BandDropout, RotateFlip, TrainConfig
    >>> config = TrainConfig(init="random", epochs=20)
    >>> config.epochs, config.batch_size
    (20, None)
    >>> no_noise = config.with_options(augmentations=[RotateFlip(), BandDropout(probability=0.3)])
    >>> TrainConfig.from_dict(no_noise.to_dict()) == no_noise
    True
    >>> TrainConfig(epochs=0)
    Traceback (most recent call last):
    ...
    ValueError: TrainConfig: epochs must be an integer >= 1, got 0
    """

    bands: tuple | None = None
    stamp_size: int = 32
    image_crop: int | None = None
    label_column: str = "label"
    features: tuple | None = None
    recentre: bool = True
    position_error: float = 0.0
    max_magnitude: float | None = None
    reference_psf_fwhm: dict | None = None
    init: str = "bundled"
    backbone: str = "resnet50"
    lstm_hidden: int = 64
    branches: tuple = ("image", "catalog")
    teacher: str | None = None
    teacher_weight: float = 0.5
    epochs: int = 30
    batch_size: int | None = None
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    average_decay: float = 0.998
    augmentations: tuple = DEFAULT_AUGMENTATIONS
    validation_fraction: float = 0.15
    patience: int = 6
    seed: int = 0
    device: str | None = None
    cache: str | None = None
    n_jobs: int = 1
    max_minutes: float | None = None
    resume: bool = True
    progress: bool | None = None
    name: str | None = None
    provenance: dict | None = None

    def __post_init__(self):
        self._set("bands", _validate_bands(self.bands))
        self._set("stamp_size", self._integer("stamp_size", minimum=1))
        if self.image_crop is not None:
            self._set("image_crop", self._integer("image_crop", minimum=1))
            if self.image_crop > self.stamp_size:
                self._refuse("image_crop", self.image_crop, f"at most stamp_size={self.stamp_size}")
        self._set("label_column", self._text("label_column"))
        if self.features is not None:
            names = self.features
            if (
                isinstance(names, str)
                or not all(isinstance(name, str) for name in names)
                or len(set(names)) != len(names)
            ):
                self._refuse("features", names, "a sequence of distinct feature names")
            unknown = [name for name in names if name not in KNOWN_FEATURES]
            if unknown or not names:
                self._refuse("features", names, f"names from {list(KNOWN_FEATURES)}")
            self._set("features", tuple(names))
        if not isinstance(self.recentre, bool):
            self._refuse("recentre", self.recentre, "True or False")
        self._set("position_error", self._number("position_error", lambda value: value >= 0, ">= 0 (arcsec)"))
        if self.max_magnitude is not None:
            self._set("max_magnitude", self._number("max_magnitude", math.isfinite, "a finite magnitude"))
        if self.reference_psf_fwhm is not None:
            reference = self.reference_psf_fwhm
            if not isinstance(reference, dict) or not all(
                isinstance(value, numbers.Real) and value > 0 for value in reference.values()
            ):
                self._refuse("reference_psf_fwhm", reference, "a dict of band -> FWHM in arcsec (> 0)")
            self._set("reference_psf_fwhm", {str(band): float(value) for band, value in reference.items()})
        self._set("init", self._text("init", paths=True))
        if not isinstance(self.backbone, str) or self.backbone not in BACKBONES:
            self._refuse("backbone", self.backbone, f"one of {sorted(BACKBONES)}")
        if self.image_crop is not None and self.image_crop < BACKBONES[self.backbone]:
            smallest = BACKBONES[self.backbone]
            self._refuse("image_crop", self.image_crop, f"at least {smallest} for backbone {self.backbone!r}")
        self._set("lstm_hidden", self._integer("lstm_hidden", minimum=1))
        self._set("teacher", None if self.teacher is None else self._text("teacher", paths=True))
        weight = self._number("teacher_weight", lambda value: 0 <= value <= 1, "in [0, 1]")
        self._set("teacher_weight", weight)
        if not _is_branches(self.branches):
            self._refuse("branches", self.branches, "('image', 'catalog'), ('image',) or ('catalog',)")
        self._set("branches", tuple(self.branches))
        self._set("epochs", self._integer("epochs", minimum=1))
        self._set("batch_size", None if self.batch_size is None else self._integer("batch_size", minimum=1))
        self._set("learning_rate", self._number("learning_rate", lambda value: value > 0, "> 0"))
        self._set("weight_decay", self._number("weight_decay", lambda value: value >= 0, ">= 0"))
        self._set("average_decay", self._number("average_decay", lambda value: 0 <= value < 1, "in [0, 1)"))
        self._set("augmentations", _validate_augmentations(self.augmentations))
        fraction = self._number("validation_fraction", lambda value: 0 < value < 1, "in (0, 1)")
        self._set("validation_fraction", fraction)
        self._set("patience", self._integer("patience", minimum=1))
        self._set("seed", self._integer("seed", minimum=0))
        if self.device is not None and not isinstance(self.device, (str, torch.device)):
            self._refuse("device", self.device, "a device name such as 'cpu' or 'cuda:0', or None")
        self._set("device", None if self.device is None else str(self.device))
        self._set("cache", None if self.cache is None else self._text("cache", paths=True))
        self._set("n_jobs", self._integer("n_jobs", minimum=1))
        if self.max_minutes is not None:
            self._set("max_minutes", self._number("max_minutes", lambda value: value > 0, "> 0"))
        if not isinstance(self.resume, bool):
            self._refuse("resume", self.resume, "True or False")
        if self.progress is not None and not isinstance(self.progress, bool):
            self._refuse("progress", self.progress, "True, False or None")
        self._set("name", None if self.name is None else self._text("name"))
        self._set("provenance", None if self.provenance is None else _validate_provenance(self.provenance))

    def to_dict(self):
        """The configuration as a JSON-able dict, which `from_dict` turns back into an equal `TrainConfig`.

        Returns
        -------
        options : dict
            Option name -> value; tuples become lists and each augmentation
            its ``to_dict()`` description.

        Examples
        --------
        >>> TrainConfig(epochs=5).to_dict()["augmentations"][2]
        {'name': 'BandDropout', 'probability': 0.15}
        """
        options = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        options["bands"] = None if self.bands is None else list(self.bands)
        options["features"] = None if self.features is None else list(self.features)
        options["branches"] = list(self.branches)
        options["augmentations"] = [augmentation.to_dict() for augmentation in self.augmentations]
        return options

    @classmethod
    def from_dict(cls, options):
        """Rebuild a configuration from `to_dict`'s output (e.g. read from a weights' metadata).

        Parameters
        ----------
        options : dict
            Option name -> value; options left out take their defaults.

        Returns
        -------
        config : `TrainConfig`

        Examples
        --------
        >>> config = TrainConfig.from_dict({"init": "random", "epochs": 20})
        >>> config == TrainConfig(init="random", epochs=20)
        True
        """
        options = dict(options)
        unknown = sorted(set(options) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            msg = f"TrainConfig has no option {', '.join(map(repr, unknown))}"
            raise ValueError(msg)
        if "augmentations" in options:
            options["augmentations"] = [Augmentation.from_dict(item) for item in options["augmentations"]]
        return cls(**options)

    def with_options(self, **options):
        """A copy with ``options`` changed (also today's ``augment=`` and ``band_dropout=`` keywords).

        ``augment`` and ``band_dropout``, the keywords `train` took before
        `TrainConfig`, set ``augmentations`` to
        `standard_augmentations(augment=..., band_dropout=...) <standard_augmentations>`,
        which is what they did then: ``augment=False`` leaves out `RotateFlip`
        and `SkyNoise`, ``band_dropout=p`` sets the `BandDropout` probability
        (0 leaves it out), and the one not given keeps its default.

        Parameters
        ----------
        **options
            New values of `TrainConfig` options.

        Returns
        -------
        config : `TrainConfig`

        Examples
        --------
        >>> config = TrainConfig().with_options(augment=False, epochs=8)
        >>> config.augmentations, config.epochs
        ((BandDropout(probability=0.15),), 8)
        >>> TrainConfig().with_options(epoch=8)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: unknown training option 'epoch'; the options are the fields of TrainConfig: ...
        """
        names = {field.name for field in dataclasses.fields(self)}
        unknown = [name for name in options if name not in names and name not in LEGACY_AUGMENTATION_OPTIONS]
        if unknown:
            msg = (
                f"unknown training option {unknown[0]!r}; the options are the fields of TrainConfig: "
                f"{', '.join(sorted(names))} (and augment, band_dropout)"
            )
            raise TypeError(msg)
        legacy = {name: options.pop(name) for name in LEGACY_AUGMENTATION_OPTIONS if name in options}
        if legacy and "augmentations" in options:
            msg = f"give either augmentations= or {' and '.join(f'{name}=' for name in legacy)}, not both"
            raise TypeError(msg)
        if legacy:
            options["augmentations"] = standard_augmentations(**legacy)
        return dataclasses.replace(self, **options)

    def _set(self, name, value):
        # The dataclass is frozen; normalising a value in __post_init__ is the one place it changes.
        object.__setattr__(self, name, value)

    def _refuse(self, name, value, expected):
        msg = f"TrainConfig: {name} must be {expected}, got {value!r}"
        raise ValueError(msg)

    def _integer(self, name, minimum):
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            self._refuse(name, value, f"an integer >= {minimum}")
        return int(value)

    def _number(self, name, accept, expected):
        value = getattr(self, name)
        is_number = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
        if not (is_number and accept(value)):
            self._refuse(name, value, f"a finite number {expected}")
        return float(value)

    def _text(self, name, paths=False):
        value = getattr(self, name)
        if paths and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            self._refuse(name, value, "a non-empty string" + (" or path" if paths else ""))
        return value


def _is_branches(branches):
    return (
        isinstance(branches, (list, tuple))
        and all(isinstance(branch, str) for branch in branches)
        and len(branches) > 0
        and len(set(branches)) == len(branches)
        and set(branches) <= {"image", "catalog"}
    )


def _validate_bands(bands):
    if bands is None:
        return None
    if isinstance(bands, str) or not isinstance(bands, (list, tuple)):
        msg = f"TrainConfig: bands must be a list of band names, got {bands!r}"
        raise ValueError(msg)
    if not bands or not all(isinstance(band, str) and band for band in bands) or len(set(bands)) < len(bands):
        msg = f"TrainConfig: bands must be distinct non-empty band names, got {bands!r}"
        raise ValueError(msg)
    return tuple(bands)


def _validate_augmentations(augmentations):
    if not isinstance(augmentations, (list, tuple)):
        msg = f"TrainConfig: augmentations must be a list of transforms, got {augmentations!r}"
        raise ValueError(msg)
    for augmentation in augmentations:
        if not isinstance(augmentation, Augmentation):
            msg = (
                f"TrainConfig: augmentations must be Augmentation objects (e.g. RotateFlip(), "
                f"SkyNoise(max_sigma=0.5)), got {augmentation!r}"
            )
            raise ValueError(msg)
    return tuple(augmentations)


def _validate_provenance(provenance):
    if not isinstance(provenance, dict):
        msg = f"TrainConfig: provenance must be a dict, got {type(provenance).__name__}"
        raise ValueError(msg)
    try:
        # A JSON round trip: the config holds exactly what the metadata will record, and its own copy.
        return json.loads(json.dumps(provenance))
    except (TypeError, ValueError) as error:
        msg = f"TrainConfig: provenance must be JSON-able ({error})"
        raise ValueError(msg) from error
