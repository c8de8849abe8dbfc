"""Retraining the classifier on simulated or real labelled fields.

`train` prepares the labelled sources with the inference routines themselves
(`build_training_set`), trains or fine-tunes the network, calibrates it and
writes a weights directory that `~astro_stargal.classify_sources` loads.
"""

from ._train import LabelledField, TrainingSet, build_training_set, labelled_fields, train

__all__ = ["LabelledField", "TrainingSet", "build_training_set", "labelled_fields", "train"]
