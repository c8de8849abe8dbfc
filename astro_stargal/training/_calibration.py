"""Calibrating the trained network on the validation fields, and the figures that judge it.

The network's raw logits are turned into probabilities by
``sigmoid(logit / temperature + bias)``, with the temperature and bias fitted
on the validation fields (Platt scaling), so that ``p_star`` is a probability
for the validation set's class mix.
"""

import numpy as np
from astropy.table import Table
from scipy.optimize import minimize

from ..evaluation import expected_calibration_error

__all__ = ["calibrate", "fit_calibration", "recall", "validation_metrics", "weighted_bce"]


def fit_calibration(logits, labels):
    """Temperature and bias minimising the log-loss of ``sigmoid(logit / temperature + bias)``.

    Parameters
    ----------
    logits : 1D `~numpy.ndarray`
        Uncalibrated logits of the validation sources.
    labels : 1D `~numpy.ndarray`
        1 (or True) for stars, 0 for galaxies.

    Returns
    -------
    temperature : float
        Positive (fitted as its logarithm).
    bias : float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, 1000)
    >>> temperature, bias = fit_calibration(3.0 * (2 * labels - 1) + rng.normal(size=1000), labels)
    >>> temperature > 0
    True
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)

    def log_loss(parameters):
        scaled = logits * np.exp(-parameters[0]) + parameters[1]
        return float(np.mean(np.logaddexp(0, scaled) - labels * scaled))

    result = minimize(log_loss, x0=np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9})
    return float(np.exp(result.x[0])), float(result.x[1])


def calibrate(net, validation_logits, validation):
    """Fit the temperature and bias on the validation sources, set them in ``net``, return the metrics.

    ``validation_logits`` must be ``net``'s uncalibrated logits of
    ``validation`` (a `TrainingSet`), computed with the weights that will be stored.
    """
    temperature, bias = fit_calibration(validation_logits, validation.labels)
    net.temperature.fill_(temperature)
    net.calibration_bias.fill_(bias)
    p_star = 1 / (1 + np.exp(-(validation_logits / temperature + bias)))
    return validation_metrics(p_star, validation.labels, validation.magnitude)


def validation_metrics(p_star, labels, magnitude):
    """Recalls, accuracy and expected calibration error of calibrated probabilities."""
    predicted_star = p_star >= 0.5
    ece = expected_calibration_error(Table({"p_star": p_star, "label": labels.astype(bool)}))
    metrics = {
        "n_sources": len(labels),
        "accuracy": float(np.mean(predicted_star == labels.astype(bool))),
        "star_recall": recall(predicted_star, labels, 1),
        "galaxy_recall": recall(predicted_star, labels, 0),
        "expected_calibration_error": float(ece),
    }
    bright = magnitude < 25
    if bright.any():
        metrics["star_recall_r_lt_25"] = recall(predicted_star[bright], labels[bright], 1)
        metrics["galaxy_recall_r_lt_25"] = recall(predicted_star[bright], labels[bright], 0)
    return metrics


def weighted_bce(logits, labels):
    """Class-balanced binary cross-entropy (the training loss) on numpy arrays."""
    labels = labels.astype(np.float64)
    logits = logits.astype(np.float64)
    per_source = np.logaddexp(0, logits) - labels * logits
    star = labels == 1
    return float(0.5 * per_source[star].mean() + 0.5 * per_source[~star].mean())


def recall(predicted_star, labels, cls):
    """Fraction of the sources of class ``cls`` (1 star, 0 galaxy) predicted as that class (NaN if none)."""
    truth = labels == cls
    if not truth.any():
        return float("nan")
    return float(np.mean(predicted_star[truth] == bool(cls)))
