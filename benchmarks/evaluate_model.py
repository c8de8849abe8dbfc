"""Measure a trained model on simulated fields it never saw, through the public API.

Runs `astro_stargal.classify_sources` on every tile of a simulator output
directory (``astro-stargal simulate``), joins the result with the truth and
prints: recall per class for sources with true r < 25 (the acceptance
figures; again without the sources flagged ``BLENDED``), recall per r-magnitude bin down to r = 26, galaxy recall at
z > 1.5, the expected calibration error and the ROC AUC.

Usage::

    astro-stargal simulate test_sky --size 1024 --tiles 16 --seed 99
    python benchmarks/evaluate_model.py test_sky [--weights DIR] [--device cpu] [--json out.json]

``--orientations 8`` is test-time augmentation: the network's logit is
averaged over the eight rotations and flips of the stamps (eight times the
network time). It is an experiment, not an option of `classify_sources`: it
did not reduce the errors (``docs/model_card.md``).
"""

import argparse
import copy
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table, vstack

from astro_stargal import classify_sources, load_model
from astro_stargal.evaluation import expected_calibration_error, roc_auc
from astro_stargal.flags import SourceFlag
from astro_stargal.training import labelled_fields

MAGNITUDE_BINS = (17, 19, 20, 21, 22, 23, 24, 25, 26)

#: Galaxies with a true half-light radius below this (arcsec) are smaller than the PSF FWHM.
RESOLVED_RADIUS = 0.1


def classify_simulation(sky_dir, *, weights=None, device=None, orientations=1):
    """Classify every tile of ``sky_dir``; return the truth joined with the classifier columns."""
    model = load_model(weights, device=device)
    if orientations == 8:
        model = _averaged_over_orientations(model)
    elif orientations != 1:
        raise ValueError(f"orientations must be 1 or 8, not {orientations}")
    tables = []
    started = time.perf_counter()
    for field in labelled_fields(Path(sky_dir)):
        truth = field.table.copy()
        truth.keep_columns(
            [
                name
                for name in truth.colnames
                if name in ("id", "tile", "ra", "dec", "label", "mag_r", "redshift", "half_light_radius")
            ]
        )
        tables.append(classify_sources(truth, field.images, weights=model, device=device, progress=False))
    result = vstack(tables)
    result.meta["seconds"] = time.perf_counter() - started
    return result


def _averaged_over_orientations(model):
    """A copy of ``model`` whose network averages its logit over the eight rotations and flips of the stamps."""
    net = copy.deepcopy(model.net)
    single = net.forward

    def forward(stamps, catalog):
        logits = []
        for flipped in (stamps, torch.flip(stamps, dims=(3,))):
            logits.extend(single(torch.rot90(flipped, k=k, dims=(2, 3)), catalog) for k in range(4))
        return torch.stack(logits).mean(dim=0)

    net.forward = forward
    return dataclasses.replace(model, net=net)


def _recall(table, label):
    truth = table["label"] == label
    if not truth.any():
        return float("nan"), 0
    hits = table["sg_class"][truth] == label
    return float(np.mean(np.asarray(hits.filled(False) if hasattr(hits, "filled") else hits))), int(
        truth.sum()
    )


def summarise(result):
    """Acceptance metrics and per-bin recalls of a classified, truth-joined table."""
    classified = result[np.isfinite(result["p_star"])]
    bright = classified[classified["mag_r"] < 25]
    summary = {
        "n_sources": len(result),
        "n_unclassified": int(len(result) - len(classified)),
        "seconds": result.meta.get("seconds"),
    }
    unblended = bright[(np.asarray(bright["sg_flags"]) & SourceFlag.BLENDED) == 0]
    summary["blended_fraction_r_lt_25"] = 1 - len(unblended) / max(len(bright), 1)
    for name, subset in (("all", classified), ("r_lt_25", bright), ("unblended_r_lt_25", unblended)):
        for label in ("star", "galaxy"):
            recall, count = _recall(subset, label)
            summary[f"{label}_recall_{name}"] = recall
            summary[f"n_{label}_{name}"] = count
    galaxies = bright[bright["label"] == "galaxy"]
    resolved = galaxies[galaxies["half_light_radius"] >= RESOLVED_RADIUS]
    summary["galaxy_recall_resolved_r_lt_25"], summary["n_galaxy_resolved_r_lt_25"] = _recall(
        resolved, "galaxy"
    )
    summary["galaxy_errors_r_lt_25"] = int((galaxies["sg_class"] == "star").sum())
    summary["galaxy_errors_below_psf_r_lt_25"] = int(
        ((galaxies["sg_class"] == "star") & (galaxies["half_light_radius"] < RESOLVED_RADIUS)).sum()
    )
    high_z = bright[(bright["label"] == "galaxy") & (bright["redshift"] > 1.5)]
    summary["galaxy_recall_z_gt_1.5_r_lt_25"], summary["n_galaxy_z_gt_1.5_r_lt_25"] = _recall(
        high_z, "galaxy"
    )
    summary["expected_calibration_error"] = expected_calibration_error(classified)
    summary["roc_auc"] = roc_auc(classified)
    bins = []
    for low, high in itertools.pairwise(MAGNITUDE_BINS):
        in_bin = classified[(classified["mag_r"] >= low) & (classified["mag_r"] < high)]
        star_recall, n_star = _recall(in_bin, "star")
        galaxy_recall, n_galaxy = _recall(in_bin, "galaxy")
        bins.append(
            {
                "r_min": low,
                "r_max": high,
                "n_star": n_star,
                "star_recall": star_recall,
                "n_galaxy": n_galaxy,
                "galaxy_recall": galaxy_recall,
            }
        )
    summary["per_magnitude_bin"] = bins
    return summary


def print_summary(summary, title):
    print(f"== {title}: {summary['n_sources']} sources, {summary['n_unclassified']} unclassified")
    print(
        f"r < 25: star recall {summary['star_recall_r_lt_25']:.4%} (n={summary['n_star_r_lt_25']}), "
        f"galaxy recall {summary['galaxy_recall_r_lt_25']:.4%} (n={summary['n_galaxy_r_lt_25']}), "
        f"galaxies z > 1.5: {summary['galaxy_recall_z_gt_1.5_r_lt_25']:.4%} (n={summary['n_galaxy_z_gt_1.5_r_lt_25']})"
    )
    print(
        f"r < 25 without the BLENDED flag ({summary['blended_fraction_r_lt_25']:.1%} have it): "
        f"star recall {summary['star_recall_unblended_r_lt_25']:.4%} (n={summary['n_star_unblended_r_lt_25']}), "
        f"galaxy recall {summary['galaxy_recall_unblended_r_lt_25']:.4%} (n={summary['n_galaxy_unblended_r_lt_25']})"
    )
    print(
        f"galaxy errors at r < 25: {summary['galaxy_errors_r_lt_25']}, of which "
        f'{summary["galaxy_errors_below_psf_r_lt_25"]} have a half-light radius < {RESOLVED_RADIUS}"; '
        f'recall of galaxies with radius >= {RESOLVED_RADIUS}": {summary["galaxy_recall_resolved_r_lt_25"]:.4%} '
        f"(n={summary['n_galaxy_resolved_r_lt_25']})"
    )
    print(
        f"all: star recall {summary['star_recall_all']:.4%}, galaxy recall {summary['galaxy_recall_all']:.4%}, ECE {summary['expected_calibration_error']:.4f}, AUC {summary['roc_auc']:.5f}"
    )
    print(f"{'r bin':>8} {'n_star':>7} {'star recall':>12} {'n_gal':>7} {'gal recall':>11}")
    for row in summary["per_magnitude_bin"]:
        print(
            f"{row['r_min']:>3}-{row['r_max']:<4} {row['n_star']:>7} {row['star_recall']:>12.4%} {row['n_galaxy']:>7} {row['galaxy_recall']:>11.4%}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sky_dir", help="simulator output directory with truth.ecsv")
    parser.add_argument("--weights", help="weights directory or model name (default: bundled)")
    parser.add_argument("--device")
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument("--table", help="write the classified truth table here (ECSV)")
    parser.add_argument(
        "--orientations", type=int, choices=(1, 8), default=1, help="8: average over rotations and flips"
    )
    args = parser.parse_args(argv)
    result = classify_simulation(
        args.sky_dir, weights=args.weights, device=args.device, orientations=args.orientations
    )
    summary = summarise(result)
    print_summary(summary, f"{args.weights or 'bundled model'} on {args.sky_dir}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.table:
        Table(result).write(args.table, overwrite=True)
    return summary


if __name__ == "__main__":
    main()
