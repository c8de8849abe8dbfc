"""Classify the small simulated CSST field bundled with the package, and show the result.

The field (``astro_stargal/data/demo_field.fits``: seven tile-compressed
image extensions named NUV, u, g, r, i, z, y) and its truth table
(``demo_truth.ecsv``) come from `astro_stargal.simulate.make_demo_data`.
"""

import importlib.resources
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from astropy.table import Table

from .classify import classify_sources
from .evaluation import purity_completeness
from .instrument import PIXEL_SCALE, band_order

__all__ = ["DEMO_FIGURE", "DEMO_IMAGES", "DEMO_TABLE", "DEMO_TRUTH", "run_demo"]

#: Bundled files, in the package ``astro_stargal.data``.
DEMO_IMAGES = "demo_field.fits"
DEMO_TRUTH = "demo_truth.ecsv"

#: Files written by `run_demo`.
DEMO_TABLE = "demo_classified.ecsv"
DEMO_FIGURE = "demo_field.png"


def run_demo(output_dir, *, device=None, weights=None):
    """Classify the bundled example field, then write the table, a figure and a summary.

    Parameters
    ----------
    output_dir : str or `~pathlib.Path`
        Created if needed; existing demo outputs are replaced.
    device : str, optional
        See `~astro_stargal.classify_sources`.
    weights : str, `~pathlib.Path` or `~astro_stargal.models.LoadedModel`, optional
        The model (default the bundled one); see `~astro_stargal.classify_sources`.

    Returns
    -------
    table_path : `~pathlib.Path`
        ``demo_classified.ecsv``: the truth table with ``p_star``,
        ``sg_class`` and ``sg_flags`` added.
    figure_path : `~pathlib.Path`
        ``demo_field.png``: the field with the sources coloured by ``p_star``,
        and purity/completeness against r magnitude.
    summary : str
        Counts of stars and galaxies found and the accuracy against the truth.

    Raises
    ------
    FileNotFoundError
        If the bundled demo data are missing from the installation.

    Examples
    --------
    >>> table_path, figure_path, summary = run_demo("demo_output")  # doctest: +SKIP
    >>> print(summary)  # doctest: +SKIP
    """
    output_dir = Path(output_dir)
    data = importlib.resources.files("astro_stargal.data")
    with ExitStack() as stack:
        image_path = stack.enter_context(importlib.resources.as_file(data / DEMO_IMAGES))
        truth_path = stack.enter_context(importlib.resources.as_file(data / DEMO_TRUTH))
        missing = [path.name for path in (image_path, truth_path) if not path.is_file()]
        if missing:
            msg = (
                f"the bundled demo data {missing} are missing from {image_path.parent}; "
                "regenerate them with astro_stargal.simulate.make_demo_data()"
            )
            raise FileNotFoundError(msg)
        images = {band: f"{image_path}[{band}]" for band in band_order()}
        truth = Table.read(truth_path)
        classified = classify_sources(truth, images, weights=weights, device=device)
        output_dir.mkdir(parents=True, exist_ok=True)
        table_path = output_dir / DEMO_TABLE
        classified.write(table_path, overwrite=True)
        figure_path = output_dir / DEMO_FIGURE
        _demo_figure(images, classified, figure_path)
    return table_path, figure_path, _summary(classified)


def _demo_figure(images, classified, path):
    from .evaluation import plot_classified_field, plot_purity_completeness
    from .evaluation._plots import import_pyplot

    plt = import_pyplot()
    figure, (field_ax, rates_ax) = plt.subplots(
        1, 2, figsize=(15.0, 6.5), layout="constrained", gridspec_kw={"width_ratios": [1.15, 1.0]}
    )
    plot_classified_field(images, classified, truth_column="label", ax=field_ax)
    plot_purity_completeness(classified, truth_column="label", mag_column="mag_r", ax=rates_ax)
    figure.suptitle(f'astro_stargal demo: simulated CSST field ({PIXEL_SCALE}"/pixel)')
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _summary(classified):
    overall = purity_completeness(classified, truth_column="label")[0]
    n_stars = int(np.sum(classified["sg_class"] == "star"))
    n_galaxies = int(np.sum(classified["sg_class"] == "galaxy"))
    n_classified = overall["n_true_star"] + overall["n_true_galaxy"]
    correct = overall["n_correct_star"] + overall["n_correct_galaxy"]
    accuracy = correct / n_classified if n_classified else float("nan")
    return (
        f"demo field: {len(classified)} sources -> {n_stars} stars, {n_galaxies} galaxies, "
        f"{overall['n_unclassified']} unclassified\n"
        f"against the truth: accuracy {_percent(accuracy)} ({correct}/{n_classified}); "
        f"stars: purity {_percent(overall['star_purity'])}, "
        f"completeness {_percent(overall['star_completeness'])}; "
        f"galaxies: purity {_percent(overall['galaxy_purity'])}, "
        f"completeness {_percent(overall['galaxy_completeness'])}"
    )


def _percent(fraction):
    return "n/a" if not np.isfinite(fraction) else f"{fraction:.1%}"
