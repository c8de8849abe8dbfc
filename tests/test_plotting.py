"""Specifications of astro_stargal.evaluation: every function returns a labelled Figure and honours ax=."""

import json
import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

from astro_stargal import evaluation as plotting  # noqa: E402
from astro_stargal.flags import SourceFlag  # noqa: E402

SHAPE = (64, 64)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def classified():
    rng = np.random.default_rng(3)
    n = 40
    label = np.where(np.arange(n) % 3 == 0, "star", "galaxy")
    p_star = np.clip(np.where(label == "star", 0.8, 0.2) + rng.normal(0, 0.2, n), 0, 1).astype(np.float32)
    p_star[4] = np.nan
    flags = np.zeros(n, dtype=np.int32)
    flags[1] = SourceFlag.SATURATED | SourceFlag.PARTIAL_OVERLAP
    return Table(
        {
            "id": np.arange(1, n + 1),
            "x": rng.uniform(0, SHAPE[1] - 1, n),
            "y": rng.uniform(0, SHAPE[0] - 1, n),
            "label": label,
            "mag_r": rng.uniform(18, 25, n) * u.mag,
            "p_star": p_star,
            "sg_flags": flags,
        }
    )


@pytest.fixture
def images(classified):
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    scene = sum(
        np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 3.0) * 50
        for x, y in zip(classified["x"], classified["y"], strict=True)
    )
    return {
        band: (scene * scale + rng.normal(0, 1, SHAPE), None)
        for band, scale in (("g", 1.0), ("r", 1.2), ("i", 1.5))
    }


def _assert_labelled(ax):
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


METRIC_PLOTS = [
    lambda table, **kw: plotting.plot_purity_completeness(
        table, mag_column="mag_r", bins=[18, 20, 22, 24, 26], **kw
    ),
    plotting.plot_roc,
    plotting.plot_reliability,
    plotting.plot_p_star_histogram,
]


@pytest.mark.parametrize("plot", METRIC_PLOTS)
def test_metric_plot_returns_labelled_figure(classified, plot):
    figure = plot(classified)
    assert isinstance(figure, Figure)
    _assert_labelled(figure.axes[0])
    assert figure.axes[0].get_legend() is not None


@pytest.mark.parametrize("plot", METRIC_PLOTS)
def test_metric_plot_draws_on_given_axes(classified, plot):
    figure, (left, right) = plt.subplots(1, 2)
    assert plot(classified, ax=right) is figure
    assert right.lines or right.patches
    assert not left.lines and not left.patches


def test_metric_plots_accept_precomputed_tables(classified):
    from astro_stargal.evaluation import calibration, purity_completeness, roc_curve

    assert isinstance(plotting.plot_roc(roc_curve(classified)), Figure)
    assert isinstance(plotting.plot_reliability(calibration(classified, n_bins=5)), Figure)
    result = purity_completeness(classified, mag_column="mag_r")
    figure = plotting.plot_purity_completeness(result)
    assert figure.axes[0].get_xlabel() == "mag_r [mag]"


def test_purity_plot_survives_empty_and_single_class_bins(classified):
    figure = plotting.plot_purity_completeness(classified, mag_column="mag_r", bins=[10, 11, 18, 30])
    assert isinstance(figure, Figure)


def test_classified_field_marks_sources_with_colourbar(images, classified):
    figure = plotting.plot_classified_field(images, classified, truth_column="label")
    ax = figure.axes[0]
    _assert_labelled(ax)
    assert "RGB = i, r, g" in ax.get_title()
    assert ax.images and len(ax.collections) >= 3
    assert any("p_star" in other.get_ylabel() for other in figure.axes[1:])
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "unclassified (1)" in labels and any(label.startswith("wrong vs truth") for label in labels)


def test_classified_field_markers_are_outlines_and_the_legend_covers_no_source(images, classified):
    """Issue 15: filled star markers hid the sources they marked, and the legend covered sources."""
    figure = plotting.plot_classified_field(images, classified, truth_column="label")
    ax = figure.axes[0]
    # Markers that enclose an area (stars, circles, boxes) must not fill it; an "x" is only strokes.
    enclosing = [
        collection
        for collection in ax.collections
        if any(path.codes is not None and MplPath.CLOSEPOLY in path.codes for path in collection.get_paths())
    ]
    assert len(enclosing) >= 3
    for collection in enclosing:
        assert np.all(collection.get_facecolors()[:, 3] == 0), "a filled marker hides its source"
    figure.canvas.draw()
    legend_box = ax.get_legend().get_window_extent()
    assert not legend_box.overlaps(ax.get_window_extent())


def test_classified_field_single_band_on_given_axes(images, classified):
    figure, ax = plt.subplots()
    assert plotting.plot_classified_field({"r": images["r"]}, classified, ax=ax) is figure
    assert "band r" in ax.get_title()


def test_cutout_gallery_shows_groups_with_p_star_and_flags(images, classified):
    figure = plotting.plot_cutout_gallery(images, classified, n_per_group=3, truth_column="label")
    panels = [ax for ax in figure.axes[0].child_axes if ax.get_title().startswith("#")]
    assert len(panels) == 9
    titles = " ".join(ax.get_title() for ax in panels)
    assert "p_star=" in titles and "true " in titles
    assert {"most confident stars", "most uncertain", "most confident galaxies"} <= {
        ax.get_ylabel() for ax in panels
    }


def test_cutout_gallery_explicit_rows_on_given_axes(images, classified):
    figure, ax = plt.subplots()
    assert plotting.plot_cutout_gallery(images, classified, rows=[1, 2], ax=ax) is figure
    titles = [inset.get_title() for inset in ax.child_axes]
    assert len(titles) == 2
    assert "SATURATED" in titles[0] and "PARTIAL_OVERLAP" in titles[0]
    with pytest.raises(ValueError, match="rows must be"):
        plotting.plot_cutout_gallery(images, classified, rows=[1000])


def _history():
    epochs = np.arange(1, 6)
    return Table(
        {
            "epoch": epochs,
            "train_loss": 1 / epochs,
            "val_loss": 1.2 / epochs,
            "val_accuracy": 1 - 0.1 / epochs,
            "val_star_recall": 1 - 0.05 / epochs,
            "learning_rate": 1e-3 / epochs,
            "seconds": 10.0 * epochs,
        }
    )


def test_training_curves_from_table_csv_and_json(tmp_path):
    history = _history()
    history.write(tmp_path / "history.csv", format="ascii.csv")
    (tmp_path / "history.json").write_text(
        json.dumps([{name: float(row[name]) for name in history.colnames} for row in history])
    )
    for source in (history, tmp_path / "history.csv", str(tmp_path / "history.json")):
        figure = plotting.plot_training_curves(source)
        ax = figure.axes[0]
        _assert_labelled(ax)
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert {"train loss", "val loss", "val accuracy", "val star recall"} <= set(labels)
        assert not {"learning rate", "seconds"} & set(labels)


def test_training_curves_on_given_axes_and_missing_column(tmp_path):
    figure, ax = plt.subplots()
    assert plotting.plot_training_curves(_history(), ax=ax) is figure
    with pytest.raises(ValueError, match="val_accuracy"):
        plotting.plot_training_curves(_history()[["epoch", "train_loss", "val_loss"]])


def test_save_evaluation_figures_writes_pngs(classified, tmp_path):
    paths = plotting.save_evaluation_figures(classified, tmp_path, mag_column="mag_r")
    assert sorted(path.name for path in paths) == [
        "p_star_histogram.png",
        "purity_completeness.png",
        "reliability.png",
        "roc.png",
    ]
    assert all(path.stat().st_size > 0 for path in paths)


def test_missing_matplotlib_says_how_to_install(classified, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install astro_stargal\[plot\]"):
        plotting.plot_roc(classified)


@pytest.mark.parametrize("plot", [plotting.plot_cutout_gallery, plotting.plot_classified_field])
def test_sky_positions_on_images_without_wcs_are_a_clear_error(images, classified, plot):
    sky_table = classified.copy()
    sky_table["ra"], sky_table["dec"] = 150.0 + sky_table["x"] * 1e-5, 2.0 + sky_table["y"] * 1e-5
    with pytest.raises(ValueError, match="sky positions need an image with a celestial WCS"):
        plot(images, sky_table, position_columns=("ra", "dec"))
