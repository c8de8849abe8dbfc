"""What the benchmark scripts share, so that each measures the same way.

Sections, in the order a script meets them:

* where things are (`REPOSITORY`, `RESULTS_DIR`, `DOCS_DIR`, `STATIC_DIR`);
* prerequisites: `require_program` and `require_module` stop a script with
  a message that says what to install (`MissingPrerequisite`); no script
  installs anything itself;
* the machine and timing: `machine_description`, `Stopwatch`;
* weights: `model_weights` (the bundled model, also from a checkout that
  was never installed);
* synthetic noise fields with a CSST WCS: `field_wcs`, `write_noise_field`,
  `random_positions`;
* simulated skies and the held-out evaluation: `simulated_sky`,
  `classify_simulation`, `summarise`, `print_summary` (the acceptance
  figures of ``docs/model_card.md``);
* point-source photometry with the simulator's exact PSF: `band_psf`,
  `psf_stamps`, `PointSourceNoise`, `forced_patches`, `forced_psf_fluxes`
  (the ideal classifier of ``colour_limit`` and the probes of
  ``colour_probe``);
* results: `write_json`, `module_command`.

Only the public faces of `astro_stargal` are used.
"""

import importlib
import itertools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from astro_stargal import SourceFlag, classify_sources, load_model
from astro_stargal.evaluation import expected_calibration_error, roc_auc
from astro_stargal.instrument import CSST_BANDS, DARK_CURRENT, PIXEL_SCALE, READ_NOISE, band_order
from astro_stargal.models import bundled_model
from astro_stargal.simulate import build_band_psf, import_galsim, make_gsparams, simulate_tiles
from astro_stargal.training import labelled_fields

# --------------------------------------------------------------------------
# Where things are
# --------------------------------------------------------------------------

#: The repository root (the folder that holds ``benchmarks/`` and ``docs/``).
REPOSITORY = Path(__file__).resolve().parents[1]

#: Committed results that the documentation quotes.
RESULTS_DIR = REPOSITORY / "benchmarks" / "results"

DOCS_DIR = REPOSITORY / "docs"

#: The figures the documentation shows (made by ``python -m benchmarks.make_docs_figures``).
STATIC_DIR = DOCS_DIR / "_static"

# --------------------------------------------------------------------------
# Prerequisites
# --------------------------------------------------------------------------


class MissingPrerequisite(SystemExit):
    """A program or package a benchmark needs is missing; the message says how to install it.

    A `SystemExit`, so that a script run from the command line stops with the
    message alone rather than a traceback.
    """


def require_program(names, install_hint):
    """The path of the first of ``names`` found on the PATH; `MissingPrerequisite` if none is."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    msg = f"none of {list(names)} is on the PATH; install it first ({install_hint})"
    raise MissingPrerequisite(msg)


def require_module(name, install_hint):
    """Import and return the module ``name``; `MissingPrerequisite` if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        msg = f"this benchmark needs the Python package {name!r} ({error}); install it first ({install_hint})"
        raise MissingPrerequisite(msg) from error


# --------------------------------------------------------------------------
# The machine and timing
# --------------------------------------------------------------------------


def machine_description():
    """``'x86_64, 2 cores'``: the machine to state with every figure (cores this process may use)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS or Windows
        cores = os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {cores} cores"


class Stopwatch:
    """The wall time of a ``with`` block, in ``seconds``; on a GPU, queued work is waited for at both ends.

    >>> with Stopwatch() as watch:
    ...     total = sum(range(1000))
    >>> watch.seconds > 0
    True
    """

    def __init__(self, device=None):
        self.device = device
        self.seconds = None
        self._started = None

    def __enter__(self):
        self._wait_for_device()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exception):
        self._wait_for_device()
        self.seconds = time.perf_counter() - self._started
        return False

    def _wait_for_device(self):
        # CUDA calls return before the GPU has finished; without this a timing misses the work.
        if self.device is not None and self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------


def model_weights(weights=None):
    """``weights``, or the bundled model's directory when it is None.

    `astro_stargal.load_model` finds the bundled model through its entry point,
    which exists only once the package is installed; `bundled_model` also
    finds ``weights/`` in a plain checkout, where the benchmarks run.
    """
    return bundled_model() if weights is None else weights


# --------------------------------------------------------------------------
# Synthetic noise fields
# --------------------------------------------------------------------------


def field_wcs(size):
    """A TAN WCS for a ``size``-square field at the CSST pixel scale, centred on (150.1, 2.2) deg."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    wcs.wcs.cdelt = [-PIXEL_SCALE / 3600.0, PIXEL_SCALE / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


def write_noise_field(directory, size, *, seed=0):
    """Write ``{band}.fits`` unit Gaussian noise images with `field_wcs` and ``MAGZERO``; return band -> path.

    Images already in ``directory`` are reused, so that a field written once
    serves several runs. The images hold no sources: they measure the cost of
    classification, not its accuracy.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    header = field_wcs(size).to_header()
    header["MAGZERO"] = 25.0
    paths = {}
    for band in band_order():
        path = directory / f"{band}.fits"
        if not path.exists():
            data = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
            fits.PrimaryHDU(data, header=header).writeto(path)
        paths[band] = str(path)
    return paths


def random_positions(wcs, size, n_sources, rng):
    """A table of ``n_sources`` uniformly random ``ra``/``dec`` (deg) on a ``size``-square field."""
    x = rng.uniform(0, size - 1, n_sources)
    y = rng.uniform(0, size - 1, n_sources)
    sky = wcs.pixel_to_world(x, y)
    return Table({"ra": sky.ra.deg, "dec": sky.dec.deg})


# --------------------------------------------------------------------------
# Simulated skies and the held-out evaluation
# --------------------------------------------------------------------------

#: The acceptance figures are for sources brighter than this true r magnitude.
ACCEPTANCE_R_LIMIT = 25.0

#: Galaxies with a true half-light radius below this (arcsec) are smaller than the PSF FWHM.
RESOLVED_RADIUS = 0.1

#: Edges of the r-magnitude bins of the per-bin recalls.
MAGNITUDE_BINS = (17, 19, 20, 21, 22, 23, 24, 25, 26)

#: Truth columns kept beside the classifier's columns.
TRUTH_COLUMNS = ("id", "tile", "ra", "dec", "label", "mag_r", "redshift", "half_light_radius")


def point_like(table):
    """True for true stars and QSOs: what ``p_star`` and a star/galaxy cut call point-like."""
    return np.isin(np.char.lower(np.asarray(table["label"]).astype(str)), ["star", "qso"])


def simulated_sky(directory, *, tiles, size, seed, n_jobs=1, **kwargs):
    """The labelled fields of a simulated sky, rendered into ``directory`` unless it already holds one.

    ``kwargs`` go to `astro_stargal.simulate.simulate_tiles`. An existing sky
    is reused as it is, so name ``directory`` after the parameters.
    """
    directory = Path(directory)
    if not (directory / "truth.ecsv").exists():
        print(f"simulating {tiles} tile(s) of {size} px, seed {seed}, into {directory}", flush=True)
        simulate_tiles(directory, tiles, size=size, seed=seed, n_jobs=n_jobs, **kwargs)
    return labelled_fields(directory)


def classify_simulation(sky_dir, *, weights=None, device=None):
    """Classify every tile of a simulated sky; return the truth joined with the classifier's columns.

    ``weights`` is anything `astro_stargal.load_model` takes (a loaded model
    too); the classification time is in ``meta['seconds']``.
    """
    model = load_model(model_weights(weights), device=device)
    tables = []
    with Stopwatch() as watch:
        for field in labelled_fields(Path(sky_dir)):
            truth = field.table.copy()
            truth.keep_columns([name for name in truth.colnames if name in TRUTH_COLUMNS])
            tables.append(classify_sources(truth, field.images, weights=model, device=device, progress=False))
    result = vstack(tables)
    result.meta["seconds"] = watch.seconds
    return result


def _recall(table, label):
    truth = table["label"] == label
    if not truth.any():
        return float("nan"), 0
    hits = table["sg_class"][truth] == label
    return float(np.mean(np.asarray(hits.filled(False) if hasattr(hits, "filled") else hits))), int(
        truth.sum()
    )


def summarise(result):
    """Acceptance figures and per-bin recalls of a table from `classify_simulation` (a JSON-ready dict)."""
    classified = result[np.isfinite(result["p_star"])]
    bright = classified[classified["mag_r"] < ACCEPTANCE_R_LIMIT]
    summary = {
        "n_sources": len(result),
        "n_unclassified": int(len(result) - len(classified)),
        "seconds": result.meta.get("seconds"),
    }
    unblended = bright[(np.asarray(bright["sg_flags"]) & SourceFlag.BLENDED) == 0]
    summary["blended_fraction_r_lt_25"] = 1 - len(unblended) / max(len(bright), 1)
    for name, subset in (("all", classified), ("r_lt_25", bright), ("unblended_r_lt_25", unblended)):
        for label in ("star", "galaxy"):
            recall, count = _recall(subset, label)
            summary[f"{label}_recall_{name}"] = recall
            summary[f"n_{label}_{name}"] = count
    galaxies = bright[bright["label"] == "galaxy"]
    resolved = galaxies[galaxies["half_light_radius"] >= RESOLVED_RADIUS]
    summary["galaxy_recall_resolved_r_lt_25"], summary["n_galaxy_resolved_r_lt_25"] = _recall(
        resolved, "galaxy"
    )
    summary["galaxy_errors_r_lt_25"] = int((galaxies["sg_class"] == "star").sum())
    summary["galaxy_errors_below_psf_r_lt_25"] = int(
        ((galaxies["sg_class"] == "star") & (galaxies["half_light_radius"] < RESOLVED_RADIUS)).sum()
    )
    high_z = bright[(bright["label"] == "galaxy") & (bright["redshift"] > 1.5)]
    summary["galaxy_recall_z_gt_1.5_r_lt_25"], summary["n_galaxy_z_gt_1.5_r_lt_25"] = _recall(
        high_z, "galaxy"
    )
    summary["expected_calibration_error"] = expected_calibration_error(classified)
    summary["roc_auc"] = roc_auc(classified)
    bins = []
    for low, high in itertools.pairwise(MAGNITUDE_BINS):
        in_bin = classified[(classified["mag_r"] >= low) & (classified["mag_r"] < high)]
        star_recall, n_star = _recall(in_bin, "star")
        galaxy_recall, n_galaxy = _recall(in_bin, "galaxy")
        bins.append(
            {
                "r_min": low,
                "r_max": high,
                "n_star": n_star,
                "star_recall": star_recall,
                "n_galaxy": n_galaxy,
                "galaxy_recall": galaxy_recall,
            }
        )
    summary["per_magnitude_bin"] = bins
    return summary


def print_summary(summary, title):
    """Print a `summarise` dict as the lines ``evaluate_model`` shows."""
    print(f"== {title}: {summary['n_sources']} sources, {summary['n_unclassified']} unclassified")
    print(
        f"r < 25: star recall {summary['star_recall_r_lt_25']:.4%} (n={summary['n_star_r_lt_25']}), "
        f"galaxy recall {summary['galaxy_recall_r_lt_25']:.4%} (n={summary['n_galaxy_r_lt_25']}), "
        f"galaxies z > 1.5: {summary['galaxy_recall_z_gt_1.5_r_lt_25']:.4%} (n={summary['n_galaxy_z_gt_1.5_r_lt_25']})"
    )
    print(
        f"r < 25 without the BLENDED flag ({summary['blended_fraction_r_lt_25']:.1%} have it): "
        f"star recall {summary['star_recall_unblended_r_lt_25']:.4%} (n={summary['n_star_unblended_r_lt_25']}), "
        f"galaxy recall {summary['galaxy_recall_unblended_r_lt_25']:.4%} (n={summary['n_galaxy_unblended_r_lt_25']})"
    )
    print(
        f"galaxy errors at r < 25: {summary['galaxy_errors_r_lt_25']}, of which "
        f'{summary["galaxy_errors_below_psf_r_lt_25"]} have a half-light radius < {RESOLVED_RADIUS}"; '
        f'recall of galaxies with radius >= {RESOLVED_RADIUS}": {summary["galaxy_recall_resolved_r_lt_25"]:.4%} '
        f"(n={summary['n_galaxy_resolved_r_lt_25']})"
    )
    print(
        f"all: star recall {summary['star_recall_all']:.4%}, galaxy recall {summary['galaxy_recall_all']:.4%}, ECE {summary['expected_calibration_error']:.4f}, AUC {summary['roc_auc']:.5f}"
    )
    print(f"{'r bin':>8} {'n_star':>7} {'star recall':>12} {'n_gal':>7} {'gal recall':>11}")
    for row in summary["per_magnitude_bin"]:
        print(
            f"{row['r_min']:>3}-{row['r_max']:<4} {row['n_star']:>7} {row['star_recall']:>12.4%} {row['n_galaxy']:>7} {row['galaxy_recall']:>11.4%}"
        )


# --------------------------------------------------------------------------
# Point-source photometry with the simulator's exact PSF
# --------------------------------------------------------------------------

#: Side in pixels of the forced PSF fit, and sub-pixel steps of its PSF table.
FIT_SIZE = 15
SUBPIXEL_STEPS = 8


def band_psf(band, conditions):
    """The simulator's PSF of ``band``: ``.effective`` (with the pixel, unit flux) and ``.fwhm`` (arcsec)."""
    galsim = import_galsim()
    return build_band_psf(galsim, band, conditions, make_gsparams(galsim))


def psf_stamps(profile, size=FIT_SIZE, steps=SUBPIXEL_STEPS):
    """``stamps[j, i]``: the unit-flux PSF on a ``size``-square stamp, offset by ``(i, j) / steps - 1/2`` px."""
    offsets = (np.arange(steps) + 0.5) / steps - 0.5
    return np.array(
        [
            [
                profile.drawImage(
                    nx=size, ny=size, scale=PIXEL_SCALE, method="no_pixel", offset=(dx, dy)
                ).array
                for dx in offsets
            ]
            for dy in offsets
        ]
    )


def psf_sums(stamps):
    """``(sum p^2, sum p^3)`` of the unit-flux pixel PSF, averaged over sub-pixel positions."""
    return (stamps**2).sum(axis=(2, 3)).mean(), (stamps**3).sum(axis=(2, 3)).mean()


class PointSourceNoise:
    """Flux errors (e-/s) of PSF-fit photometry of a point source in each band, and the PSF tables."""

    def __init__(self, conditions):
        self.bands = band_order()
        self.stamps = {band: psf_stamps(band_psf(band, conditions).effective) for band in self.bands}
        sums = np.array([psf_sums(self.stamps[band]) for band in self.bands])
        self.sum_p2, self.sum_p3 = sums[:, 0], sums[:, 1]
        props = [CSST_BANDS[band] for band in self.bands]
        self.exptime = np.array([p.exptime for p in props])
        background = np.array(
            [
                (p.sky_rate * conditions.sky_scale[b] + DARK_CURRENT)
                for p, b in zip(props, self.bands, strict=True)
            ]
        )
        read = np.array([READ_NOISE**2 * p.n_visits for p in props])
        # var(F) = sum p^2 var_i / (sum p^2)^2 with var_i = (B + F p_i) / t + RN^2 n / t^2.
        self.floor = (background / self.exptime + read / self.exptime**2) / self.sum_p2
        self.source = self.sum_p3 / (self.exptime * self.sum_p2**2)

    def sigma(self, flux):
        """The flux error of a point source of ``flux`` (e-/s, one column per band)."""
        return np.sqrt(self.floor + np.clip(flux, 0.0, None) * self.source)


def forced_patches(sky, table, bands):
    """Yield ``(band index, rows, jy, jx, patches)``: pixels around each row's true position.

    ``patches`` are the ``FIT_SIZE``-square cut-outs of the sky's images around
    the rows (of ``table``) that are at least half a box from the edge, and
    ``(jy, jx)`` index the tabulated PSF nearest to each sub-pixel offset
    (`psf_stamps`). Neighbours are not modelled: a blended source's patch
    holds part of its neighbour.
    """
    half = FIT_SIZE // 2
    steps = np.arange(-half, half + 1)
    tiles = np.asarray(table["tile"])
    for tile in np.unique(tiles):
        rows = np.flatnonzero(tiles == tile)
        x, y = np.asarray(table["x"])[rows], np.asarray(table["y"])[rows]
        ix, iy = np.round(x).astype(int), np.round(y).astype(int)
        jx = np.clip(((x - ix + 0.5) * SUBPIXEL_STEPS).astype(int), 0, SUBPIXEL_STEPS - 1)
        jy = np.clip(((y - iy + 0.5) * SUBPIXEL_STEPS).astype(int), 0, SUBPIXEL_STEPS - 1)
        for index, band in enumerate(bands):
            data = fits.getdata(Path(sky) / f"tile{tile}_{band}.fits")
            inside = (ix >= half) & (iy >= half) & (ix < data.shape[1] - half) & (iy < data.shape[0] - half)
            patches = data[iy[inside, None, None] + steps[:, None], ix[inside, None, None] + steps]
            yield index, rows[inside], jy[inside], jx[inside], patches


def forced_psf_fluxes(sky, table, noise):
    """PSF-fit fluxes (e-/s) of the ``table`` rows at their true positions (NaN near the edges)."""
    result = np.full((len(table), len(noise.bands)), np.nan)
    for index, rows, jy, jx, patches in forced_patches(sky, table, noise.bands):
        psf = noise.stamps[noise.bands[index]][jy, jx]
        result[rows, index] = (psf * patches).sum(axis=(1, 2)) / (psf**2).sum(axis=(1, 2))
    return result


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


def write_json(path, data):
    """Write ``data`` as indented JSON to ``path`` (its folder created if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def module_command(module_name, *arguments):
    """The command line that runs ``python -m module_name arguments`` with this interpreter.

    A child started this way in the same folder and environment finds the
    ``benchmarks`` package exactly as its parent did.
    """
    return [sys.executable, "-m", module_name, *(str(argument) for argument in arguments)]
