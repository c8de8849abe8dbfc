"""Held-out realistic skies, the PSF sweep and position offsets: the PSF-awareness acceptance figures.

Four sections, each optional (``--sections``), all with sources of true r < 25
unless said otherwise, resolved binaries counted apart (one truth row per
component) and QSOs counted with the stars (``p_star`` means point-like; QSO
recall is also reported on its own):

``realistic``
    A held-out sky of realistic co-adds (`astro_stargal.simulate.Realism`,
    ``variation=True``: aberrated PSFs varying over each tile with r-band FWHM
    0.08-0.25", dithered and resampled exposures, defects, realistic
    populations) from seeds never used in training. Star and galaxy recall,
    the stars brighter than r = 22 with no neighbour within 1" that are
    called galaxies, ECE, and the PSF flags.
``nominal``
    The nominal held-out sky (seed 99, as in the model card), for regressions.
``sweep``
    One realistic sky rendered at r-band PSF FWHM 0.08, 0.12, 0.16, 0.20 and
    0.25" (typical aberrations): recall at r < 24 per width, and how many
    sources get ``PSF_OUT_OF_RANGE``.
``offsets``
    The nominal and realistic skies classified from positions moved by 0,
    0.037, 0.075 and 0.15" in random directions: recall at r < 25 per offset.

Skies are simulated once into ``--sky-dir`` and reused. Results go to
``benchmarks/results/realistic_sky_<label>.json``. On the 2-core CPU a sky
tile of 1024 x 1024 pixels takes about 40 s to simulate and 20 s to classify.

Example::

    python -m benchmarks.realistic_sky --weights weights/ --label bundled --tiles 8
"""

import argparse
import itertools
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table, vstack
from scipy.spatial import cKDTree

from astro_stargal import SourceFlag, classify_sources, load_model
from astro_stargal.evaluation import expected_calibration_error
from astro_stargal.simulate import AberratedPSF, Realism

from .common import (
    RESULTS_DIR,
    Stopwatch,
    machine_description,
    model_weights,
    point_like,
    simulated_sky,
    write_json,
)

#: Seeds of the held-out skies (never used to train a bundled model).
REALISTIC_SEED = 20261202
SWEEP_SEED = 20261203
NOMINAL_SEED = 99

#: r-band PSF FWHM of the sweep (arcsec).
SWEEP_FWHM = (0.08, 0.12, 0.16, 0.20, 0.25)

#: Position offsets (arcsec): 0, half a CSST pixel, one pixel, two pixels.
OFFSETS = (0.0, 0.037, 0.075, 0.15)

#: Truth columns kept beside the classifier's.
KEPT = ("id", "tile", "label", "mag_r", "half_light_radius", "x", "y", "system", "separation", "population")

#: Stars this bright, with no other source within `ISOLATION` arcsec, must all be called stars.
BRIGHT_ISOLATED_STAR_LIMIT = 22.0
ISOLATION = 1.0


def classify_sky(fields, model, *, offset=0.0, seed=0):
    """The truth of every field joined with the classifier's columns, positions moved by ``offset`` arcsec."""
    rng = np.random.default_rng(seed)
    tables = []
    for field in fields:
        truth = field.table.copy()
        truth.keep_columns([name for name in truth.colnames if name in (*KEPT, "ra", "dec")])
        if offset > 0:
            truth["ra"], truth["dec"] = _moved(truth, offset, rng)
        tables.append(classify_sources(truth, field.images, weights=model, progress=False))
    return vstack(tables)


def _moved(truth, offset, rng):
    """RA and Dec moved by ``offset`` arcsec in a random direction per source."""
    from astropy.coordinates import SkyCoord

    sky = SkyCoord(truth["ra"], truth["dec"], unit="deg")
    angle = rng.uniform(0, 2 * np.pi, len(truth))
    moved = sky.spherical_offsets_by(offset * np.sin(angle) * u.arcsec, offset * np.cos(angle) * u.arcsec)
    return moved.ra.deg, moved.dec.deg


def _isolated(result):
    """True for sources with no other truth source within `ISOLATION` arcsec in their tile."""
    isolated = np.ones(len(result), dtype=bool)
    pixels = ISOLATION / 0.074
    tiles = np.asarray(result["tile"]) if "tile" in result.colnames else np.zeros(len(result), dtype=int)
    for tile in np.unique(tiles):
        rows = np.flatnonzero(tiles == tile)
        points = np.column_stack([np.asarray(result["x"])[rows], np.asarray(result["y"])[rows]])
        counts = cKDTree(points).query_ball_point(points, pixels, return_length=True)
        isolated[rows] = counts == 1
    return isolated


def summarise(result, r_limit=25.0):
    """Recall of point sources and galaxies brighter than ``r_limit``, and what the flags say."""
    called_star = np.asarray(np.ma.filled(result["sg_class"], "")) == "star"
    classified = np.isfinite(np.asarray(result["p_star"]))
    magnitude = np.asarray(result["mag_r"])
    bright = classified & (magnitude < r_limit)
    truth_point = point_like(result)
    labels = np.char.lower(np.asarray(result["label"]).astype(str))
    flags = np.asarray(result["sg_flags"])

    def recall(selection, want_star):
        count = int(selection.sum())
        hits = int((called_star[selection] == want_star).sum())
        return {"recall": hits / count if count else float("nan"), "n": count, "missed": count - hits}

    summary = {
        f"point_like_r_lt_{r_limit:g}": recall(bright & truth_point, True),
        f"galaxy_r_lt_{r_limit:g}": recall(bright & ~truth_point, False),
        f"qso_r_lt_{r_limit:g}": recall(bright & (labels == "qso"), True),
        "n_unclassified": int((~classified).sum()),
    }
    if "separation" in result.colnames:
        separation = np.asarray(result["separation"], dtype=float)
        summary[f"resolved_binary_components_r_lt_{r_limit:g}"] = recall(bright & (separation > 0), True)
    isolated_bright = classified & truth_point & (labels == "star") & _isolated(result)
    isolated_bright &= magnitude < BRIGHT_ISOLATED_STAR_LIMIT
    summary["isolated_stars_r_lt_22"] = recall(isolated_bright, True)
    table = Table({"p_star": np.asarray(result["p_star"])[bright], "label": truth_point[bright]})
    summary[f"ece_r_lt_{r_limit:g}"] = float(expected_calibration_error(table))
    for flag in (
        SourceFlag.PSF_OUT_OF_RANGE,
        SourceFlag.PSF_UNMEASURED,
        SourceFlag.LARGE_SHIFT,
        SourceFlag.CENTROID_FAILED,
    ):
        summary[f"fraction_{flag.name}"] = float(np.mean((flags & flag) != 0))
    # A wrong answer that carries the flag was at least not confidently wrong.
    wrong = bright & (called_star != truth_point)
    flagged = (flags & SourceFlag.PSF_OUT_OF_RANGE) != 0
    summary[f"errors_r_lt_{r_limit:g}_flagged_PSF_OUT_OF_RANGE"] = {
        "n_errors": int(wrong.sum()),
        "flagged": int((wrong & flagged).sum()),
    }
    offsets = np.asarray(result["sg_offset"], dtype=float)
    summary["median_sg_offset_arcsec"] = float(np.nanmedian(offsets)) if np.isfinite(offsets).any() else None
    return summary


def realistic_sky(sky_dir, tiles, size, *, fwhm=None, seed=REALISTIC_SEED, n_jobs=1):
    """A realistic held-out sky (`variation=True`), or with ``fwhm`` one of the sweep's skies."""
    if fwhm is None:
        return simulated_sky(
            sky_dir, tiles=tiles, size=size, seed=seed, n_jobs=n_jobs, realism=Realism(), variation=True
        )
    realism = Realism(psf=AberratedPSF(r_fwhm=fwhm))
    return simulated_sky(sky_dir, tiles=tiles, size=size, seed=seed, n_jobs=n_jobs, realism=realism)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="model name or weights directory (default: the bundled model)")
    parser.add_argument("--label", default="bundled", help="name of this model in the results file")
    parser.add_argument("--tiles", type=int, default=8, help="tiles of the realistic sky")
    parser.add_argument(
        "--nominal-tiles", type=int, default=48, help="tiles of the nominal sky (the model card's 48)"
    )
    parser.add_argument("--sweep-tiles", type=int, default=3, help="tiles per width of the PSF sweep")
    parser.add_argument("--offset-tiles", type=int, default=4, help="tiles classified per offset")
    parser.add_argument("--size", type=int, default=1024, help="tile side in pixels")
    parser.add_argument("--sky-dir", default="held_out_skies", help="where the skies are simulated and kept")
    parser.add_argument("--n-jobs", type=int, default=1, help="processes simulating the skies")
    parser.add_argument("--sections", default="realistic,nominal,sweep,offsets")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    model = load_model(model_weights(args.weights), device=args.device)
    sky_dir = Path(args.sky_dir)
    results = {
        "machine": machine_description(),
        "model": model.name,
        "model_sha256": model.metadata.get("sha256"),
        "validity": model.validity,
        "size": args.size,
    }
    with Stopwatch() as watch:
        if "realistic" in sections:
            sky = realistic_sky(
                sky_dir / f"realistic_{args.size}_{args.tiles}", args.tiles, args.size, n_jobs=args.n_jobs
            )
            results["realistic"] = summarise(classify_sky(sky, model))
        if "nominal" in sections:
            sky = simulated_sky(
                sky_dir / f"nominal_{args.size}_{args.nominal_tiles}",
                tiles=args.nominal_tiles,
                size=args.size,
                seed=NOMINAL_SEED,
                n_jobs=args.n_jobs,
            )
            results["nominal"] = summarise(classify_sky(sky, model))
        if "sweep" in sections:
            results["sweep"] = {}
            for fwhm in SWEEP_FWHM:
                sky = realistic_sky(
                    sky_dir / f"sweep_{fwhm:.2f}_{args.size}_{args.sweep_tiles}",
                    args.sweep_tiles,
                    args.size,
                    fwhm=fwhm,
                    seed=SWEEP_SEED,
                    n_jobs=args.n_jobs,
                )
                results["sweep"][f"{fwhm:.2f}"] = summarise(classify_sky(sky, model), r_limit=24.0)
        if "offsets" in sections:
            results["offsets"] = {}
            for kind, offset in itertools.product(("nominal", "realistic"), OFFSETS):
                if kind == "nominal":
                    sky = simulated_sky(
                        sky_dir / f"nominal_{args.size}_{args.offset_tiles}",
                        tiles=args.offset_tiles,
                        size=args.size,
                        seed=NOMINAL_SEED,
                    )
                else:
                    sky = realistic_sky(
                        sky_dir / f"realistic_{args.size}_{args.offset_tiles}", args.offset_tiles, args.size
                    )
                summary = summarise(classify_sky(sky, model, offset=offset, seed=1))
                results["offsets"][f"{kind}_{offset:.3f}"] = summary
    results["seconds"] = watch.seconds
    path = RESULTS_DIR / f"realistic_sky_{args.label}.json"
    write_json(path, results)
    _print(results)
    print(f"wrote {path}")


def _print(results):
    for section in ("realistic", "nominal"):
        if section in results:
            summary = results[section]
            print(f"{section}: " + _line(summary, "25"))
    for fwhm, summary in results.get("sweep", {}).items():
        print(f'sweep {fwhm}": ' + _line(summary, "24"))
    for name, summary in results.get("offsets", {}).items():
        print(f'offset {name}": ' + _line(summary, "25"))


def _line(summary, limit):
    point, galaxy = summary[f"point_like_r_lt_{limit}"], summary[f"galaxy_r_lt_{limit}"]
    isolated = summary["isolated_stars_r_lt_22"]
    return (
        f"point-like {point['recall']:.4f} ({point['missed']}/{point['n']} missed), "
        f"galaxies {galaxy['recall']:.4f} ({galaxy['missed']}/{galaxy['n']}), "
        f"isolated stars r<22 missed {isolated['missed']}/{isolated['n']}, "
        f"ECE {summary[f'ece_r_lt_{limit}']:.4f}, PSF_OUT_OF_RANGE {summary['fraction_PSF_OUT_OF_RANGE']:.3f}"
    )


if __name__ == "__main__":
    main()
