"""How well the classifier does against known truth: purity, completeness, ROC, calibration.

Every function takes a table that holds the classifier's ``p_star`` column and
a truth column, and returns an astropy `~astropy.table.QTable` whose columns
carry descriptions (and units where they have one).

Truth labels may be strings or numbers:

- strings: a row is a star where the label equals ``star_label`` (``'star'``
  by default, compared case-insensitively, surrounding blanks ignored); any
  other string counts as a galaxy;
- booleans or integers: True/1 is a star, False/0 a galaxy (other integers are
  an error).

Rows whose truth is masked are left out, with a warning. Rows whose ``p_star``
is NaN or masked (sources the classifier could not classify) are counted as
``n_unclassified`` and left out of every rate. A rate with nothing to count
(an empty magnitude bin, a bin without stars) is NaN, never an error.

Uncertainties are Wilson score intervals for a binomial proportion at one
standard deviation (68.27 percent).
"""

import datetime
import itertools
import warnings

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from .._columns import PROVENANCE_KEYS
from .._version import __version__
from ..exceptions import StarGalaxyWarning

__all__ = [
    "EVALUATION_KEYS",
    "calibration",
    "confusion_matrix",
    "evaluate",
    "expected_calibration_error",
    "purity_completeness",
    "purity_thresholds",
    "roc_auc",
    "roc_curve",
    "wilson_interval",
]

#: Keys that `evaluate` writes to the ``meta`` of each result table -> what each records (valid
#: FITS keywords, like the classified table's own `~astro_stargal.PROVENANCE_KEYS`, copied beside them).
EVALUATION_KEYS = {
    "EVVERSN": "astro_stargal version that evaluated",
    "EVTRUTH": "truth column",
    "EVMAGCOL": "magnitude column of the per-bin rates (blank if none)",
    "EVTHRESH": "p_star threshold of the star call",
    "EVDATE": "when the evaluation ran (UTC, ISO 8601)",
    "EVTABLE": "the evaluated table's file (astro-stargal evaluate only)",
}

#: The classifier's probability column.
P_STAR_COLUMN = "p_star"

#: Number of standard deviations of the Wilson intervals (1 gives 68.27 percent).
WILSON_Z = 1.0

_CLASSES = ("star", "galaxy")


def wilson_interval(successes, trials, *, z=WILSON_Z):
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes, trials : int or `~numpy.ndarray`
        Counts; ``trials`` may be zero, which gives NaN.
    z : float, optional
        Half-width in standard deviations (1 gives a 68.27 percent interval).

    Returns
    -------
    lower, upper : `~numpy.ndarray`
        Interval bounds, NaN where ``trials`` is zero.

    Examples
    --------
    >>> lower, upper = wilson_interval(8, 10)
    >>> round(float(lower), 3), round(float(upper), 3)
    (0.649, 0.896)
    """
    successes = np.asarray(successes, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = successes / trials
        denominator = 1.0 + z**2 / trials
        centre = (fraction + z**2 / (2.0 * trials)) / denominator
        half_width = (
            z * np.sqrt(fraction * (1.0 - fraction) / trials + z**2 / (4.0 * trials**2)) / denominator
        )
    empty = trials <= 0
    lower = np.where(empty, np.nan, np.clip(centre - half_width, 0.0, 1.0))
    upper = np.where(empty, np.nan, np.clip(centre + half_width, 0.0, 1.0))
    return lower, upper


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def validate_table(table, columns):
    if not isinstance(table, Table):
        msg = f"table must be an astropy Table or QTable, got {type(table).__name__}"
        raise TypeError(msg)
    missing = [name for name in columns if name is not None and name not in table.colnames]
    if missing:
        msg = f"column(s) {missing} not in the table; its columns are {table.colnames}"
        raise ValueError(msg)


def _plain(column):
    """Values of a column as a plain array, and its mask (all False when unmasked)."""
    mask = np.ma.getmaskarray(column) if hasattr(column, "mask") else np.zeros(len(column), dtype=bool)
    values = np.ma.getdata(getattr(column, "value", column))
    return np.asarray(values), np.asarray(mask, dtype=bool)


def p_star_values(table):
    values, mask = _plain(table[P_STAR_COLUMN])
    try:
        p_star = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        msg = f"column {P_STAR_COLUMN!r} must be numeric, got dtype {values.dtype}"
        raise ValueError(msg) from error
    return np.where(mask, np.nan, p_star)


def truth_is_star(table, truth_column, star_label):
    """Return ``(is_star, known)``: the truth as booleans and where it is not masked."""
    values, mask = _plain(table[truth_column])
    if values.dtype.kind in "US":
        labels = np.char.lower(np.char.strip(values.astype(str)))
        is_star = labels == str(star_label).strip().lower()
    elif values.dtype.kind == "b":
        is_star = values.astype(bool)
    elif values.dtype.kind in "iu":
        bad = sorted(set(np.unique(values[~mask]).tolist()) - {0, 1})
        if bad:
            msg = f"integer truth column {truth_column!r} must hold 1 (star) or 0 (galaxy), found {bad[:5]}"
            raise ValueError(msg)
        is_star = values == 1
    else:
        msg = (
            f"truth column {truth_column!r} must hold strings ({star_label!r} for stars) or "
            f"booleans/integers (1 = star), got dtype {values.dtype}"
        )
        raise ValueError(msg)
    known = ~mask
    if mask.any():
        warnings.warn(
            f"{int(mask.sum())} row(s) with a masked {truth_column!r} are left out of the evaluation",
            StarGalaxyWarning,
            stacklevel=4,
        )
    return is_star, known


def _magnitudes(table, mag_column):
    column = table[mag_column]
    values, mask = _plain(column)
    try:
        magnitudes = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        msg = f"magnitude column {mag_column!r} must be numeric, got dtype {values.dtype}"
        raise ValueError(msg) from error
    unit = getattr(column, "unit", None)
    return np.where(mask, np.nan, magnitudes), (u.mag if unit is None else u.Unit(unit))


def _bin_edges(magnitudes, bins, mag_column):
    finite = magnitudes[np.isfinite(magnitudes)]
    if bins is None or np.isscalar(bins):
        if finite.size == 0:
            msg = f"magnitude column {mag_column!r} has no finite value to bin"
            raise ValueError(msg)
        low, high = float(finite.min()), float(finite.max())
        if bins is None:
            # One-magnitude bins on whole magnitudes.
            edges = np.arange(np.floor(low), np.floor(high) + 2.0)
        else:
            if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
                msg = f"bins must be a positive integer or a sequence of bin edges, got {bins!r}"
                raise ValueError(msg)
            edges = np.linspace(low, high if high > low else low + 1.0, int(bins) + 1)
        return edges
    edges = np.asarray(getattr(bins, "value", bins), dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.isfinite(edges).all():
        msg = f"bins must be at least two finite, increasing bin edges, got {bins!r}"
        raise ValueError(msg)
    return edges


def _selections(table, mag_column, bins):
    """Yield ``(label, mag_min, mag_max, rows)``: everything first, then each magnitude bin.

    The last bin includes its upper edge; rows outside the edges appear only in the first selection.
    """
    everything = np.ones(len(table), dtype=bool)
    if mag_column is None:
        return [("all", -np.inf, np.inf, everything)], None
    magnitudes, unit = _magnitudes(table, mag_column)
    edges = _bin_edges(magnitudes, bins, mag_column)
    selections = [("all", -np.inf, np.inf, everything)]
    for index, (low, high) in enumerate(itertools.pairwise(edges)):
        last = index == len(edges) - 2
        with np.errstate(invalid="ignore"):
            rows = (magnitudes >= low) & ((magnitudes <= high) if last else (magnitudes < high))
        selections.append((f"{low:g} <= {mag_column} {'<=' if last else '<'} {high:g}", low, high, rows))
    return selections, unit


def _prepare(table, truth_column, star_label, mag_column=None):
    validate_table(table, [P_STAR_COLUMN, truth_column, mag_column])
    p_star = p_star_values(table)
    is_star, known = truth_is_star(table, truth_column, star_label)
    return p_star, is_star, known


def _validate_threshold(threshold):
    if not (isinstance(threshold, (int, float, np.floating)) and 0.0 <= threshold <= 1.0):
        msg = f"threshold must be a number between 0 and 1, got {threshold!r}"
        raise ValueError(msg)


def _with_bin_columns(result, selections, unit):
    result["selection"] = [label for label, *_ in selections]
    result["selection"].description = "Rows counted: 'all' or one magnitude bin"
    if unit is not None:
        result["mag_min"] = np.array([low for _, low, _, _ in selections]) * unit
        result["mag_min"].description = "Lower edge of the magnitude bin (-inf for all rows)"
        result["mag_max"] = np.array([high for _, _, high, _ in selections]) * unit
        result["mag_max"].description = "Upper edge of the magnitude bin (+inf for all rows)"
    return result


# --------------------------------------------------------------------------
# Purity and completeness
# --------------------------------------------------------------------------


def purity_completeness(
    table, *, truth_column="label", mag_column=None, bins=None, threshold=0.5, star_label="star"
):
    """Purity and completeness of the star and galaxy samples, overall and per magnitude bin.

    A source is called a star where ``p_star >= threshold`` and a galaxy
    otherwise. For each class, purity (precision) is the fraction of the
    sources called that class that truly are, and completeness (recall) the
    fraction of the true members called that class.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` (from `~astro_stargal.classify_sources`) and the truth.
    truth_column : str, optional
        True class: strings (``star_label`` for stars, anything else a galaxy)
        or booleans/integers (1 = star, 0 = galaxy).
    mag_column : str, optional
        Any magnitude column to bin on; without it only the overall row is given.
    bins : int or sequence of float, optional
        Bin edges in magnitudes, or a number of equal-width bins over the
        column's range. Default: one-magnitude bins on whole magnitudes.
    threshold : float, optional
        The ``p_star`` threshold for calling a source a star.
    star_label : str, optional
        The string label of stars in ``truth_column``.

    Returns
    -------
    result : `~astropy.table.QTable`
        One row for all sources (``selection == 'all'``), then one per bin
        (the last bin includes its upper edge). Columns: ``selection``,
        ``mag_min``/``mag_max`` (with ``mag_column``), ``n_sources``,
        ``n_unclassified``, ``n_true_star``, ``n_true_galaxy``,
        ``n_called_star``, ``n_called_galaxy``, ``n_correct_star``,
        ``n_correct_galaxy``, and for each class ``{class}_purity``,
        ``{class}_completeness`` and their Wilson bounds ``..._lower`` and
        ``..._upper``. Rates are NaN where nothing is counted.

    Raises
    ------
    ValueError
        If a column is missing, or ``bins``, ``threshold`` or the truth values are invalid.

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"p_star": [0.9, 0.8, 0.2, 0.1], "label": ["star", "galaxy", "galaxy", "galaxy"]})
    >>> result = purity_completeness(table)
    >>> float(result["star_purity"][0]), float(result["galaxy_completeness"][0])
    (0.5, 0.6666666666666666)
    """
    _validate_threshold(threshold)
    p_star, is_star, known = _prepare(table, truth_column, star_label, mag_column)
    selections, unit = _selections(table, mag_column, bins)
    classified = np.isfinite(p_star)
    with np.errstate(invalid="ignore"):
        called_star = classified & (p_star >= threshold)
    called_galaxy = classified & ~called_star

    counts = {name: [] for name in _COUNT_DESCRIPTIONS}
    for _, _, _, rows in selections:
        rows = rows & known
        used = rows & classified
        counts["n_sources"].append(rows.sum())
        counts["n_unclassified"].append((rows & ~classified).sum())
        counts["n_true_star"].append((used & is_star).sum())
        counts["n_true_galaxy"].append((used & ~is_star).sum())
        counts["n_called_star"].append((rows & called_star).sum())
        counts["n_called_galaxy"].append((rows & called_galaxy).sum())
        counts["n_correct_star"].append((rows & called_star & is_star).sum())
        counts["n_correct_galaxy"].append((rows & called_galaxy & ~is_star).sum())

    result = _with_bin_columns(QTable(), selections, unit)
    for name, values in counts.items():
        result[name] = np.asarray(values, dtype=np.int64)
        result[name].description = _COUNT_DESCRIPTIONS[name]
    for name in _CLASSES:
        correct = result[f"n_correct_{name}"]
        for rate, denominator in (("purity", f"n_called_{name}"), ("completeness", f"n_true_{name}")):
            _add_rate(result, f"{name}_{rate}", correct, result[denominator], _RATE_DESCRIPTIONS[rate] % name)
    result.meta.update(
        {"threshold": float(threshold), "truth_column": truth_column, "mag_column": mag_column}
    )
    return result


_COUNT_DESCRIPTIONS = {
    "n_sources": "Rows in the selection with a known truth",
    "n_unclassified": "Rows the classifier could not classify (p_star NaN); left out of the rates",
    "n_true_star": "Classified rows that truly are stars",
    "n_true_galaxy": "Classified rows that truly are galaxies",
    "n_called_star": "Rows with p_star >= threshold",
    "n_called_galaxy": "Rows with p_star < threshold",
    "n_correct_star": "True stars called stars",
    "n_correct_galaxy": "True galaxies called galaxies",
}

_RATE_DESCRIPTIONS = {
    "purity": "Purity (precision) of the %s sample: correct / called",
    "completeness": "Completeness (recall) of the %s sample: correct / true",
}


def _add_rate(result, name, successes, trials, description):
    successes = np.asarray(successes, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(trials > 0, successes / trials, np.nan)
    lower, upper = wilson_interval(successes, trials)
    result[name] = rate
    result[name].description = description
    result[f"{name}_lower"] = lower
    result[f"{name}_lower"].description = "Lower bound of the 68.27% Wilson interval"
    result[f"{name}_upper"] = upper
    result[f"{name}_upper"].description = "Upper bound of the 68.27% Wilson interval"


# --------------------------------------------------------------------------
# Threshold scans: ROC and purity thresholds
# --------------------------------------------------------------------------


def _threshold_scan(p_star, is_star):
    """Counts of stars and galaxies at each distinct ``p_star`` value, ascending."""
    values, inverse = np.unique(p_star, return_inverse=True)
    stars = np.bincount(inverse, weights=is_star, minlength=len(values))
    galaxies = np.bincount(inverse, weights=~is_star, minlength=len(values))
    return values, stars, galaxies


def _classified_with_truth(table, truth_column, star_label, mag_column=None):
    p_star, is_star, known = _prepare(table, truth_column, star_label, mag_column)
    use = known & np.isfinite(p_star)
    return p_star, is_star, use


def roc_curve(table, *, truth_column="label", star_label="star"):
    """Receiver operating characteristic of ``p_star`` for selecting stars.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` and the truth; unclassified rows are left out.
    truth_column : str, optional
        See `purity_completeness`.
    star_label : str, optional
        See `purity_completeness`.

    Returns
    -------
    roc : `~astropy.table.QTable`
        ``threshold`` (descending, starting at +inf where nothing is
        selected), ``tpr`` (star completeness of ``p_star >= threshold``) and
        ``fpr`` (fraction of galaxies selected). Rates are NaN when the table
        lacks one class.

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"p_star": [0.9, 0.6, 0.3], "label": ["star", "galaxy", "star"]})
    >>> roc_curve(table)["tpr"].tolist()
    [0.0, 0.5, 0.5, 1.0]
    """
    p_star, is_star, use = _classified_with_truth(table, truth_column, star_label)
    values, stars, galaxies = _threshold_scan(p_star[use], is_star[use])
    # Selected at threshold values[k]: every row with p_star >= values[k].
    stars_selected = np.concatenate([[0.0], np.cumsum(stars[::-1])])
    galaxies_selected = np.concatenate([[0.0], np.cumsum(galaxies[::-1])])
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = stars_selected / stars.sum()
        fpr = galaxies_selected / galaxies.sum()
    roc = QTable()
    roc["threshold"] = np.concatenate([[np.inf], values[::-1]])
    roc["threshold"].description = "Stars are selected where p_star >= threshold"
    roc["tpr"] = tpr
    roc["tpr"].description = "True positive rate: fraction of true stars selected (star completeness)"
    roc["fpr"] = fpr
    roc["fpr"].description = "False positive rate: fraction of true galaxies selected"
    return roc


def roc_auc(table, *, truth_column="label", star_label="star"):
    """Area under the ROC curve.

    The trapezoid rule over the curve of `roc_curve`, which equals the
    Mann-Whitney probability that a random star has a higher ``p_star`` than
    a random galaxy, ties counted one half.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` and the truth.
    truth_column, star_label : str, optional
        See `purity_completeness`.

    Returns
    -------
    auc : float
        NaN if the classified rows lack stars or galaxies.

    Examples
    --------
    >>> from astropy.table import Table
    >>> roc_auc(Table({"p_star": [0.9, 0.2], "label": ["star", "galaxy"]}))
    1.0
    """
    roc = roc_curve(table, truth_column=truth_column, star_label=star_label)
    tpr, fpr = np.asarray(roc["tpr"]), np.asarray(roc["fpr"])
    if not (np.isfinite(tpr).all() and np.isfinite(fpr).all()):
        return float("nan")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def purity_thresholds(
    table,
    *,
    star_purity=None,
    galaxy_purity=None,
    truth_column="label",
    mag_column=None,
    bins=None,
    star_label="star",
):
    """The ``p_star`` thresholds that reach a requested purity, overall and per magnitude bin.

    For stars (selected where ``p_star >= threshold``) the lowest threshold
    whose star purity reaches ``star_purity`` is returned, which keeps the
    most stars; for galaxies (selected where ``p_star < threshold``) the
    highest threshold whose galaxy purity reaches ``galaxy_purity``.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` and the truth.
    star_purity, galaxy_purity : float, optional
        Target purities in (0, 1]; give at least one.
    truth_column, mag_column, bins, star_label : optional
        See `purity_completeness`.

    Returns
    -------
    result : `~astropy.table.QTable`
        One row for all sources, then one per magnitude bin, with
        ``selection`` (and ``mag_min``/``mag_max``), and for each class asked
        for ``{class}_threshold``, the ``{class}_purity`` and
        ``{class}_completeness`` reached, and ``n_{class}_selected``.
        The threshold and rates are NaN where no threshold reaches the target.

    Raises
    ------
    ValueError
        If neither target is given or a target is outside (0, 1].

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"p_star": [0.9, 0.7, 0.6, 0.2], "label": ["star", "star", "galaxy", "galaxy"]})
    >>> result = purity_thresholds(table, star_purity=1.0)
    >>> float(result["star_threshold"][0]), float(result["star_completeness"][0])
    (0.7, 1.0)
    """
    targets = {"star": star_purity, "galaxy": galaxy_purity}
    if all(target is None for target in targets.values()):
        msg = "give star_purity=, galaxy_purity= or both"
        raise ValueError(msg)
    for name, target in targets.items():
        if target is not None and not (isinstance(target, (int, float, np.floating)) and 0 < target <= 1):
            msg = f"{name}_purity must be a number in (0, 1], got {target!r}"
            raise ValueError(msg)
    p_star, is_star, use = _classified_with_truth(table, truth_column, star_label, mag_column)
    selections, unit = _selections(table, mag_column, bins)
    rows_by_class = {name: [] for name in _CLASSES}
    for _, _, _, rows in selections:
        values, stars, galaxies = _threshold_scan(p_star[rows & use], is_star[rows & use])
        for name, target in targets.items():
            if target is not None:
                rows_by_class[name].append(_threshold_for_purity(name, target, values, stars, galaxies))

    result = _with_bin_columns(QTable(), selections, unit)
    for name, target in targets.items():
        if target is None:
            continue
        threshold, purity, completeness, selected = np.array(rows_by_class[name]).T
        relation = ">=" if name == "star" else "<"
        result[f"{name}_threshold"] = threshold
        description = (
            f"{name.capitalize()}s are selected where p_star {relation} threshold (purity target {target})"
        )
        result[f"{name}_threshold"].description = description
        result[f"{name}_purity"] = purity
        result[f"{name}_purity"].description = f"Purity of the {name} sample at that threshold"
        result[f"{name}_completeness"] = completeness
        result[f"{name}_completeness"].description = f"Completeness of the {name} sample at that threshold"
        result[f"n_{name}_selected"] = np.nan_to_num(selected).astype(np.int64)
        result[f"n_{name}_selected"].description = f"Rows selected as {name}s at that threshold"
    result.meta.update({"star_purity": star_purity, "galaxy_purity": galaxy_purity})
    return result


def _threshold_for_purity(name, target, values, stars, galaxies):
    """Return ``(threshold, purity, completeness, n_selected)`` for one class, NaN if unreachable."""
    unreachable = (np.nan, np.nan, np.nan, 0)
    if name == "star":
        # Selecting p_star >= values[k] keeps the stars and galaxies at k and above.
        wanted = np.cumsum(stars[::-1])[::-1]
        others = np.cumsum(galaxies[::-1])[::-1]
        total = stars.sum()
        candidates = values
    else:
        # Selecting p_star < nextafter(values[k]) keeps everything at k and below.
        wanted = np.cumsum(galaxies)
        others = np.cumsum(stars)
        total = galaxies.sum()
        candidates = np.nextafter(values, np.inf)
    if total == 0:
        return unreachable
    purity = wanted / (wanted + others)
    reached = np.flatnonzero(purity >= target)
    if reached.size == 0:
        return unreachable
    best = reached[0] if name == "star" else reached[-1]
    return candidates[best], purity[best], wanted[best] / total, wanted[best] + others[best]


# --------------------------------------------------------------------------
# Calibration and confusion matrix
# --------------------------------------------------------------------------


def calibration(table, *, n_bins=15, truth_column="label", star_label="star"):
    """Reliability table: predicted ``p_star`` against the observed star fraction.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` and the truth; unclassified rows are left out.
    n_bins : int, optional
        Equal-width ``p_star`` bins over [0, 1] (the last includes 1).
    truth_column, star_label : str, optional
        See `purity_completeness`.

    Returns
    -------
    reliability : `~astropy.table.QTable`
        ``p_min``, ``p_max`` (bin edges), ``count``, ``mean_p_star``,
        ``star_fraction`` and its Wilson bounds ``star_fraction_lower`` and
        ``star_fraction_upper``; NaN in empty bins. For a calibrated
        classifier ``star_fraction`` follows ``mean_p_star``.

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"p_star": [0.05, 0.95, 0.95], "label": ["galaxy", "star", "star"]})
    >>> calibration(table, n_bins=2)["star_fraction"].tolist()
    [0.0, 1.0]
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        msg = f"n_bins must be a positive integer, got {n_bins!r}"
        raise ValueError(msg)
    p_star, is_star, use = _classified_with_truth(table, truth_column, star_label)
    p_star, is_star = p_star[use], is_star[use]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, p_star, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    p_sum = np.bincount(index, weights=p_star, minlength=n_bins)
    star_count = np.bincount(index, weights=is_star, minlength=n_bins)

    reliability = QTable()
    reliability["p_min"] = edges[:-1]
    reliability["p_min"].description = "Lower edge of the p_star bin"
    reliability["p_max"] = edges[1:]
    reliability["p_max"].description = "Upper edge of the p_star bin"
    reliability["count"] = count
    reliability["count"].description = "Classified rows in the bin"
    with np.errstate(invalid="ignore", divide="ignore"):
        reliability["mean_p_star"] = np.where(count > 0, p_sum / count, np.nan)
    reliability["mean_p_star"].description = "Mean predicted star probability in the bin"
    _add_rate(reliability, "star_fraction", star_count, count, "Observed fraction of true stars in the bin")
    return reliability


def expected_calibration_error(table, *, n_bins=15, truth_column="label", star_label="star"):
    """Expected calibration error: the count-weighted mean of ``|star fraction - mean p_star|``.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` and the truth, or is already the output of `calibration`.
    n_bins, truth_column, star_label : optional
        See `calibration` (ignored when ``table`` is a reliability table).

    Returns
    -------
    ece : float
        Between 0 (calibrated) and 1; NaN if nothing is classified.

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"p_star": [0.05, 0.95, 0.95], "label": ["galaxy", "star", "star"]})
    >>> round(expected_calibration_error(table, n_bins=2), 3)
    0.05
    """
    if {"count", "mean_p_star", "star_fraction"} <= set(getattr(table, "colnames", ())):
        reliability = table
    else:
        reliability = calibration(table, n_bins=n_bins, truth_column=truth_column, star_label=star_label)
    count = np.asarray(reliability["count"], dtype=np.float64)
    if count.sum() == 0:
        return float("nan")
    gap = np.abs(np.asarray(reliability["star_fraction"]) - np.asarray(reliability["mean_p_star"]))
    return float(np.sum(np.where(count > 0, gap, 0.0) * count) / count.sum())


def confusion_matrix(table, *, truth_column="label", threshold=0.5, star_label="star"):
    """Counts of true class against called class.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` and the truth.
    truth_column, threshold, star_label : optional
        See `purity_completeness`.

    Returns
    -------
    matrix : `~astropy.table.QTable`
        One row per true class (``true_class`` 'star', 'galaxy') with the
        counts ``called_star``, ``called_galaxy`` and ``unclassified``.

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"p_star": [0.9, 0.4, 0.2], "label": [1, 1, 0]})
    >>> confusion_matrix(table)["called_star"].tolist()
    [1, 0]
    """
    overall = purity_completeness(
        table, truth_column=truth_column, threshold=threshold, star_label=star_label
    )[0]
    p_star, is_star, known = _prepare(table, truth_column, star_label)
    unclassified = known & np.isnan(p_star)
    matrix = QTable()
    matrix["true_class"] = list(_CLASSES)
    matrix["true_class"].description = "True class"
    matrix["called_star"] = [
        overall["n_correct_star"],
        overall["n_called_star"] - overall["n_correct_star"],
    ]
    matrix["called_star"].description = f"Rows with p_star >= {threshold}"
    matrix["called_galaxy"] = [
        overall["n_called_galaxy"] - overall["n_correct_galaxy"],
        overall["n_correct_galaxy"],
    ]
    matrix["called_galaxy"].description = f"Rows with p_star < {threshold}"
    matrix["unclassified"] = [int((unclassified & is_star).sum()), int((unclassified & ~is_star).sum())]
    matrix["unclassified"].description = "Rows with p_star NaN (not classified)"
    matrix.meta["threshold"] = float(threshold)
    return matrix


# --------------------------------------------------------------------------
# Everything at once, and the command line
# --------------------------------------------------------------------------


def evaluate(
    table,
    *,
    truth_column="label",
    mag_column=None,
    bins=None,
    threshold=0.5,
    n_bins=15,
    star_purity=None,
    galaxy_purity=None,
    star_label="star",
):
    """Run every evaluation on one table.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Holds ``p_star`` and the truth.
    truth_column, mag_column, bins, threshold, star_label : optional
        See `purity_completeness`.
    n_bins : int, optional
        Bins of the reliability table (see `calibration`).
    star_purity, galaxy_purity : float, optional
        Targets for `purity_thresholds` (computed only when one is given).

    Returns
    -------
    results : dict
        ``'summary'`` (one-row `~astropy.table.QTable`: counts, accuracy,
        AUC, expected calibration error), ``'purity_completeness'``,
        ``'confusion_matrix'``, ``'roc'``, ``'calibration'`` and, with a
        purity target, ``'purity_thresholds'``. The ``meta`` of each says how
        it was made (the keys of `EVALUATION_KEYS`) and carries the
        provenance of the classified table (`~astro_stargal.PROVENANCE_KEYS`)
        where it has one.

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"p_star": [0.9, 0.8, 0.2, 0.1], "label": ["star", "star", "galaxy", "galaxy"]})
    >>> float(evaluate(table)["summary"]["accuracy"][0])
    1.0
    """
    common = {"truth_column": truth_column, "star_label": star_label}
    results = {
        "purity_completeness": purity_completeness(
            table, mag_column=mag_column, bins=bins, threshold=threshold, **common
        ),
        "confusion_matrix": confusion_matrix(table, threshold=threshold, **common),
        "roc": roc_curve(table, **common),
        "calibration": calibration(table, n_bins=n_bins, **common),
    }
    if star_purity is not None or galaxy_purity is not None:
        results["purity_thresholds"] = purity_thresholds(
            table,
            star_purity=star_purity,
            galaxy_purity=galaxy_purity,
            mag_column=mag_column,
            bins=bins,
            **common,
        )
    results = {"summary": _summary(results, roc_auc(table, **common)), **results}
    meta = {
        **{key: table.meta[key] for key in PROVENANCE_KEYS if key in table.meta},
        "EVVERSN": __version__,
        "EVTRUTH": truth_column,
        "EVMAGCOL": mag_column or "",
        "EVTHRESH": float(threshold),
        "EVDATE": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for result in results.values():
        result.meta.update(meta)
    return results


def _summary(results, auc):
    overall = results["purity_completeness"][0]
    classified = overall["n_true_star"] + overall["n_true_galaxy"]
    correct = overall["n_correct_star"] + overall["n_correct_galaxy"]
    summary = QTable()
    columns = {
        "n_sources": (overall["n_sources"], "Rows with a known truth"),
        "n_unclassified": (overall["n_unclassified"], "Rows not classified (p_star NaN)"),
        "accuracy": (
            correct / classified if classified else np.nan,
            "Fraction of classified rows called right",
        ),
        "star_purity": (overall["star_purity"], "Purity of the star sample"),
        "star_completeness": (overall["star_completeness"], "Completeness of the star sample"),
        "galaxy_purity": (overall["galaxy_purity"], "Purity of the galaxy sample"),
        "galaxy_completeness": (overall["galaxy_completeness"], "Completeness of the galaxy sample"),
        "auc": (auc, "Area under the ROC curve"),
        "ece": (expected_calibration_error(results["calibration"]), "Expected calibration error"),
    }
    for name, (value, description) in columns.items():
        summary[name] = [value]
        summary[name].description = description
    return summary
