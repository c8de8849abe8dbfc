"""Retraining the classifier on simulated or real labelled fields.

`train` prepares the labelled sources with the inference routines themselves
(`build_training_set`), trains or fine-tunes the network, calibrates it and
writes a weights directory that `~astro_stargal.classify_sources` loads.
One `TrainConfig` holds every option of a run and is recorded whole in the
weights' metadata; its ``augmentations`` are a list of transforms
(`RotateFlip`, `SkyNoise`, `BandDropout`), so an ablation passes another list.
"""

from ._augmentation import Augmentation, BandDropout, RotateFlip, SkyNoise, standard_augmentations
from ._calibration import fit_calibration
from ._config import TrainConfig
from ._data import LabelledField, TrainingSet, build_training_set, labelled_fields, split_by_field
from ._train import train

__all__ = [
    "Augmentation",
    "BandDropout",
    "LabelledField",
    "RotateFlip",
    "SkyNoise",
    "TrainConfig",
    "TrainingSet",
    "build_training_set",
    "fit_calibration",
    "labelled_fields",
    "split_by_field",
    "standard_augmentations",
    "train",
]
