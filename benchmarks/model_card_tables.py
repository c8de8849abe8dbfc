"""Print the Markdown tables of docs/model_card.md from the held-out evaluation results.

The results are the ``test_metrics.json`` files that
``benchmarks/train_bundled_model.py`` writes for each variant, and the
``cpu_current_skies.json`` files that ``benchmarks/evaluate_model.py --json``
wrote on the 2-core CPU; copies live in ``benchmarks/results/``:

* ``fused/``: the bundled model (stellar-SED variety in training);
* ``previous_fused/``, ``image/``, ``catalog/``: the previous bundled model and
  the paper's ablation, trained on the earlier set with black-body stars.

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
MODELS = {"fused": "bundled (stellar-SED variety)", "previous_fused": "previous (black-body stars)"}


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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    directory = Path(argv[0] if argv else Path(__file__).parent / "results")
    print("### Held-out acceptance figures (NVIDIA H100)\n")
    print(acceptance_table({"fused": _load(directory, "fused", "test_metrics.json")}, {"fused": "bundled"}))
    print("\n### Bundled and previous model on the same skies (2-core CPU)\n")
    current = {model: _load(directory, model, "cpu_current_skies.json") for model in MODELS}
    print(acceptance_table(current, MODELS))
    print("\n### The paper's ablation (previous training set, black-body stars; NVIDIA H100)\n")
    ablation = {model: _load(directory, model, "test_metrics.json") for model in ABLATION}
    print(acceptance_table(ablation, ABLATION))
    fused = _load(directory, "fused", "test_metrics.json")
    for sky, sky_label in SKIES.items():
        print(f"\n### Recall per r-magnitude bin, bundled model, {sky_label}\n")
        print(magnitude_table(fused[sky]))


if __name__ == "__main__":
    main()
