"""Regenerate the documentation's figures and result tables from the committed results and the demo.

Run from the repository root (under a minute on the 2-core CPU; the network
runs only on the 147 sources of the demo field)::

    python -m benchmarks.make_docs_figures [--only demo,training,comparison,psf,tables]

It writes:

``demo``
    ``docs/_static/demo_field.png``, ``cutout_gallery.png`` and
    ``demo_evaluation.png``: the bundled model on the bundled demo field
    (`astro_stargal.demo.run_demo`).
``training``
    ``docs/_static/training_curves.png`` and
    ``docs/_static/model_card/learning_curve.png``: the bundled model's
    training history (``benchmarks/results/fused/history.csv``); the second
    as `astro_stargal.training.train` draws it beside the weights.
``comparison``
    ``docs/comparison.md`` and ``docs/_static/comparison.png`` from the two
    tables ``compare_peers`` keeps in ``benchmarks/results/``
    (``compare_peers.ecsv`` and ``compare_peers_by_magnitude.ecsv``); without
    the second (results made before it was kept) the figure is left as it is.
``psf``
    ``docs/_static/psf_sweep.png``: star and galaxy recall at r < 24 against
    the r-band PSF FWHM of the sweep of ``benchmarks.realistic_sky``, one
    line per model whose ``realistic_sky_<label>.json`` is in
    ``benchmarks/results/``, each model's trained r-band FWHM range shaded.
``tables``
    ``benchmarks/results/model_card_tables.md``: the Markdown tables of
    ``docs/model_card.md`` (acceptance figures, BLENDED, the ablation, recall
    per magnitude bin, augmentation), from the JSON summaries of
    ``evaluate_model``, ``train_bundled_model`` and ``augmentation_ablation``.
    The model card is written by hand around these tables, so they are not
    pasted into it: each is looked for there, and one the card does not show
    exactly is reported.

The PNGs are committed, so building the documentation never runs the network.
"""

import argparse
import importlib.resources
import json
import shutil
import tempfile

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from astropy.table import Table

from astro_stargal.demo import DEMO_IMAGES, run_demo
from astro_stargal.evaluation import (
    plot_cutout_gallery,
    plot_p_star_histogram,
    plot_reliability,
    plot_roc,
    plot_training_curves,
)
from astro_stargal.instrument import band_order

from . import compare_peers
from .common import DOCS_DIR, REPOSITORY, RESULTS_DIR, STATIC_DIR, model_weights

PARTS = ("demo", "training", "comparison", "psf", "tables")

#: Resolution of the documentation's figures.
DPI = 110

#: The resolution at which `astro_stargal.training.train` saves ``learning_curve.png``.
TRAINING_RUN_DPI = 120

HISTORY = RESULTS_DIR / "fused" / "history.csv"
MODEL_CARD = DOCS_DIR / "model_card.md"
TABLES_PATH = RESULTS_DIR / "model_card_tables.md"

SKIES = {"test_sky": "nominal CSST (seed 99)", "test_sky_varied": "varied (seed 98)"}
MODELS = {"fused": "bundled", "sed_variety_fused": "previous bundled model"}
ABLATION = {
    "previous_fused": "fused (previous bundled model)",
    "image": "image only (ResNet-50)",
    "catalog": "catalog only (BiLSTM)",
}
#: Rows of the augmentation table: summary key, label, format.
AUGMENTATION_ROWS = (
    ("star_recall_r_lt_25", "star recall, r < 25", "percent"),
    ("galaxy_recall_r_lt_25", "galaxy recall, r < 25", "percent"),
    ("star_recall_all", "star recall, all", "percent"),
    ("galaxy_recall_all", "galaxy recall, all", "percent"),
    ("expected_calibration_error", "ECE", ".3f"),
    ("roc_auc", "ROC AUC", ".3f"),
)


def _save(figure, path, dpi=DPI):
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    print(f"wrote {path.relative_to(REPOSITORY)}")


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def demo_figures():
    """The bundled model on the demo field: the field, a cutout gallery and the evaluation panels."""
    with tempfile.TemporaryDirectory() as workdir:
        table_path, figure_path, summary = run_demo(workdir, device="cpu", weights=model_weights())
        print(summary)
        shutil.copyfile(figure_path, STATIC_DIR / "demo_field.png")
        print(f"wrote {(STATIC_DIR / 'demo_field.png').relative_to(REPOSITORY)}")
        classified = Table.read(table_path)

    demo_data = importlib.resources.files("astro_stargal.data") / DEMO_IMAGES
    with importlib.resources.as_file(demo_data) as demo_field:
        images = {band: f"{demo_field}[{band}]" for band in band_order()}
        gallery = plot_cutout_gallery(images, classified, truth_column="label", n_per_group=6)
    _save(gallery, STATIC_DIR / "cutout_gallery.png")

    figure, (histogram_ax, reliability_ax, roc_ax) = plt.subplots(
        1, 3, figsize=(15.0, 4.6), layout="constrained"
    )
    plot_p_star_histogram(classified, truth_column="label", bins=25, ax=histogram_ax)
    plot_reliability(classified, truth_column="label", n_bins=6, ax=reliability_ax)
    plot_roc(classified, truth_column="label", ax=roc_ax)
    figure.suptitle(f"Bundled model on the demo field ({len(classified)} simulated sources)")
    _save(figure, STATIC_DIR / "demo_evaluation.png")


def training_figures():
    """The bundled model's training history, for the training guide and for the model card."""
    _save(plot_training_curves(HISTORY), STATIC_DIR / "training_curves.png")
    _save(plot_training_curves(HISTORY), STATIC_DIR / "model_card" / "learning_curve.png", TRAINING_RUN_DPI)


def comparison_outputs():
    """The comparison page and figure, redrawn from the tables `compare_peers` keeps."""
    table = Table.read(compare_peers.TABLE_PATH)
    compare_peers.write_markdown(table, table.meta, compare_peers.MARKDOWN_PATH)
    print(f"wrote {compare_peers.MARKDOWN_PATH.relative_to(REPOSITORY)}")
    if not compare_peers.BY_MAGNITUDE_PATH.exists():
        print(
            f"kept {compare_peers.FIGURE_PATH.relative_to(REPOSITORY)}: "
            f"{compare_peers.BY_MAGNITUDE_PATH.relative_to(REPOSITORY)} is missing "
            "(run python -m benchmarks.compare_peers to make it)"
        )
        return
    compare_peers.plot_comparison(Table.read(compare_peers.BY_MAGNITUDE_PATH), compare_peers.FIGURE_PATH)
    print(f"wrote {compare_peers.FIGURE_PATH.relative_to(REPOSITORY)}")


# --------------------------------------------------------------------------
# Tables of the model card
# --------------------------------------------------------------------------


def psf_sweep_figure():
    """Recall against PSF FWHM for every model with realistic-sky results."""
    results = sorted(RESULTS_DIR.glob("realistic_sky_*.json"))
    results = [
        json.loads(path.read_text()) | {"label": path.stem[len("realistic_sky_") :]} for path in results
    ]
    results = [result for result in results if result.get("sweep")]
    if not results:
        print("no realistic-sky sweep in benchmarks/results/; psf_sweep.png left as it is")
        return
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True, layout="constrained")
    for index, result in enumerate(results):
        colour = f"C{index}"
        widths = sorted(result["sweep"], key=float)
        fwhm = [float(width) for width in widths]
        for ax, key in zip(axes, ("point_like_r_lt_24", "galaxy_r_lt_24"), strict=True):
            recall = [100 * result["sweep"][width][key]["recall"] for width in widths]
            ax.plot(fwhm, recall, "o-", color=colour, label=f"{result['label']} ({result['model']})")
        low, high = result["validity"]["psf_fwhm"]["r"]
        for ax in axes:
            ax.axvspan(low, high, color=colour, alpha=0.12, lw=0)
    for ax, title in zip(axes, ("stars and QSOs, r < 24", "galaxies, r < 24"), strict=True):
        ax.set_title(title)
        ax.set_xlabel('r-band PSF FWHM (")')
        ax.axhline(99, color="0.5", ls=":", lw=1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall (%)")
    axes[0].legend(fontsize="small", loc="lower left")
    _save(figure, STATIC_DIR / "psf_sweep.png")


def _percent(value):
    return "n/a" if value != value else f"{100 * value:.2f}%"


def _load(name, filename):
    return json.loads((RESULTS_DIR / name / filename).read_text())


def acceptance_table(results, labels):
    """One row per model and sky: ``results[model][sky]`` summaries, ``labels[model]`` names."""
    lines = [
        "| model | test sky | stars r<25 (n) | star recall r<25 | galaxies r<25 (n) | galaxy recall r<25 "
        "| galaxy recall z>1.5, r<25 | ECE | AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, label in labels.items():
        for sky, sky_label in SKIES.items():
            s = results[model][sky]
            lines.append(
                f"| {label} | {sky_label} | {s['n_star_r_lt_25']} | {_percent(s['star_recall_r_lt_25'])} | "
                f"{s['n_galaxy_r_lt_25']} | {_percent(s['galaxy_recall_r_lt_25'])} | "
                f"{_percent(s['galaxy_recall_z_gt_1.5_r_lt_25'])} | {s['expected_calibration_error']:.4f} | {s['roc_auc']:.4f} |"
            )
    return "\n".join(lines)


def blend_table(summaries):
    """Recalls without the sources flagged BLENDED, per sky."""
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


def magnitude_table(summary):
    """Recall per r-magnitude bin of one summary."""
    lines = ["| r mag | stars | star recall | galaxies | galaxy recall |", "|---|---|---|---|---|"]
    for row in summary["per_magnitude_bin"]:
        lines.append(
            f"| {row['r_min']}-{row['r_max']} | {row['n_star']} | {_percent(row['star_recall'])} | "
            f"{row['n_galaxy']} | {_percent(row['galaxy_recall'])} |"
        )
    return "\n".join(lines)


def augmentation_table(results):
    """The figures of the models trained with and without augmentation, side by side."""
    lines = ["| figure | augmented | plain |", "|---|---|---|"]
    for key, label, form in AUGMENTATION_ROWS:
        cells = [
            _percent(results[name][key]) if form == "percent" else format(results[name][key], form)
            for name in ("augmented", "plain")
        ]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def model_card_tables():
    """``(title, Markdown table)`` for every table of the model card that comes from the results."""
    current = {model: _load(model, "cpu_test_skies_48.json") for model in MODELS}
    ablation = {model: _load(model, "test_metrics.json") for model in ABLATION}
    augmentation = json.loads((RESULTS_DIR / "augmentation_ablation_cpu.json").read_text())
    tables = [
        ("Held-out acceptance figures, 48-tile test skies (2-core CPU)", acceptance_table(current, MODELS)),
        ("Without the sources flagged BLENDED (bundled model)", blend_table(current["fused"])),
        (
            "The paper's ablation (earlier training set and simulator, 16-tile skies; NVIDIA H100)",
            acceptance_table(ablation, ABLATION),
        ),
    ]
    for sky, sky_label in SKIES.items():
        tables.append(
            (
                f"Recall per r-magnitude bin, bundled model, {sky_label}",
                magnitude_table(current["fused"][sky]),
            )
        )
    tables.append(("What augmentation buys (2-core CPU)", augmentation_table(augmentation)))
    return tables


def write_model_card_tables():
    """Write the tables to `TABLES_PATH` and report those the model card does not show exactly."""
    tables = model_card_tables()
    text = "\n\n".join(f"### {title}\n\n{table}" for title, table in tables)
    TABLES_PATH.write_text(
        "<!-- Made by python -m benchmarks.make_docs_figures from benchmarks/results/; "
        "docs/model_card.md shows these tables. -->\n\n" + text + "\n"
    )
    print(f"wrote {TABLES_PATH.relative_to(REPOSITORY)}")
    card = MODEL_CARD.read_text()
    stale = [title for title, table in tables if table not in card]
    if stale:
        print(f"{MODEL_CARD.relative_to(REPOSITORY)} does not show these tables as the results give them:")
        for title in stale:
            print(f"  - {title}")
        print(f"  copy them from {TABLES_PATH.relative_to(REPOSITORY)}")
    else:
        print(f"{MODEL_CARD.relative_to(REPOSITORY)} shows all {len(tables)} tables as the results give them")
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to make, of {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    parts = args.only.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {list(PARTS)}")
    makers = {
        "demo": demo_figures,
        "training": training_figures,
        "comparison": comparison_outputs,
        "psf": psf_sweep_figure,
        "tables": write_model_card_tables,
    }
    for part in PARTS:
        if part in parts:
            makers[part]()


if __name__ == "__main__":
    main()
