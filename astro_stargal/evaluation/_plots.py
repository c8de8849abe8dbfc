"""Figures for checking the classifier: cutouts, the classified field, and the evaluation metrics.

matplotlib is optional (``pip install astro_stargal[plot]``); it is imported
only when a function here is called. Every function returns the
`~matplotlib.figure.Figure` and draws on ``ax`` (an `~matplotlib.axes.Axes`)
when one is given, so the figures compose into larger layouts.

Stars are drawn in orange and galaxies in blue throughout; ``p_star`` colour
maps run from blue (galaxy) to red (star).
"""

import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..flags import describe_flags
from ..io import positions_from_table, read_images
from ..pipeline import extract_stamps
from ._metrics import (
    calibration,
    expected_calibration_error,
    p_star_values,
    purity_completeness,
    roc_curve,
    truth_is_star,
    validate_table,
)

__all__ = [
    "plot_classified_field",
    "plot_cutout_gallery",
    "plot_p_star_histogram",
    "plot_purity_completeness",
    "plot_reliability",
    "plot_roc",
    "plot_training_curves",
    "save_evaluation_figures",
]

STAR_COLOUR = "tab:orange"
GALAXY_COLOUR = "tab:blue"
#: Colour map of ``p_star``: blue for galaxies, yellow for undecided, red for stars.
P_STAR_CMAP = "RdYlBu_r"
#: Bands shown as red, green and blue in colour composites, when present.
RGB_BANDS = ("i", "r", "g")
#: RGB value of pixels off the image or masked in colour composites.
OFF_IMAGE_GREY = 70
#: Asinh stretch (in sky-noise units) and softening of the colour composites.
COMPOSITE_STRETCH = 10.0
COMPOSITE_Q = 8.0
#: Columns a training history must have.
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy")


def import_pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        msg = "astro_stargal's plots need matplotlib: pip install astro_stargal[plot]"
        raise ImportError(msg) from error
    return plt


def _figure_and_axes(ax, figsize):
    if ax is None:
        figure, ax = import_pyplot().subplots(figsize=figsize, layout="constrained")
        return figure, ax
    import_pyplot()
    return ax.figure, ax


def _is_result(table, columns):
    return isinstance(table, Table) and set(columns) <= set(table.colnames)


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def plot_purity_completeness(
    table,
    *,
    truth_column="label",
    mag_column="mag_r",
    bins=None,
    threshold=0.5,
    star_label="star",
    ax=None,
):
    """Purity and completeness of stars and galaxies against magnitude.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A classified table with truth, or the output of
        `~astro_stargal.evaluation.purity_completeness` (with ``mag_column``).
    truth_column, mag_column, bins, threshold, star_label : optional
        See `~astro_stargal.evaluation.purity_completeness`.
    ax : `~matplotlib.axes.Axes`, optional
        Where to draw; a new figure by default.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> figure = plot_purity_completeness(classified, mag_column="mag_r")  # doctest: +SKIP
    """
    if _is_result(table, ("star_purity", "mag_min")):
        result = table
        mag_column = result.meta.get("mag_column", mag_column)
        threshold = result.meta.get("threshold", threshold)
    else:
        result = purity_completeness(
            table,
            truth_column=truth_column,
            mag_column=mag_column,
            bins=bins,
            threshold=threshold,
            star_label=star_label,
        )
    figure, ax = _figure_and_axes(ax, (7.0, 4.5))
    low = np.asarray(getattr(result["mag_min"], "value", result["mag_min"]), dtype=float)
    high = np.asarray(getattr(result["mag_max"], "value", result["mag_max"]), dtype=float)
    in_bins = np.isfinite(low) & np.isfinite(high)
    centre = (low[in_bins] + high[in_bins]) / 2.0
    width = float(np.min(high[in_bins] - low[in_bins])) if in_bins.any() else 1.0
    unit = getattr(result["mag_min"], "unit", None) or "mag"

    counts = ax.twinx()
    counts.bar(centre, result["n_sources"][in_bins], width=width * 0.9, color="0.88", zorder=0)
    # Keep the bars in the lower part of the panel, under the rates.
    counts.set_ylim(0, max(1, int(np.max(result["n_sources"][in_bins], initial=0))) * 2.5)
    counts.set_ylabel("sources per bin", color="0.45")
    counts.tick_params(axis="y", colors="0.45")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)

    styles = (
        ("star", "purity", STAR_COLOUR, "-", "o", -0.06),
        ("star", "completeness", STAR_COLOUR, "--", "s", -0.02),
        ("galaxy", "purity", GALAXY_COLOUR, "-", "o", 0.02),
        ("galaxy", "completeness", GALAXY_COLOUR, "--", "s", 0.06),
    )
    for name, rate, colour, linestyle, marker, shift in styles:
        column = f"{name}_{rate}"
        values = np.asarray(result[column])[in_bins]
        errors = np.abs(
            np.array(
                [
                    values - np.asarray(result[f"{column}_lower"])[in_bins],
                    np.asarray(result[f"{column}_upper"])[in_bins] - values,
                ]
            )
        )
        ax.errorbar(
            centre + shift * width,
            values,
            yerr=np.nan_to_num(errors),
            color=colour,
            linestyle=linestyle,
            marker=marker,
            markersize=4,
            capsize=2,
            label=f"{name} {rate}",
        )
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel(f"{mag_column} [{unit}]")
    ax.set_ylabel("fraction (68% Wilson intervals)")
    ax.set_title(f"Purity and completeness, stars at p_star ≥ {threshold:g}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize="small")
    return figure


def plot_roc(table, *, truth_column="label", star_label="star", log_fpr=False, ax=None):
    """ROC curve of ``p_star`` for selecting stars, with its area.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A classified table with truth, or the output of `~astro_stargal.evaluation.roc_curve`.
    truth_column, star_label : str, optional
        See `~astro_stargal.evaluation.purity_completeness`.
    log_fpr : bool, optional
        Logarithmic false-positive axis, to see the high-purity corner.
    ax : `~matplotlib.axes.Axes`, optional
        Where to draw; a new figure by default.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> figure = plot_roc(classified)  # doctest: +SKIP
    """
    roc = (
        table
        if _is_result(table, ("tpr", "fpr"))
        else roc_curve(table, truth_column=truth_column, star_label=star_label)
    )
    tpr, fpr = np.asarray(roc["tpr"]), np.asarray(roc["fpr"])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0)) if len(roc) > 1 else float("nan")
    figure, ax = _figure_and_axes(ax, (5.0, 5.0))
    ax.plot(fpr, tpr, color=STAR_COLOUR, drawstyle="default", label=f"p_star (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", label="random guess")
    if log_fpr:
        ax.set_xscale("log")
        positive = fpr[fpr > 0]
        ax.set_xlim(positive.min() if positive.size else 1e-3, 1.0)
    else:
        ax.set_xlim(-0.01, 1.0)
        ax.set_aspect("equal")
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false positive rate (fraction of galaxies selected)")
    ax.set_ylabel("true positive rate (star completeness)")
    ax.set_title("ROC curve for selecting stars")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def plot_reliability(table, *, n_bins=15, truth_column="label", star_label="star", ax=None):
    """Reliability diagram: observed star fraction against predicted ``p_star``.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A classified table with truth, or the output of `~astro_stargal.evaluation.calibration`.
    n_bins, truth_column, star_label : optional
        See `~astro_stargal.evaluation.calibration`.
    ax : `~matplotlib.axes.Axes`, optional
        Where to draw; a new figure by default.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`
        The points with Wilson error bars, the diagonal of perfect
        calibration, and the number of sources per bin (grey bars, log scale,
        right axis).

    Examples
    --------
    >>> figure = plot_reliability(classified)  # doctest: +SKIP
    """
    if _is_result(table, ("mean_p_star", "star_fraction", "count")):
        reliability = table
    else:
        reliability = calibration(table, n_bins=n_bins, truth_column=truth_column, star_label=star_label)
    ece = expected_calibration_error(reliability)
    figure, ax = _figure_and_axes(ax, (5.5, 5.0))
    low, high = np.asarray(reliability["p_min"]), np.asarray(reliability["p_max"])
    count = np.asarray(reliability["count"])

    counts = ax.twinx()
    counts.bar((low + high) / 2, np.where(count > 0, count, np.nan), width=(high - low) * 0.9, color="0.88")
    counts.set_yscale("log")
    counts.set_ylim(0.8, max(1, count.max()) * 20)
    counts.set_ylabel("sources per bin (log)", color="0.45")
    counts.tick_params(axis="y", colors="0.45")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)

    fraction = np.asarray(reliability["star_fraction"])
    errors = np.abs(
        np.array(
            [
                fraction - np.asarray(reliability["star_fraction_lower"]),
                np.asarray(reliability["star_fraction_upper"]) - fraction,
            ]
        )
    )
    ax.plot([0, 1], [0, 1], color="0.4", linestyle=":", label="perfect calibration")
    ax.errorbar(
        reliability["mean_p_star"],
        fraction,
        yerr=np.nan_to_num(errors),
        color=STAR_COLOUR,
        marker="o",
        markersize=4,
        capsize=2,
        label=f"classifier (ECE = {ece:.3f})",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mean predicted p_star in bin")
    ax.set_ylabel("observed fraction of stars")
    ax.set_title("Reliability of p_star")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return figure


def plot_p_star_histogram(table, *, truth_column="label", star_label="star", bins=50, threshold=0.5, ax=None):
    """Histogram of ``p_star`` for each true class (log counts).

    Parameters
    ----------
    table : `~astropy.table.Table`
        A classified table; without ``truth_column`` one histogram of all sources is drawn.
    truth_column, star_label : str, optional
        See `~astro_stargal.evaluation.purity_completeness`.
    bins : int, optional
        Number of equal-width bins over [0, 1].
    threshold : float, optional
        Drawn as a vertical line.
    ax : `~matplotlib.axes.Axes`, optional
        Where to draw; a new figure by default.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> figure = plot_p_star_histogram(classified)  # doctest: +SKIP
    """
    validate_table(table, ["p_star"])
    p_star = p_star_values(table)
    classified = np.isfinite(p_star)
    edges = np.linspace(0.0, 1.0, bins + 1)
    figure, ax = _figure_and_axes(ax, (6.0, 4.0))
    if truth_column is not None and truth_column in table.colnames:
        is_star, known = truth_is_star(table, truth_column, star_label)
        for name, rows, colour in (
            ("true stars", is_star, STAR_COLOUR),
            ("true galaxies", ~is_star, GALAXY_COLOUR),
        ):
            values = p_star[rows & known & classified]
            ax.hist(
                values,
                bins=edges,
                histtype="step",
                linewidth=1.8,
                color=colour,
                label=f"{name} ({values.size})",
            )
    else:
        ax.hist(
            p_star[classified], bins=edges, histtype="step", linewidth=1.8, color="0.2", label="all sources"
        )
    ax.axvline(threshold, color="0.4", linestyle=":", label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("p_star (calibrated star probability)")
    ax.set_ylabel("number of sources per bin")
    n_unclassified = int((~classified).sum())
    ax.set_title(f"p_star by true class ({n_unclassified} unclassified not shown)")
    ax.legend(loc="upper center")
    return figure


def _read_history(history):
    if isinstance(history, Table):
        return history
    if isinstance(history, dict):
        return Table(history)
    if isinstance(history, list):
        return Table(rows=history)
    path = Path(history)
    if not path.exists():
        msg = f"training history file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    if path.suffix.lower() == ".json":
        content = json.loads(path.read_text())
        return _read_history(content.get("history", content) if isinstance(content, dict) else content)
    return Table.read(path, format="ascii.csv" if path.suffix.lower() == ".csv" else None)


def plot_training_curves(history, *, ax=None):
    """Training and validation loss, and validation accuracy, per epoch.

    Parameters
    ----------
    history : `~astropy.table.Table`, dict, list of dict, or path
        Columns ``epoch``, ``train_loss``, ``val_loss`` and ``val_accuracy``;
        further ``*_loss`` columns join the loss curves and further
        ``accuracy``/``auc``/``purity``/``completeness``/``recall``/``precision`` columns the
        accuracy axis. A path may be CSV, ECSV, or JSON (a list of per-epoch
        records, a dict of columns, or either under the key ``"history"``).
    ax : `~matplotlib.axes.Axes`, optional
        Where to draw the losses; the accuracies go on a twin axis.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Raises
    ------
    ValueError
        If a required column is missing.

    Examples
    --------
    >>> history = {"epoch": [1, 2], "train_loss": [0.5, 0.3], "val_loss": [0.4, 0.35],
    ...            "val_accuracy": [0.9, 0.93]}
    >>> figure = plot_training_curves(history)  # doctest: +SKIP
    """
    history = _read_history(history)
    missing = [name for name in HISTORY_COLUMNS if name not in history.colnames]
    if missing:
        msg = f"training history lacks column(s) {missing}; its columns are {history.colnames}"
        raise ValueError(msg)
    epoch = np.asarray(history["epoch"], dtype=float)
    figure, ax = _figure_and_axes(ax, (7.0, 4.5))
    score_words = ("accuracy", "auc", "purity", "completeness", "recall", "precision")
    losses = [name for name in history.colnames if name.endswith("loss")]
    scores = [name for name in history.colnames if any(word in name for word in score_words)]
    for index, name in enumerate(losses):
        colour = {"train_loss": "tab:blue", "val_loss": "tab:orange"}.get(name, f"C{index + 2}")
        ax.plot(epoch, history[name], color=colour, marker="o", markersize=3, label=name.replace("_", " "))
    best = int(np.nanargmin(np.asarray(history["val_loss"], dtype=float)))
    ax.axvline(epoch[best], color="0.5", linestyle=":", label=f"lowest val loss (epoch {epoch[best]:g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (binary cross-entropy)")
    ax.grid(alpha=0.3)

    right = ax.twinx()
    for index, name in enumerate(scores):
        colour = "tab:green" if name == "val_accuracy" else f"C{index + 5}"
        right.plot(epoch, history[name], color=colour, linestyle="--", label=name.replace("_", " "))
    right.set_ylabel("validation score (fraction)")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = right.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, loc="center right", fontsize="small")
    ax.set_title("Training history")
    return figure


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def _display_images(images):
    """Read images for display: any band names, no zero point needed."""
    names = tuple(images)
    return read_images(images, names, zeropoints=dict.fromkeys(names, 0.0))


def _composite_bands(band_images, bands):
    """The bands drawn as red, green, blue (or one band when a colour composite is impossible)."""
    present = [band for band in bands if band in band_images]
    shapes = {band_images[band].shape for band in present}
    if len(present) == 3 and len(shapes) == 1:
        return present
    if present:
        return present[:1]
    return [next(iter(band_images))]


def _lupton(channels, *, stretch, q=8.0, minimum=0.0):
    """Colour (or grey) image from noise-normalised channels with the Lupton et al. asinh stretch.

    Pixels that are NaN in every channel (off the image, masked) are drawn dark grey.
    """
    from astropy.visualization import make_lupton_rgb

    channels = [np.asarray(channel, dtype=float) for channel in channels]
    invalid = np.all([~np.isfinite(channel) for channel in channels], axis=0)
    channels = [np.nan_to_num(channel, nan=0.0, posinf=0.0, neginf=0.0) for channel in channels]
    if len(channels) == 1:
        channels = channels * 3
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides by zero on blank pixels
        rgb = make_lupton_rgb(*channels, minimum=minimum, stretch=stretch, Q=q)
    rgb[invalid] = OFF_IMAGE_GREY
    return rgb


def plot_classified_field(
    images,
    table,
    *,
    bands=RGB_BANDS,
    threshold=0.5,
    truth_column=None,
    star_label="star",
    position_columns=None,
    ax=None,
):
    """A field image with its sources marked and coloured by ``p_star``.

    Parameters
    ----------
    images : dict
        Band -> image, in any form `~astro_stargal.classify_sources` accepts.
    table : `~astropy.table.Table`
        The classified table (``p_star`` and positions).
    bands : sequence of 3 str, optional
        Bands shown as red, green and blue; when they are not all present (or
        not on one pixel grid) the first present band, or else the first
        image, is shown in grey.
    threshold : float, optional
        Sources with ``p_star >= threshold`` are drawn as stars (``*``), others
        as circles; both are outlines, so that the sources stay visible.
    truth_column : str, optional
        With a truth column, misclassified sources are boxed in white.
    star_label : str, optional
        See `~astro_stargal.evaluation.purity_completeness`.
    position_columns : str or tuple of 2 str, optional
        See `~astro_stargal.classify_sources`.
    ax : `~matplotlib.axes.Axes`, optional
        Where to draw; a new figure by default.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> figure = plot_classified_field({"g": "g.fits", "r": "r.fits", "i": "i.fits"}, classified)  # doctest: +SKIP
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    validate_table(table, ["p_star", truth_column])
    band_images = _display_images(images)
    shown = _composite_bands(band_images, bands)
    reference = band_images[shown[0]]
    positions = positions_from_table(table, position_columns=position_columns)
    x, y = positions.pixel_positions(reference.wcs)
    p_star = p_star_values(table)

    figure, ax = _figure_and_axes(ax, (7.5, 6.5))
    channels = [band_images[band].data / band_images[band].noise for band in shown]
    ax.imshow(
        _lupton(channels, stretch=COMPOSITE_STRETCH, q=COMPOSITE_Q), origin="lower", interpolation="nearest"
    )
    classified = np.isfinite(p_star) & np.isfinite(x)
    is_star_call = classified & (p_star >= threshold)
    colour_map = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=P_STAR_CMAP)
    size = np.clip(60000.0 / max(reference.shape), 20, 120)
    # Outlines only: a filled marker would hide the source it marks.
    for rows, marker, scale in ((is_star_call, "*", 2.2), (classified & ~is_star_call, "o", 1.0)):
        ax.scatter(
            x[rows],
            y[rows],
            marker=marker,
            s=size * scale,
            facecolors="none",
            edgecolors=colour_map.to_rgba(p_star[rows]),
            linewidths=1.3,
        )
    unclassified = ~np.isfinite(p_star) & np.isfinite(x)
    ax.scatter(x[unclassified], y[unclassified], marker="x", color="0.7", s=size * 0.6)
    handles = [
        Line2D(
            [],
            [],
            marker="*",
            linestyle="",
            markerfacecolor="none",
            color="tab:red",
            markersize=11,
            label="called star",
        ),
        Line2D(
            [], [], marker="o", linestyle="", markerfacecolor="none", color="tab:blue", label="called galaxy"
        ),
        Line2D(
            [], [], marker="x", linestyle="", color="0.6", label=f"unclassified ({int(unclassified.sum())})"
        ),
    ]
    if truth_column is not None:
        is_star, known = truth_is_star(table, truth_column, star_label)
        wrong = classified & known & (is_star != is_star_call)
        ax.scatter(
            x[wrong],
            y[wrong],
            marker="s",
            s=size * 3.0,
            facecolors="none",
            edgecolors="white",
            linewidths=1.2,
        )
        handles.append(
            Line2D(
                [],
                [],
                marker="s",
                linestyle="",
                markerfacecolor="none",
                markeredgecolor="black",
                markersize=10,
                label=f"wrong vs truth ({int(wrong.sum())})",
            )
        )
    colourbar = figure.colorbar(colour_map, ax=ax, fraction=0.046, pad=0.02)
    colourbar.set_label("p_star (0 = galaxy, 1 = star)")
    ny, nx = reference.shape
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    composite = f"RGB = {', '.join(shown)}" if len(shown) == 3 else f"band {shown[0]}"
    ax.set_title(f"{int(classified.sum())} classified sources ({composite})")
    # Below the image, not on it, where it would cover sources.
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncols=len(handles),
        fontsize="small",
        frameon=False,
    )
    return figure


def _gallery_rows(p_star, rows, n_per_group):
    if rows is not None:
        return [("selected", np.asarray(rows, dtype=int))]
    classified = np.flatnonzero(np.isfinite(p_star))
    order = classified[np.argsort(p_star[classified], kind="stable")]
    uncertain = classified[np.argsort(np.abs(p_star[classified] - 0.5), kind="stable")]
    return [
        ("most confident stars", order[::-1][:n_per_group]),
        ("most uncertain", uncertain[:n_per_group]),
        ("most confident galaxies", order[:n_per_group]),
    ]


def plot_cutout_gallery(
    images,
    table,
    *,
    rows=None,
    n_per_group=5,
    bands=RGB_BANDS,
    stamp_size=32,
    truth_column=None,
    star_label="star",
    position_columns=None,
    ax=None,
):
    """Colour cutouts of selected sources with their ``p_star`` and flags.

    By default three rows are shown: the most confident stars (highest
    ``p_star``), the most uncertain sources (``p_star`` nearest 0.5) and the
    most confident galaxies.

    Parameters
    ----------
    images : dict
        Band -> image, in any form `~astro_stargal.classify_sources` accepts.
    table : `~astropy.table.Table`
        The classified table (``p_star``, ``sg_flags`` if present, and positions).
    rows : sequence of int, optional
        Show these rows instead of the default selection.
    n_per_group : int, optional
        Cutouts per selection row.
    bands : sequence of 3 str, optional
        Bands shown as red, green and blue (grey with fewer); see `plot_classified_field`.
    stamp_size : int, optional
        Cutout side in pixels.
    truth_column : str, optional
        Adds the true class to each title.
    star_label : str, optional
        See `~astro_stargal.evaluation.purity_completeness`.
    position_columns : str or tuple of 2 str, optional
        See `~astro_stargal.classify_sources`.
    ax : `~matplotlib.axes.Axes`, optional
        The area to fill with the gallery (its own frame is hidden).

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> figure = plot_cutout_gallery({"g": "g.fits", "r": "r.fits", "i": "i.fits"}, classified)  # doctest: +SKIP
    """
    validate_table(table, ["p_star", truth_column])
    p_star = p_star_values(table)
    groups = [(name, group) for name, group in _gallery_rows(p_star, rows, n_per_group) if len(group)]
    if not groups:
        msg = "no classified source to show (every p_star is NaN)"
        raise ValueError(msg)
    chosen = np.concatenate([group for _, group in groups])
    if chosen.min() < 0 or chosen.max() >= len(table):
        msg = f"rows must be between 0 and {len(table) - 1}, got {rows!r}"
        raise ValueError(msg)

    band_images = _display_images(images)
    shown = _composite_bands(band_images, bands)
    positions = positions_from_table(table, position_columns=position_columns)[chosen]
    stamps = []
    for band in shown:
        image = band_images[band]
        x, y = positions.pixel_positions(image.wcs)
        cut, _ = extract_stamps(image.data, x, y, stamp_size, mask=image.mask)
        stamps.append(cut / image.noise)
    stamps = np.stack(stamps, axis=1)

    flags = np.asarray(table["sg_flags"]) if "sg_flags" in table.colnames else np.zeros(len(table), int)
    if truth_column is not None:
        is_star, known = truth_is_star(table, truth_column, star_label)
    identifiers = np.asarray(table["id"]) if "id" in table.colnames else np.arange(len(table))

    n_columns = max(len(group) for _, group in groups)
    figure, ax = _figure_and_axes(ax, (1.9 * n_columns + 0.6, 2.35 * len(groups)))
    ax.set_axis_off()
    ax.set_title(f"Cutouts ({stamp_size} px; {'RGB = ' + ', '.join(shown) if len(shown) == 3 else shown[0]})")
    cell_width, cell_height = 1.0 / n_columns, 1.0 / len(groups)
    index = 0
    for group_number, (name, group) in enumerate(groups):
        for column, row in enumerate(group):
            panel = ax.inset_axes(
                [
                    column * cell_width + 0.04 * cell_width,
                    1.0 - (group_number + 1) * cell_height,
                    0.92 * cell_width,
                    0.72 * cell_height,
                ]
            )
            channels = stamps[index]
            # Bright sources get a softer stretch so their cores are not burnt out.
            peak = float(np.nanmax(channels.mean(axis=0))) if np.isfinite(channels).any() else 0.0
            panel.imshow(
                _lupton(list(channels), stretch=max(COMPOSITE_STRETCH, 0.05 * peak), q=COMPOSITE_Q),
                origin="lower",
                interpolation="nearest",
            )
            panel.set_xticks([])
            panel.set_yticks([])
            flag_names = describe_flags(flags[row])
            title = f"#{identifiers[row]}  p_star={p_star[row]:.3f}"
            if truth_column is not None and known[row]:
                title += f"\ntrue {'star' if is_star[row] else 'galaxy'}"
            title += "\n" + (",".join(flag_names) if flag_names else "no flags")
            panel.set_title(title, fontsize=7, pad=2)
            if column == 0:
                panel.set_ylabel(name, fontsize=8)
            index += 1
    return figure


# --------------------------------------------------------------------------
# All evaluation figures at once
# --------------------------------------------------------------------------


def save_evaluation_figures(
    table, output_dir, *, truth_column="label", mag_column=None, results=None, star_label="star"
):
    """Write the evaluation figures of a classified table with truth as PNG files.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Holds ``p_star`` and the truth.
    output_dir : str or `~pathlib.Path`
        Created if needed.
    truth_column, mag_column, star_label : optional
        See `~astro_stargal.evaluation.purity_completeness`.
    results : dict, optional
        The output of `~astro_stargal.evaluation.evaluate`, to reuse its tables.

    Returns
    -------
    paths : list of `~pathlib.Path`
        ``roc.png``, ``reliability.png``, ``p_star_histogram.png`` and, with
        ``mag_column``, ``purity_completeness.png``.

    Examples
    --------
    >>> save_evaluation_figures(classified, "figures", mag_column="mag_r")  # doctest: +SKIP
    """
    plt = import_pyplot()
    results = results or {}
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    common = {"truth_column": truth_column, "star_label": star_label}
    figures = {
        "roc": plot_roc(results.get("roc", table), **common),
        "reliability": plot_reliability(results.get("calibration", table), **common),
        "p_star_histogram": plot_p_star_histogram(table, **common),
    }
    if mag_column is not None:
        figures["purity_completeness"] = plot_purity_completeness(
            results.get("purity_completeness", table), mag_column=mag_column, **common
        )
    paths = []
    for name, figure in figures.items():
        path = output_dir / f"{name}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths
