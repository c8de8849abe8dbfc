"""Do two models miss the same sources? And does averaging them help?

Reads the classified tables that ``python -m benchmarks.evaluate_model --table`` writes for the
same sky (same rows, in the same order), and prints for sources with true
r < 25: each model's misses per class, the misses they share, and the misses
of their ensemble (the mean of their logits, i.e. of ``log(p / (1 - p))``).
Errors that independently trained models share are in the data, not in one
model's training; an ensemble cannot remove them.

Usage::

    python -m benchmarks.evaluate_model SKY --table a.ecsv
    python -m benchmarks.evaluate_model SKY --weights OTHER --table b.ecsv
    python -m benchmarks.compare_errors a.ecsv b.ecsv
"""

import argparse

import numpy as np
from astropy.table import Table
from scipy.special import expit, logit

from .common import ACCEPTANCE_R_LIMIT

PLURAL = {"galaxy": "galaxies", "star": "stars"}


def missed(table, label, bright):
    """Boolean mask of the bright sources of class ``label`` that ``table`` calls the other class."""
    return bright & (np.asarray(table["label"]) == label) & (np.asarray(table["sg_class"]) != label)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", help="classified ECSV tables of the same sky")
    args = parser.parse_args(argv)
    tables = [Table.read(path) for path in args.tables]
    first = tables[0]
    for path, table in zip(args.tables[1:], tables[1:], strict=True):
        if len(table) != len(first) or not all(np.array_equal(table[c], first[c]) for c in ("tile", "id")):
            raise SystemExit(f"{path} does not hold the rows of {args.tables[0]} in the same order")
    bright = np.asarray(first["mag_r"]) < ACCEPTANCE_R_LIMIT
    probability = np.clip(np.column_stack([np.asarray(t["p_star"], float) for t in tables]), 1e-7, 1 - 1e-7)
    ensemble = first.copy(copy_data=False)
    ensemble["sg_class"] = np.where(expit(logit(probability).mean(axis=1)) >= 0.5, "star", "galaxy")

    print(f"sources with true r < {ACCEPTANCE_R_LIMIT}: {bright.sum()}")
    for label in ("galaxy", "star"):
        masks = [missed(table, label, bright) for table in tables]
        counts = ", ".join(f"{path}: {mask.sum()}" for path, mask in zip(args.tables, masks, strict=True))
        shared = np.logical_and.reduce(masks).sum()
        print(
            f"{PLURAL[label]} missed: {counts}; by all: {shared}; by the ensemble: {missed(ensemble, label, bright).sum()}"
        )


if __name__ == "__main__":
    main()
