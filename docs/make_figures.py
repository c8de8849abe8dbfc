"""Make the figures of the documentation with the package's own plotting functions.

Run from the repository root (takes well under a minute on a CPU)::

    python docs/make_figures.py

It classifies the bundled demo field with the bundled model and writes the
PNGs that the pages show into ``docs/_static/``. The PNGs are committed, so
building the documentation never runs the network.
"""

import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from astropy.table import Table

from astro_stargal.demo import run_demo
from astro_stargal.evaluation import (
    plot_cutout_gallery,
    plot_p_star_histogram,
    plot_reliability,
    plot_roc,
    plot_training_curves,
)
from astro_stargal.instrument import band_order

DOCS = Path(__file__).resolve().parent
STATIC = DOCS / "_static"
REPOSITORY = DOCS.parent
HISTORY = REPOSITORY / "benchmarks" / "results" / "fused" / "history.csv"
DEMO_FIELD = REPOSITORY / "astro_stargal" / "data" / "demo_field.fits"
DPI = 110


def _save(figure, name):
    path = STATIC / name
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    print(f"wrote {path.relative_to(REPOSITORY)}")


def main():
    STATIC.mkdir(exist_ok=True)
    images = {band: f"{DEMO_FIELD}[{band}]" for band in band_order()}
    with tempfile.TemporaryDirectory() as workdir:
        table_path, figure_path, summary = run_demo(workdir, device="cpu")
        print(summary)
        shutil.copyfile(figure_path, STATIC / "demo_field.png")
        print(f"wrote {(STATIC / 'demo_field.png').relative_to(REPOSITORY)}")
        classified = Table.read(table_path)

    _save(plot_cutout_gallery(images, classified, truth_column="label", n_per_group=6), "cutout_gallery.png")

    figure, (histogram_ax, reliability_ax, roc_ax) = plt.subplots(
        1, 3, figsize=(15.0, 4.6), layout="constrained"
    )
    plot_p_star_histogram(classified, truth_column="label", bins=25, ax=histogram_ax)
    plot_reliability(classified, truth_column="label", n_bins=6, ax=reliability_ax)
    plot_roc(classified, truth_column="label", ax=roc_ax)
    figure.suptitle("Bundled model on the demo field (147 simulated sources)")
    _save(figure, "demo_evaluation.png")

    _save(plot_training_curves(HISTORY), "training_curves.png")


if __name__ == "__main__":
    main()
