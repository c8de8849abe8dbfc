"""Do the catalog features separate compact galaxies from stars? A small probe, off the bundled model.

Nearly all the bundled model's galaxy errors at r < 25 are galaxies smaller
than the PSF (``docs/model_card.md``), whose only difference from a star is
their colours. This script asks whether the forced-photometry features that
the network's catalog branch reads already hold that difference:

1. Prepares a held-out sky with the inference routines
   (`astro_stargal.training.build_training_set`, cached beside the sky).
2. Trains a small multilayer perceptron on the per-band features of the
   first half of its tiles (all magnitudes, class-balanced loss), with and
   without explicit colours (differences of adjacent-band aperture magnitudes).
3. Tests it on the other half at r < 25: star recall, galaxy recall, and the
   recall of galaxies with a true half-light radius below 0.1".
   On a nominal sky (``--exact-psf``), also with what the simulator's exact
   PSF gives, the best a field PSF model could: PSF-fit asinh magnitudes
   and their colours (`benchmarks.common.forced_psf_fluxes`), and SExtractor's
   ``SPREAD_MODEL`` per band (Desai et al. 2012). With ``--learning-curve``,
   the colours probe is also trained on fewer tiles: does more data help?
4. Prints the bundled model's figures on the same sources beside it (from the
   ECSV that ``python -m benchmarks.evaluate_model --table`` wrote), and how far each missed
   compact galaxy's true colours lie from the nearest star's.

Usage::

    python -m benchmarks.evaluate_model SKY --table SKY_CLASSIFIED.ecsv
    python -m benchmarks.colour_probe SKY SKY_CLASSIFIED.ecsv
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table
from scipy.spatial import cKDTree

from astro_stargal.instrument import ab_zeropoint, band_order
from astro_stargal.simulate import FieldConditions, import_galsim, make_gsparams
from astro_stargal.training import build_training_set, labelled_fields

from .common import (
    ACCEPTANCE_R_LIMIT,
    RESOLVED_RADIUS,
    PointSourceNoise,
    band_psf,
    forced_patches,
    forced_psf_fluxes,
    psf_stamps,
)


def features(sky_dir):
    data = build_training_set(
        labelled_fields(Path(sky_dir)),
        bands=list(band_order()),
        stamp_size=32,
        cache=Path(sky_dir) / "probe_features.npz",
        n_jobs=2,
        progress=False,
    )
    return data.catalog, data.labels, data.magnitude, data.field


def spread_model(sky_dir, truth):
    """SExtractor's SPREAD_MODEL of every row in every band, with the nominal sky's exact PSF.

    ``(G.d) / (P.d) - (G.P) / (P.P)`` over a box around the true position,
    where ``d`` are the pixels, ``P`` the PSF and ``G`` the PSF convolved
    with an exponential of scale length FWHM/16; 0 for stars, positive for
    extended sources. Rows near the edges, or with no flux, get 0.
    """
    galsim = import_galsim()
    gsparams = make_gsparams(galsim)
    conditions = FieldConditions()
    bands = band_order()
    templates = {}
    for band in bands:
        psf = band_psf(band, conditions)
        widened = galsim.Convolve(
            galsim.Exponential(scale_radius=psf.fwhm / 16, gsparams=gsparams),
            psf.effective,
            gsparams=gsparams,
        )
        templates[band] = (psf_stamps(psf.effective), psf_stamps(widened))
    result = np.zeros((len(truth), len(bands)), dtype=np.float32)
    for index, rows, jy, jx, patches in forced_patches(Path(sky_dir), truth, bands):
        point, extended = (table[jy, jx] for table in templates[bands[index]])
        with np.errstate(divide="ignore", invalid="ignore"):
            value = dot(extended, patches) / dot(point, patches) - dot(extended, point) / dot(point, point)
        result[rows, index] = np.nan_to_num(np.clip(value, -0.1, 0.1))
    return result


def psf_fit_magnitudes(sky_dir, truth):
    """Asinh AB magnitudes (softening: the flux error) of PSF fits at the true positions, exact PSF."""
    noise = PointSourceNoise(FieldConditions())
    flux = np.nan_to_num(forced_psf_fluxes(Path(sky_dir), truth, noise))
    error = noise.sigma(flux)
    zero_points = np.array([ab_zeropoint(band) for band in noise.bands])
    return (zero_points - 2.5 / np.log(10) * (np.arcsinh(flux / (2 * error)) + np.log(error))).astype(
        np.float32
    )


def dot(a, b):
    """Pixel sums of the products of two stacks of images."""
    return (a * b).sum(axis=(1, 2))


def design(catalog, colours):
    """Flattened per-band features (with the present/missing marker), plus adjacent-band colours."""
    columns = [catalog.reshape(len(catalog), -1)]
    if colours:
        columns.append(np.diff(catalog[:, :, 0], axis=1))
    return np.concatenate(columns, axis=1).astype(np.float32)


def fit_probe(x, labels, *, seed=0, epochs=40):
    torch.manual_seed(seed)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    inputs = torch.from_numpy((x - mean) / std)
    targets = torch.from_numpy(labels.astype(np.float32))
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.GELU(),
        torch.nn.Linear(256, 256),
        torch.nn.GELU(),
        torch.nn.Linear(256, 1),
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    weight = torch.tensor([len(labels) / (2 * (labels == 0).sum()), len(labels) / (2 * labels.sum())])
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(inputs), generator=generator).split(512):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(inputs[rows]).squeeze(1), targets[rows], weight=weight[targets[rows].long()]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return lambda z: net(torch.from_numpy((z - mean) / std)).squeeze(1).detach().numpy()


def report(name, is_star_predicted, labels, bright, compact):
    star, galaxy = bright & (labels == 1), bright & (labels == 0)
    print(
        f"{name:<40} star recall {np.mean(is_star_predicted[star]):.4%}  galaxy recall "
        f"{np.mean(~is_star_predicted[galaxy]):.4%}  compact-galaxy recall "
        f"{np.mean(~is_star_predicted[galaxy & compact]):.4%} (n={int((galaxy & compact).sum())})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sky", help="a held-out simulator output directory with several tiles")
    parser.add_argument(
        "classified", help="the sky classified by the bundled model (benchmarks.evaluate_model --table)"
    )
    parser.add_argument(
        "--exact-psf",
        action="store_true",
        help="also probe with PSF-fit magnitudes and SPREAD_MODEL from the exact PSF (nominal skies only)",
    )
    parser.add_argument(
        "--learning-curve",
        action="store_true",
        help="also train the colours probe on 1/8, 1/4, 1/2 and all of its training tiles",
    )
    args = parser.parse_args(argv)
    catalog, labels, magnitude, field = features(args.sky)
    truth = Table.read(Path(args.sky) / "truth.ecsv")
    classified = Table.read(args.classified)
    if not np.allclose(np.asarray(truth["mag_r"]), magnitude, equal_nan=True):
        sys.exit("the prepared rows do not follow the truth table")
    test = field >= (field.max() + 1) // 2
    bright = test & (magnitude < ACCEPTANCE_R_LIMIT)
    compact = np.asarray(truth["half_light_radius"]) < RESOLVED_RADIUS
    print(
        f"{args.sky}: probe trained on {int((~test).sum())} sources, tested on the other tiles at r < {ACCEPTANCE_R_LIMIT:g}"
    )
    report(
        "bundled model (images + catalog)", np.asarray(classified["p_star"]) >= 0.5, labels, bright, compact
    )
    variants = {"catalog probe": design(catalog, False), "catalog probe + colours": design(catalog, True)}
    if args.exact_psf:
        if "ebv" in truth.colnames:
            sys.exit(f"{args.sky} is a varied sky: its PSF changes from tile to tile")
        psf_magnitudes = psf_fit_magnitudes(args.sky, truth)
        spread = spread_model(args.sky, truth)
        variants["catalog probe + colours + PSF-fit mags"] = np.concatenate(
            [design(catalog, True), psf_magnitudes, np.diff(psf_magnitudes, axis=1)], axis=1
        )
        variants["catalog probe + colours + SPREAD_MODEL"] = np.concatenate(
            [design(catalog, True), spread], axis=1
        )
        variants["... + PSF-fit mags + SPREAD_MODEL"] = np.concatenate(
            [variants["catalog probe + colours + PSF-fit mags"], spread], axis=1
        )
    for name, x in variants.items():
        probe = fit_probe(x[~test], labels[~test])
        report(name, probe(x) > 0, labels, bright, compact)
    if args.learning_curve:
        # Fewer training tiles, the same number of optimisation steps; two seeds each.
        n_train_tiles = (field.max() + 1) // 2
        for n_tiles in (n_train_tiles // 8, n_train_tiles // 4, n_train_tiles // 2, n_train_tiles):
            rows = field < n_tiles
            for seed in (0, 1):
                probe = fit_probe(
                    variants["catalog probe + colours"][rows],
                    labels[rows],
                    seed=seed,
                    epochs=40 * n_train_tiles // n_tiles,
                )
                report(
                    f"  colours probe, {n_tiles} tiles, seed {seed}",
                    probe(variants["catalog probe + colours"]) > 0,
                    labels,
                    bright,
                    compact,
                )

    bands = band_order()
    mags = np.column_stack([np.asarray(truth[f"mag_{band}"]) for band in bands])
    colours = np.diff(mags[:, 1:], axis=1)  # u-g ... z-y (NUV is often undetected)
    stars = np.asarray(truth["label"]) == "star"
    distance, _ = cKDTree(colours[stars & (magnitude < 26)]).query(colours)
    missed = bright & compact & ~stars & (np.asarray(classified["p_star"]) >= 0.5)
    caught = bright & compact & ~stars & (np.asarray(classified["p_star"]) < 0.5)
    if not missed.any():
        print(f"the bundled model missed no compact galaxy at r < {ACCEPTANCE_R_LIMIT:g} on the test tiles")
        return
    print(
        f"true ugrizy colour distance to the nearest star: missed compact galaxies median "
        f"{np.median(distance[missed]):.2f} mag (min {distance[missed].min():.2f}), "
        f"recovered ones median {np.median(distance[caught]):.2f} mag"
    )


if __name__ == "__main__":
    main()
