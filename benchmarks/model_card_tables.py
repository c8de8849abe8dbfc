"""Print the Markdown tables of docs/model_card.md from the held-out evaluation results.

The results are the ``test_metrics.json`` files that
``benchmarks/train_bundled_model.py`` writes for each variant (fused,
image-only, catalog-only); copies from the run behind the bundled weights live
in ``benchmarks/results/``.

Usage::

    python benchmarks/model_card_tables.py [benchmarks/results]
"""

import json
import sys
from pathlib import Path

SKIES = {"test_sky": "nominal CSST (seed 99)", "test_sky_varied": "varied PSF/sky/profiles (seed 98)"}
VARIANTS = {"fused": "fused (bundled)", "image": "image only (ResNet-50)", "catalog": "catalog only (BiLSTM)"}


def _percent(value):
    return "n/a" if value != value else f"{100 * value:.2f}%"


def acceptance_table(results):
    lines = [
        "| model | test sky | stars r<25 (n) | star recall r<25 | galaxies r<25 (n) | galaxy recall r<25 | galaxy recall z>1.5, r<25 | ECE | AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, label in VARIANTS.items():
        for sky, sky_label in SKIES.items():
            s = results[variant][sky]
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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    directory = Path(argv[0] if argv else Path(__file__).parent / "results")
    results = {
        variant: json.loads((directory / variant / "test_metrics.json").read_text()) for variant in VARIANTS
    }
    print("### Held-out acceptance figures\n")
    print(acceptance_table(results))
    for sky, sky_label in SKIES.items():
        print(f"\n### Recall per r-magnitude bin, fused model, {sky_label}\n")
        print(magnitude_table(results["fused"][sky]))


if __name__ == "__main__":
    main()
