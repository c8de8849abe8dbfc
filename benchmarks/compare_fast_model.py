"""Accuracy of ``csst-fast`` against the bundled model on held-out simulated skies, and where it differs.

Simulates (once) nominal CSST skies from a seed no training sky uses
(default 99, as ``benchmarks.train_bundled_model``'s test sky), classifies
every tile with each model through `astro_stargal.classify_sources`, and
reports for sources with true r < 25: the errors (stars called galaxies plus
galaxies called stars) and their ratio to the reference model's, the recall
of each class and the expected calibration error over all classified
sources; then the errors by r magnitude, by galaxy half-light radius and for
sources with and without the ``BLENDED`` flag, which say what the fast model
gives up and where.

The figures are written to ``benchmarks/results/compare_fast_model.json``
and ``.txt`` (``--output`` changes the stem).

Usage::

    python -m benchmarks.compare_fast_model [--sky-dir DIR] [--tiles 16] [--size 1024] [--seed 99]
        [--models csst-resnet50-bilstm,csst-fast] [--device cpu]
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from astro_stargal import SourceFlag
from astro_stargal.models import DEFAULT_MODEL, FAST_MODEL, bundled_model, fast_model

from .common import (
    ACCEPTANCE_R_LIMIT,
    RESULTS_DIR,
    classify_simulation,
    machine_description,
    simulated_sky,
    summarise,
)

#: The bundled models by name; found in ``weights/`` even in a checkout that was never installed.
BUNDLED = {DEFAULT_MODEL: bundled_model, FAST_MODEL: fast_model}

#: Edges of the r-magnitude bins, and of the galaxies' half-light radius (arcsec) bins, of the breakdown.
MAGNITUDE_EDGES = (15, 21, 22, 23, 24, 25)
RADIUS_EDGES = (0.0, 0.1, 0.2, 0.4, 10.0)


def errors(table):
    """Sources whose ``sg_class`` differs from their label (stars called galaxies and galaxies called stars)."""
    return int((np.asarray(table["sg_class"]) != np.asarray(table["label"])).sum())


def breakdown(table):
    """Errors and source counts by r magnitude, galaxy half-light radius and the BLENDED flag (r < 25)."""
    bright = table[np.isfinite(table["p_star"]) & (table["mag_r"] < ACCEPTANCE_R_LIMIT)]
    rows = []
    for low, high in itertools.pairwise(MAGNITUDE_EDGES):
        part = bright[(bright["mag_r"] >= low) & (bright["mag_r"] < high)]
        rows.append({"split": f"r {low}-{high}", "n": len(part), "errors": errors(part)})
    galaxies = bright[bright["label"] == "galaxy"]
    for low, high in itertools.pairwise(RADIUS_EDGES):
        part = galaxies[(galaxies["half_light_radius"] >= low) & (galaxies["half_light_radius"] < high)]
        rows.append({"split": f'galaxies, radius {low}-{high}"', "n": len(part), "errors": errors(part)})
    blended = (np.asarray(bright["sg_flags"]) & SourceFlag.BLENDED) != 0
    for name, part in (("BLENDED", bright[blended]), ("not BLENDED", bright[~blended])):
        rows.append({"split": name, "n": len(part), "errors": errors(part)})
    return rows


def evaluate(sky_dir, name, device):
    """The acceptance figures of one model on the sky (`summarise`), with its errors and their breakdown."""
    result = classify_simulation(sky_dir, weights=BUNDLED[name]() if name in BUNDLED else name, device=device)
    summary = summarise(result)
    classified = result[np.isfinite(result["p_star"])]
    summary["errors_r_lt_25"] = errors(classified[classified["mag_r"] < ACCEPTANCE_R_LIMIT])
    summary["breakdown_r_lt_25"] = breakdown(result)
    return summary


def report(summaries, reference, meta):
    """The text report: one line per model, then the breakdown side by side."""
    lines = [
        f"held-out sky: {meta['sky']}; machine: {meta['machine']}",
        f"{'model':24s} {'errors r<25':>11} {'x ' + reference:>24} {'star recall':>12} "
        f"{'galaxy recall':>14} {'ECE':>7} {'seconds':>8}",
    ]
    for name, summary in summaries.items():
        ratio = summary["errors_r_lt_25"] / max(summaries[reference]["errors_r_lt_25"], 1)
        lines.append(
            f"{name:24s} {summary['errors_r_lt_25']:11d} {ratio:24.2f} {summary['star_recall_r_lt_25']:12.4%} "
            f"{summary['galaxy_recall_r_lt_25']:14.4%} {summary['expected_calibration_error']:7.4f} "
            f"{summary['seconds']:8.1f}"
        )
    lines.append("")
    lines.append("errors at r < 25 by split (n sources): " + ", ".join(summaries))
    splits = [row["split"] for row in next(iter(summaries.values()))["breakdown_r_lt_25"]]
    for index, split in enumerate(splits):
        rows = [summary["breakdown_r_lt_25"][index] for summary in summaries.values()]
        counts = " ".join(f"{row['errors']:6d}" for row in rows)
        lines.append(f"  {split:32s} (n={rows[0]['n']:6d}) {counts}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sky-dir", help="held-out sky (default: simulate one under ./heldout_seedSEED)")
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--models", default=f"{DEFAULT_MODEL},{FAST_MODEL}", help="first: the reference")
    parser.add_argument("--device", default=None)
    parser.add_argument("--output", default=str(RESULTS_DIR / "compare_fast_model"), help="path stem")
    args = parser.parse_args(argv)
    sky_dir = Path(args.sky_dir or f"heldout_seed{args.seed}_tiles{args.tiles}_size{args.size}")
    simulated_sky(sky_dir, tiles=args.tiles, size=args.size, seed=args.seed, n_jobs=2)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    summaries = {name: evaluate(sky_dir, name, args.device) for name in names}
    meta = {
        "sky": f"simulate_tiles(DIR, {args.tiles}, size={args.size}, seed={args.seed}) (nominal CSST)",
        "machine": machine_description(),
        "reference": names[0],
    }
    text = report(summaries, names[0], meta)
    print(text)
    Path(f"{args.output}.txt").write_text(text + "\n")
    Path(f"{args.output}.json").write_text(json.dumps({"meta": meta, "models": summaries}, indent=1))


if __name__ == "__main__":
    main()
