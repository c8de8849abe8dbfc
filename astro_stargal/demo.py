"""The small simulated CSST field bundled with the package: classify it, or write it out to try the examples.

The field (``astro_stargal/data/demo_field.fits``: seven tile-compressed
image extensions named NUV, u, g, r, i, z, y), its truth table
(``demo_truth.ecsv``) and each band's PSF (``demo_psf.fits``: the field is
too small to hold the eight bright isolated stars per band that measuring
a PSF needs, so it comes with its PSF as survey images come with a PSF
model) come from `astro_stargal.simulate.make_demo_data`. `run_demo`
classifies it and draws the result; `write_demo_files` writes it as the
files a user starts from (one FITS image and one PSF file per band and a
source table), on which the examples of the README and the documentation
run.
"""

import importlib.resources
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .instrument import PIXEL_SCALE, band_order
from .psf import read_psf_image

__all__ = [
    "DEMO_FIGURE",
    "DEMO_IMAGES",
    "DEMO_PSF",
    "DEMO_SOURCES",
    "DEMO_SOURCE_COLUMNS",
    "DEMO_TABLE",
    "DEMO_TRUTH",
    "run_demo",
    "write_demo_files",
]

#: Bundled files, in the package ``astro_stargal.data``.
DEMO_IMAGES = "demo_field.fits"
DEMO_TRUTH = "demo_truth.ecsv"
DEMO_PSF = "demo_psf.fits"

#: Files written by `run_demo`.
DEMO_TABLE = "demo_classified.ecsv"
DEMO_FIGURE = "demo_field.png"

#: The source table written by `write_demo_files` (the images are ``{band}.fits``, their PSFs
#: ``{band}.psf.fits``).
DEMO_SOURCES = "sources.ecsv"

#: Its columns: an id and the sky position, as in a survey catalog, plus the simulation's truth
#: (``label``, ``mag_r``) for ``astro-stargal evaluate``.
DEMO_SOURCE_COLUMNS = ("id", "ra", "dec", "mag_r", "label")


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
    # Imported here, so that writing the demo files needs neither PyTorch nor the network.
    from .classify import classify_sources

    output_dir = Path(output_dir)
    with ExitStack() as stack:
        image_path, truth_path, psf_path = _bundled_files(stack)
        images = {band: f"{image_path}[{band}]" for band in band_order()}
        truth = Table.read(truth_path)
        psf = {band: read_psf_image(psf_path, extension=band) for band in band_order()}
        classified = classify_sources(truth, images, weights=weights, device=device, psf=psf)
        output_dir.mkdir(parents=True, exist_ok=True)
        table_path = output_dir / DEMO_TABLE
        classified.write(table_path, overwrite=True)
        figure_path = output_dir / DEMO_FIGURE
        _demo_figure(images, classified, figure_path)
    return table_path, figure_path, _summary(classified)


def write_demo_files(directory, *, overwrite=False):
    """Write the bundled demo field as one FITS image per band and a source table.

    These are the files that the examples of the README and of the
    documentation use, in the form a user's own data take: ``NUV.fits``,
    ``u.fits``, ... ``y.fits`` (uncompressed, with the WCS, ``BAND`` and the
    ``MAGZERO`` zero point in the header), each band's PSF ``NUV.psf.fits``
    ... ``y.psf.fits`` (an image 4 times oversampled, ``OVERSAMP = 4``, as
    `~astro_stargal.psf.read_psf_file` reads it) and ``sources.ecsv`` (the
    columns `DEMO_SOURCE_COLUMNS`: ``id``, ``ra``/``dec`` in degrees, and the
    simulation's truth, ``mag_r`` and ``label``).

    Parameters
    ----------
    directory : str or `~pathlib.Path`
        Created if needed.
    overwrite : bool, optional
        Replace files already there; by default they are refused.

    Returns
    -------
    sources_path : `~pathlib.Path`
        The source table.
    image_paths : dict
        Band -> `~pathlib.Path` of its image, in wavelength order (its PSF
        is beside it, ``{band}.psf.fits``).

    Raises
    ------
    FileExistsError
        If one of the files exists and ``overwrite`` is False (nothing is written then).
    FileNotFoundError
        If the bundled demo data are missing from the installation.

    Examples
    --------
    >>> import tempfile
    >>> sources_path, image_paths = write_demo_files(tempfile.mkdtemp())
    >>> sources_path.name, sorted(path.name for path in image_paths.values())[:3]
    ('sources.ecsv', ['NUV.fits', 'g.fits', 'i.fits'])
    """
    directory = Path(directory)
    sources_path = directory / DEMO_SOURCES
    image_paths = {band: directory / f"{band}.fits" for band in band_order()}
    psf_paths = {band: directory / f"{band}.psf.fits" for band in band_order()}
    existing = [
        str(path) for path in (sources_path, *image_paths.values(), *psf_paths.values()) if path.exists()
    ]
    if existing and not overwrite:
        msg = f"{existing} already exist; pass overwrite=True to replace them"
        raise FileExistsError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        image_path, truth_path, psf_path = _bundled_files(stack)
        sources = Table.read(truth_path)[list(DEMO_SOURCE_COLUMNS)]
        sources.meta = {"comments": ["The bundled astro_stargal demo field; mag_r and label are its truth."]}
        sources.write(sources_path, overwrite=True)
        with fits.open(image_path) as bundled:
            for band, path in image_paths.items():
                compressed = bundled[band]
                fits.PrimaryHDU(compressed.data, header=compressed.header).writeto(path, overwrite=True)
        with fits.open(psf_path) as bundled:
            for band, path in psf_paths.items():
                compressed = bundled[band]
                fits.PrimaryHDU(compressed.data, header=compressed.header).writeto(path, overwrite=True)
    return sources_path, image_paths


def _bundled_files(stack):
    """Paths of the bundled images, truth and PSFs, kept valid while ``stack`` is open."""
    data = importlib.resources.files("astro_stargal.data")
    paths = [
        stack.enter_context(importlib.resources.as_file(data / name))
        for name in (DEMO_IMAGES, DEMO_TRUTH, DEMO_PSF)
    ]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        msg = (
            f"the bundled demo data {missing} are missing from {paths[0].parent}; "
            "regenerate them with astro_stargal.simulate.make_demo_data()"
        )
        raise FileNotFoundError(msg)
    return paths


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
    from .evaluation import purity_completeness

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
