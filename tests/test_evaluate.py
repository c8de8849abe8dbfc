"""Specifications of astro_stargal.evaluation, on small tables counted by hand."""

import numpy as np
import pytest
from astropy import units as u
from astropy.stats import binom_conf_interval
from astropy.table import MaskedColumn, QTable, Table
from scipy import special, stats

from astro_stargal.evaluation import (
    EVALUATION_KEYS,
    calibration,
    confusion_matrix,
    evaluate,
    expected_calibration_error,
    purity_completeness,
    purity_thresholds,
    roc_auc,
    roc_curve,
    wilson_interval,
)
from astro_stargal.exceptions import StarGalaxyWarning

BINS = [18, 19, 20, 21, 22, 23]


@pytest.fixture
def small_table():
    """Eight sources; row 6 is unclassified; bin 20-21 is empty, 18-19 has only stars."""
    return Table(
        {
            "p_star": np.array([0.95, 0.80, 0.60, 0.40, 0.30, 0.10, np.nan, 0.70], dtype=np.float32),
            "label": ["star", "star", "galaxy", "star", "galaxy", "galaxy", "star", "galaxy"],
            "mag_r": [18.2, 18.7, 19.5, 19.2, 21.5, 21.9, 18.0, 23.0] * u.mag,
        }
    )


def test_overall_counts_and_rates_match_hand_count(small_table):
    row = purity_completeness(small_table)[0]
    assert row["selection"] == "all"
    assert (row["n_sources"], row["n_unclassified"]) == (8, 1)
    assert (row["n_true_star"], row["n_true_galaxy"]) == (3, 4)
    assert (row["n_called_star"], row["n_correct_star"]) == (4, 2)
    assert (row["n_called_galaxy"], row["n_correct_galaxy"]) == (3, 2)
    assert row["star_purity"] == pytest.approx(2 / 4)
    assert row["star_completeness"] == pytest.approx(2 / 3)
    assert row["galaxy_purity"] == pytest.approx(2 / 3)
    assert row["galaxy_completeness"] == pytest.approx(2 / 4)
    assert row["star_purity_lower"] < row["star_purity"] < row["star_purity_upper"]


def test_magnitude_bins_give_nan_for_empty_and_single_class_bins(small_table):
    result = purity_completeness(small_table, mag_column="mag_r", bins=BINS)
    assert len(result) == 1 + 5
    assert result["mag_min"].unit == u.mag
    only_stars, mixed, empty, only_galaxies, last = result[1:]
    assert (only_stars["n_true_star"], only_stars["n_unclassified"]) == (2, 1)
    assert only_stars["star_purity"] == 1.0 and only_stars["star_completeness"] == 1.0
    assert np.isnan(only_stars["galaxy_purity"]) and np.isnan(only_stars["galaxy_completeness"])
    assert mixed["star_purity"] == 0.0 and mixed["galaxy_completeness"] == 0.0
    assert empty["n_sources"] == 0
    assert all(np.isnan(empty[name]) for name in ("star_purity", "galaxy_completeness", "star_purity_lower"))
    assert np.isnan(only_galaxies["star_purity"]) and only_galaxies["galaxy_purity"] == 1.0
    # The last bin includes its upper edge (23.0).
    assert last["n_sources"] == 1 and last["star_purity"] == 0.0


def test_default_bins_are_whole_magnitudes(small_table):
    result = purity_completeness(small_table, mag_column="mag_r")
    assert result["mag_min"][1:].value.tolist() == [18, 19, 20, 21, 22, 23]
    assert result["n_sources"][1:].sum() == 8


def test_integer_and_boolean_truth_equal_string_truth(small_table):
    expected = purity_completeness(small_table)
    for truth in ((small_table["label"] == "star").astype(int), small_table["label"] == "star"):
        table = small_table.copy()
        table["label"] = truth
        result = purity_completeness(table)
        assert result["n_correct_star"][0] == expected["n_correct_star"][0]
        assert result["galaxy_purity"][0] == expected["galaxy_purity"][0]


def test_string_truth_is_case_insensitive(small_table):
    small_table["label"] = [label.upper() for label in small_table["label"]]
    assert purity_completeness(small_table)["n_true_star"][0] == 3


def test_masked_p_star_counts_as_unclassified(small_table):
    small_table["p_star"] = MaskedColumn(small_table["p_star"], mask=[True] + [False] * 7)
    assert purity_completeness(small_table)["n_unclassified"][0] == 2


def test_masked_truth_is_left_out_with_a_warning(small_table):
    small_table["label"] = MaskedColumn(small_table["label"], mask=[True] + [False] * 7)
    with pytest.warns(StarGalaxyWarning, match="masked 'label'"):
        assert purity_completeness(small_table)["n_sources"][0] == 7


def test_missing_column_is_named(small_table):
    with pytest.raises(ValueError, match="'truth'"):
        purity_completeness(small_table, truth_column="truth")
    with pytest.raises(ValueError, match="'mag_i'"):
        purity_completeness(small_table, mag_column="mag_i")
    with pytest.raises(ValueError, match="'p_star'"):
        roc_curve(small_table[["label"]])


def test_integer_truth_other_than_zero_or_one_is_an_error(small_table):
    small_table["label"] = [0, 1, 2, 0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match=r"1 \(star\) or 0 \(galaxy\), found \[2\]"):
        purity_completeness(small_table)


def test_bad_options_raise_clear_errors(small_table):
    with pytest.raises(ValueError, match="threshold"):
        purity_completeness(small_table, threshold=2.0)
    with pytest.raises(ValueError, match="bin edges"):
        purity_completeness(small_table, mag_column="mag_r", bins=[20, 19])
    with pytest.raises(TypeError, match="astropy Table"):
        purity_completeness({"p_star": [0.5]})


def test_empty_table_gives_nan_not_an_error():
    table = Table({"p_star": np.array([], dtype=np.float32), "label": np.array([], dtype="U6")})
    row = purity_completeness(table)[0]
    assert row["n_sources"] == 0 and np.isnan(row["star_purity"])
    assert np.isnan(roc_auc(table))
    assert np.isnan(expected_calibration_error(table))


def test_auc_of_a_perfect_classifier_is_one():
    table = Table({"p_star": [0.99, 0.7, 0.51, 0.5, 0.2], "label": [1, 1, 1, 0, 0]})
    assert roc_auc(table) == 1.0


def test_auc_equals_mann_whitney_with_ties_counted_half(small_table):
    # Stars 0.95, 0.8, 0.4 against galaxies 0.6, 0.3, 0.1, 0.7: 10 of 12 pairs ordered right.
    assert roc_auc(small_table) == pytest.approx(10 / 12)
    tied = Table({"p_star": [0.5, 0.5], "label": ["star", "galaxy"]})
    assert roc_auc(tied) == pytest.approx(0.5)


def test_roc_curve_runs_from_origin_to_one(small_table):
    roc = roc_curve(small_table)
    assert roc["threshold"][0] == np.inf
    assert (roc["tpr"][0], roc["fpr"][0]) == (0.0, 0.0)
    assert (roc["tpr"][-1], roc["fpr"][-1]) == (1.0, 1.0)
    assert np.all(np.diff(roc["threshold"]) < 0)


def test_single_class_roc_is_nan_not_an_error():
    table = Table({"p_star": [0.9, 0.8], "label": ["star", "star"]})
    assert np.isnan(roc_auc(table))
    assert np.isnan(roc_curve(table)["fpr"]).all()


def test_star_threshold_is_the_lowest_reaching_the_purity(small_table):
    result = purity_thresholds(small_table, star_purity=1.0)
    assert result["star_threshold"][0] == pytest.approx(0.80)
    assert result["star_completeness"][0] == pytest.approx(2 / 3)
    assert result["n_star_selected"][0] == 2
    # Purity is not monotonic: 0.6 is reached again at the lower threshold 0.4.
    result = purity_thresholds(small_table, star_purity=0.6)
    assert result["star_threshold"][0] == pytest.approx(0.40)
    assert result["star_completeness"][0] == 1.0


def test_galaxy_threshold_is_the_highest_reaching_the_purity(small_table):
    result = purity_thresholds(small_table, galaxy_purity=1.0)
    threshold = result["galaxy_threshold"][0]
    assert 0.30 < threshold < 0.40  # galaxies are p_star < threshold: 0.1 and 0.3
    assert result["galaxy_completeness"][0] == pytest.approx(2 / 4)
    assert result["n_galaxy_selected"][0] == 2


def test_purity_thresholds_per_bin_nan_where_unreachable(small_table):
    result = purity_thresholds(
        small_table, star_purity=0.99, galaxy_purity=0.99, mag_column="mag_r", bins=BINS
    )
    assert len(result) == 6
    empty = result[3]
    assert np.isnan(empty["star_threshold"]) and np.isnan(empty["galaxy_threshold"])
    only_stars = result[1]
    assert np.isnan(only_stars["galaxy_threshold"]) and only_stars["star_completeness"] == 1.0


def test_purity_thresholds_need_a_target(small_table):
    with pytest.raises(ValueError, match="star_purity"):
        purity_thresholds(small_table)
    with pytest.raises(ValueError, match="galaxy_purity"):
        purity_thresholds(small_table, galaxy_purity=1.5)


def test_ece_of_calibrated_data_is_near_zero():
    rng = np.random.default_rng(1)
    p_star = rng.uniform(size=200_000)
    table = Table({"p_star": p_star, "label": rng.uniform(size=p_star.size) < p_star})
    assert expected_calibration_error(table) < 0.01
    reliability = calibration(table, n_bins=10)
    assert np.allclose(reliability["star_fraction"], reliability["mean_p_star"], atol=0.01)


def test_ece_of_overconfident_data_is_the_gap():
    table = Table({"p_star": [0.9] * 10, "label": ["star"] * 5 + ["galaxy"] * 5})
    assert expected_calibration_error(table) == pytest.approx(0.4)


def test_calibration_counts_and_empty_bins(small_table):
    reliability = calibration(small_table, n_bins=4)
    assert reliability["count"].tolist() == [1, 2, 2, 2]
    assert reliability["star_fraction"].tolist() == [0.0, 0.5, 0.0, 1.0]
    many = calibration(small_table, n_bins=20)
    assert many["count"].sum() == 7
    assert np.isnan(many["mean_p_star"][many["count"] == 0]).all()


def test_confusion_matrix_counts(small_table):
    matrix = confusion_matrix(small_table)
    assert matrix["true_class"].tolist() == ["star", "galaxy"]
    assert matrix["called_star"].tolist() == [2, 2]
    assert matrix["called_galaxy"].tolist() == [1, 2]
    assert matrix["unclassified"].tolist() == [1, 0]


def test_evaluate_returns_every_table(small_table):
    results = evaluate(QTable(small_table), mag_column="mag_r", star_purity=0.9)
    assert set(results) == {
        "summary",
        "purity_completeness",
        "confusion_matrix",
        "roc",
        "calibration",
        "purity_thresholds",
    }
    summary = results["summary"][0]
    assert summary["accuracy"] == pytest.approx(4 / 7)
    assert summary["auc"] == pytest.approx(10 / 12)
    assert all(results["purity_completeness"][name].description for name in ("star_purity", "n_sources"))


def test_wilson_interval_known_value_and_empty():
    lower, upper = wilson_interval([8, 0], [10, 0])
    assert lower[0] == pytest.approx(0.64908, abs=1e-5) and upper[0] == pytest.approx(0.89638, abs=1e-5)
    assert np.isnan(lower[1]) and np.isnan(upper[1])


@pytest.mark.parametrize("z", [1.0, 2.0])
def test_wilson_interval_equals_astropy_binom_conf_interval(z):
    trials = np.concatenate([np.full(n + 1, n) for n in range(1, 60)])
    successes = np.concatenate([np.arange(n + 1) for n in range(1, 60)])
    # The confidence level of exactly z standard deviations of a normal distribution.
    expected = binom_conf_interval(
        successes, trials, confidence_level=special.erf(z / np.sqrt(2)), interval="wilson"
    )
    np.testing.assert_allclose(wilson_interval(successes, trials, z=z), expected, rtol=1e-9, atol=1e-12)


def test_roc_auc_equals_scipy_mann_whitney_u_over_the_pairs():
    rng = np.random.default_rng(3)
    is_star = rng.uniform(size=3000) < 0.3
    # Rounded scores, so that many star-galaxy pairs are tied.
    p_star = np.round(np.clip(rng.normal(np.where(is_star, 0.65, 0.4), 0.2), 0, 1), 2)
    table = Table({"p_star": p_star, "label": is_star})
    u_statistic = stats.mannwhitneyu(p_star[is_star], p_star[~is_star]).statistic
    assert roc_auc(table) == pytest.approx(u_statistic / (is_star.sum() * (~is_star).sum()), rel=1e-12)


def test_calibration_bins_equal_scipy_binned_statistic():
    rng = np.random.default_rng(4)
    n_bins = 10
    # Values on the bin edges too: a bin holds its lower edge, and the last bin also holds 1.
    p_star = np.concatenate([rng.uniform(size=5000) ** 2, np.linspace(0, 1, n_bins + 1)])
    is_star = rng.uniform(size=p_star.size) < p_star
    reliability = calibration(Table({"p_star": p_star, "label": is_star}), n_bins=n_bins)

    edges = np.linspace(0, 1, n_bins + 1)
    count = stats.binned_statistic(p_star, p_star, "count", bins=edges).statistic
    mean_p_star = stats.binned_statistic(p_star, p_star, "mean", bins=edges).statistic
    star_fraction = stats.binned_statistic(p_star, is_star, "mean", bins=edges).statistic
    np.testing.assert_array_equal(reliability["count"], count)
    np.testing.assert_allclose(reliability["mean_p_star"], mean_p_star, rtol=1e-12)
    np.testing.assert_allclose(reliability["star_fraction"], star_fraction, rtol=1e-12)
    ece = np.nansum(count * np.abs(star_fraction - mean_p_star)) / count.sum()
    assert expected_calibration_error(reliability) == pytest.approx(ece, rel=1e-12)


def test_cli_evaluate_prints_tables_and_writes_files(small_table, tmp_path, capsys):
    pytest.importorskip("matplotlib").use("Agg")
    from astro_stargal.cli import main

    small_table.write(tmp_path / "classified.ecsv")
    arguments = [
        "evaluate",
        str(tmp_path / "classified.ecsv"),
        "--mag-column",
        "mag_r",
        "--bins",
        *map(str, BINS),
    ]
    status = main([*arguments, "--star-purity", "0.9", "--output-dir", str(tmp_path / "out")])
    assert status == 0
    out = capsys.readouterr().out
    assert "== purity_completeness ==" in out and "21 <= mag_r < 22" in out
    assert (tmp_path / "out" / "purity_thresholds.ecsv").exists()
    assert (tmp_path / "out" / "purity_completeness.png").exists()


def test_cli_evaluate_reports_a_missing_column(small_table, tmp_path, capsys):
    from astro_stargal.cli import main

    small_table.write(tmp_path / "classified.ecsv")
    assert main(["evaluate", str(tmp_path / "classified.ecsv"), "--truth-column", "truth"]) == 2
    assert "'truth'" in capsys.readouterr().err


def test_every_evaluation_table_says_how_it_was_made_and_what_made_the_classification(small_table):
    """Issue 15: reports, like catalogs, must be traceable to what made them."""
    small_table.meta.update({"SGMODEL": "csst-resnet50-bilstm", "SGSHA256": "0" * 64, "survey": "mine"})
    results = evaluate(small_table, mag_column="mag_r", threshold=0.6, star_purity=0.9)
    for name, result in results.items():
        assert set(EVALUATION_KEYS) - {"EVTABLE"} <= set(result.meta), name
        assert result.meta["EVTHRESH"] == 0.6 and result.meta["EVMAGCOL"] == "mag_r", name
        assert result.meta["SGMODEL"] == "csst-resnet50-bilstm" and result.meta["SGSHA256"] == "0" * 64, name
        assert "survey" not in result.meta, "only the classification's provenance is carried over"


def test_command_line_reports_name_the_evaluated_file(small_table, tmp_path):
    from astro_stargal.cli import main

    small_table.write(tmp_path / "classified.ecsv")
    assert main(["evaluate", str(tmp_path / "classified.ecsv"), "-o", str(tmp_path / "report")]) == 0
    summary = Table.read(tmp_path / "report" / "summary.ecsv")
    assert summary.meta["EVTABLE"] == str(tmp_path / "classified.ecsv")
    assert summary.meta["EVTRUTH"] == "label"
