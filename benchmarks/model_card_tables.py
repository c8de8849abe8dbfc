"""Print the Markdown tables of docs/model_card.md from the held-out evaluation results.

The results are JSON summaries written by ``benchmarks/evaluate_model.py --json``
(one per test sky, gathered into one file per model) and the
``test_metrics.json`` files that ``benchmarks/train_bundled_model.py`` writes;
copies live in ``benchmarks/results/``:

* ``fused/``: the bundled model; ``cpu_test_skies_48.json`` holds its figures
  on the 48-tile test skies (2-core CPU);
* ``sed_variety_fused/``: the model bundled before it, on the same skies;
* ``previous_fused/``, ``image/``, ``catalog/``: an older model and the paper's
  ablation, trained on an earlier set with black-body stars and tested on
  16-tile skies made by an earlier simulator version (H100).

Usage::

    python benchmarks/model_card_tables.py [benchmarks/results]
"""

import json
import sys
from pathlib import Path

SKIES = {"test_sky": "nominal CSST (seed 99)", "test_sky_varied": "varied (seed 98)"}
ABLATION = {
    "previous_fused": "fused (previous bundled model)",
    "image": "image only (ResNet-50)",
    "catalog": "catalog only (BiLSTM)",
}
MODELS = {"fused": "bundled", "sed_variety_fused": "previous bundled model"}


def _percent(value):
    return "n/a" if value != value else f"{100 * value:.2f}%"


HEADER = (
    "| model | test sky | stars r<25 (n) | star recall r<25 | galaxies r<25 (n) | galaxy recall r<25 "
    "| galaxy recall z>1.5, r<25 | ECE | AUC |\n|---|---|---|---|---|---|---|---|---|"
)


def acceptance_table(results, labels):
    """One row per model and sky: ``results[model][sky]`` summaries, ``labels[model]`` names."""
    lines = [HEADER]
    for model, label in labels.items():
        for sky, sky_label in SKIES.items():
            s = results[model][sky]
            lines.append(
                f"| {label} | {sky_label} | {s['n_star_r_lt_25']} | {_percent(s['star_recall_r_lt_25'])} | "
                f"{s['n_galaxy_r_lt_25']} | {_percent(s['galaxy_recall_r_lt_25'])} | "
                f"{_percent(s['galaxy_recall_z_gt_1.5_r_lt_25'])} | {s['expected_calibration_error']:.4f} | {s['roc_auc']:.4f} |"
            )
    return "\n".join(lines)


def magnitude_table(summary):
    lines = ["| r mag | stars | star recall | galaxies | galaxy recall |", "|---|---|---|---|---|"]
    for row in summary["per_magnitude_bin"]:
        lines.append(
            f"| {row['r_min']}-{row['r_max']} | {row['n_star']} | {_percent(row['star_recall'])} | "
            f"{row['n_galaxy']} | {_percent(row['galaxy_recall'])} |"
        )
    return "\n".join(lines)


def _load(directory, name, filename):
    return json.loads((directory / name / filename).read_text())


def blend_table(summaries):
    lines = [
        "| test sky | sources r<25 flagged BLENDED | star recall r<25, unflagged (n) | galaxy recall r<25, unflagged (n) |",
        "|---|---|---|---|",
    ]
    for sky, sky_label in SKIES.items():
        s = summaries[sky]
        lines.append(
            f"| {sky_label} | {s['blended_fraction_r_lt_25']:.1%} | "
            f"{_percent(s['star_recall_unblended_r_lt_25'])} ({s['n_star_unblended_r_lt_25']}) | "
            f"{_percent(s['galaxy_recall_unblended_r_lt_25'])} ({s['n_galaxy_unblended_r_lt_25']}) |"
        )
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    directory = Path(argv[0] if argv else Path(__file__).parent / "results")
    current = {model: _load(directory, model, "cpu_test_skies_48.json") for model in MODELS}
    print("### Held-out acceptance figures, 48-tile test skies (2-core CPU)\n")
    print(acceptance_table(current, MODELS))
    print("\n### Without the sources flagged BLENDED (bundled model)\n")
    print(blend_table(current["fused"]))
    print("\n### The paper's ablation (earlier training set and simulator, 16-tile skies; NVIDIA H100)\n")
    ablation = {model: _load(directory, model, "test_metrics.json") for model in ABLATION}
    print(acceptance_table(ablation, ABLATION))
    for sky, sky_label in SKIES.items():
        print(f"\n### Recall per r-magnitude bin, bundled model, {sky_label}\n")
        print(magnitude_table(current["fused"][sky]))


if __name__ == "__main__":
    main()
