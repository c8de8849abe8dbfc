"""How well the classifier does against known truth: metrics, and the figures that show them.

Every metric takes a table that holds the classifier's ``p_star`` column and a
truth column and returns an astropy `~astropy.table.QTable` whose columns
carry descriptions (see `purity_completeness`, `roc_curve`, `calibration`,
`evaluate`). The ``plot_*`` functions draw the same quantities (matplotlib is
optional and imported only when a figure is drawn).
"""

from ._metrics import (
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
from ._plots import (
    plot_classified_field,
    plot_cutout_gallery,
    plot_p_star_histogram,
    plot_purity_completeness,
    plot_reliability,
    plot_roc,
    plot_training_curves,
    save_evaluation_figures,
)

__all__ = [
    "EVALUATION_KEYS",
    "calibration",
    "confusion_matrix",
    "evaluate",
    "expected_calibration_error",
    "plot_classified_field",
    "plot_cutout_gallery",
    "plot_p_star_histogram",
    "plot_purity_completeness",
    "plot_reliability",
    "plot_roc",
    "plot_training_curves",
    "purity_completeness",
    "purity_thresholds",
    "roc_auc",
    "roc_curve",
    "save_evaluation_figures",
    "wilson_interval",
]
