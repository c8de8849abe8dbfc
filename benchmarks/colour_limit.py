"""The best any classifier can do on compact galaxies from their fluxes alone.

Nearly all the bundled model's galaxy errors at r < 25 are the simulator's
compact galaxies (half-light radius 0.02"-0.07", below the PSF): point
sources whose only difference from a star is their colours
(``docs/model_card.md``). This script computes how many of them an ideal
classifier that sees only their fluxes would miss, on the nominal CSST sky,
and sets the bundled model beside it.

The ideal classifier is generous in every respect:

* It measures each band's flux by a PSF fit with the exact pixel PSF and
  position (the minimum-variance estimate for a point source); the only
  errors are the simulator's sky, dark, read and source noise.
* It knows the simulated populations exactly: star and compact-galaxy
  fluxes are drawn with the simulator's own routines
  (`astro_stargal.simulate.draw_stars`, `~astro_stargal.simulate.draw_galaxies`)
  at the simulator's densities, many times more than in
  the test sky, and used as templates. Its posterior
  ``P(star | fluxes)`` is the template sum of the Gaussian likelihood, which
  is the Bayes posterior in the limit of many templates.
* It is told which sources are point-like (stars and compact galaxies): the
  other galaxies count as recognised by their shape.

With ``--population training`` the templates come instead from the mixture of
field conditions the bundled model was trained on (``variation=True``:
reddened and absorbed stars, other galaxy SED mixes and reddening): the ideal
classifier then knows only what training could teach, not that the test sky
is nominal. The difference between the two is the price of being robust to
populations other than the test sky's.

It calls a source a star when that posterior is at least 0.5, which
minimises the expected number of errors; each test source is observed
``--realisations`` times with fresh noise. Morphology is the only thing it
lacks, so the network can beat it only by resolving some compact galaxies.

Usage::

    python -m benchmarks.evaluate_model SKY --table SKY_CLASSIFIED.ecsv
    python -m benchmarks.colour_limit SKY SKY_CLASSIFIED.ecsv

``SKY`` must be a nominal sky (``astro-stargal simulate`` without
``--variation``): the templates are drawn for the nominal conditions.
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
from astropy.table import Table, join
from scipy.special import logsumexp

from astro_stargal.instrument import PIXEL_SCALE, ab_zeropoint, band_order
from astro_stargal.simulate import (
    DEFAULT_GALAXY_DENSITY,
    DEFAULT_STAR_DENSITY,
    FieldConditions,
    draw_field_conditions,
    draw_galaxies,
    draw_stars,
)

from .common import ACCEPTANCE_R_LIMIT, PointSourceNoise, forced_psf_fluxes

#: Templates are kept within this many magnitudes of the faintest scored source.
TEMPLATE_MARGIN = 1.5

#: Posterior thresholds at which the ideal classifier's trade-off is printed.
THRESHOLDS = (0.5, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)

#: Observations and templates are compared within this r-magnitude window (in sigma of the r flux).
WINDOW_SIGMA = 8.0


def fluxes(mags, bands):
    """True count rates (e-/s) from AB magnitudes; magnitude 40 means no flux."""
    zero_points = np.array([ab_zeropoint(band) for band in bands])
    return np.where(mags >= 39.0, 0.0, 10 ** (-0.4 * (mags - zero_points)))


def draw_templates(star_fields, galaxy_fields, population, faintest_r, seed):
    """Star and compact-galaxy fluxes drawn at the simulator's densities, per 1024^2 field.

    ``population="nominal"`` draws every field with the nominal conditions (the
    test sky's own populations); ``"training"`` draws each field's conditions as
    ``simulate_field(..., variation=True)`` does, the mixture the bundled model
    was trained on. Stars come from ``star_fields`` fields and galaxies from
    ``galaxy_fields`` (stars lie on a thin locus and need fewer templates);
    `main` corrects the prior for the difference.
    """
    rng = np.random.default_rng(seed)
    field_area = (1024 * PIXEL_SCALE / 60.0) ** 2
    r_index = band_order().index("r")
    if population == "nominal":
        groups = [(FieldConditions(), star_fields, galaxy_fields)]
    else:
        groups = [
            (draw_field_conditions(rng, True), int(field < star_fields), 1)
            for field in range(max(star_fields, galaxy_fields))
        ]
    star_flux, galaxy_flux = [], []
    for conditions, n_star_fields, n_galaxy_fields in groups:
        stars = draw_stars(
            rng, rng.poisson(DEFAULT_STAR_DENSITY * field_area * n_star_fields), conditions, rng
        )
        galaxies = draw_galaxies(
            rng, rng.poisson(DEFAULT_GALAXY_DENSITY * field_area * n_galaxy_fields), conditions
        )
        star_flux.append(fluxes(stars["mags"][stars["mags"][:, r_index] < faintest_r], band_order()))
        keep = galaxies["compact"] & (galaxies["mags"][:, r_index] < faintest_r)
        galaxy_flux.append(fluxes(galaxies["mags"][keep], band_order()))
    return np.concatenate(star_flux), np.concatenate(galaxy_flux)


def log_likelihood(observed, sigma, templates, r_index):
    """``log sum_t N(observed; t, sigma)`` for each observation (rows), in blocks sorted by r flux."""
    result = np.full(len(observed), -np.inf)
    order = np.argsort(observed[:, r_index])
    template_order = np.argsort(templates[:, r_index])
    template_r = templates[template_order, r_index]
    for block in np.array_split(order, max(1, len(order) // 512)):
        low = observed[block, r_index].min() - WINDOW_SIGMA * sigma[block, r_index].max()
        high = observed[block, r_index].max() + WINDOW_SIGMA * sigma[block, r_index].max()
        chosen = template_order[np.searchsorted(template_r, low) : np.searchsorted(template_r, high)]
        if len(chosen) == 0:
            continue
        t = templates[chosen]
        inverse_variance = 1.0 / sigma[block] ** 2
        o = observed[block]
        chi2 = (
            (o**2 * inverse_variance).sum(axis=1, keepdims=True)
            - 2.0 * (o * inverse_variance) @ t.T
            + inverse_variance @ (t**2).T
        )
        result[block] = logsumexp(-0.5 * chi2, axis=1)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sky", type=Path, help="nominal simulator output directory (truth.ecsv)")
    parser.add_argument("classified", type=Path, help="benchmarks.evaluate_model --table output for that sky")
    parser.add_argument(
        "--population",
        choices=("nominal", "training"),
        default="nominal",
        help="templates from the test sky's populations, or from the varied mixture used in training",
    )
    parser.add_argument("--star-fields", type=int, default=2000, help="1024^2 fields of star templates")
    parser.add_argument("--galaxy-fields", type=int, default=16000, help="1024^2 fields of galaxy templates")
    parser.add_argument("--realisations", type=int, default=10, help="noise realisations per test source")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    truth = Table.read(args.sky / "truth.ecsv")
    if "ebv" in truth.colnames:
        raise SystemExit(f"{args.sky} is a varied sky; this bound needs a nominal one")
    classified = Table.read(args.classified)
    classified.keep_columns(["tile", "id", "p_star", "sg_class"])
    table = join(truth, classified, keys=("tile", "id"))
    conditions = FieldConditions()
    bands = band_order()
    r_index = bands.index("r")
    noise = PointSourceNoise(conditions)

    bright = np.asarray(table["mag_r"]) < ACCEPTANCE_R_LIMIT
    is_star = np.asarray(table["label"] == "star")
    compact = np.asarray(table["compact"]) & ~is_star
    scored = bright & (is_star | compact)
    test = table[scored]
    test_star = np.asarray(test["label"] == "star")
    true_flux = fluxes(np.column_stack([np.asarray(test[f"mag_{b}"]) for b in bands]), bands)

    star_templates, galaxy_templates = draw_templates(
        args.star_fields, args.galaxy_fields, args.population, ACCEPTANCE_R_LIMIT + TEMPLATE_MARGIN, args.seed
    )
    # Stars and galaxies come from different numbers of fields: put the prior back.
    star_prior = math.log(args.galaxy_fields / args.star_fields)

    def log_posterior_ratio(observed):
        """``log P(star) - log P(compact galaxy)``; the errors are those of the observed flux."""
        sigma = noise.sigma(observed)
        log_star = log_likelihood(observed, sigma, star_templates, r_index) + star_prior
        return log_star - log_likelihood(observed, sigma, galaxy_templates, r_index)

    def wrong(log_ratio):
        return np.where(test_star, log_ratio < 0, log_ratio >= 0)

    rng = np.random.default_rng(args.seed + 1)
    sigma_true = noise.sigma(true_flux)
    log_ratios = np.array(
        [
            log_posterior_ratio(true_flux + rng.normal(size=true_flux.shape) * sigma_true)
            for _ in range(args.realisations)
        ]
    )
    missed = wrong(log_ratios).mean(axis=0)

    # The same classifier on PSF fits to the sky's own pixels: the very noise the network saw.
    measured = forced_psf_fluxes(args.sky, test, noise)
    fitted = np.isfinite(measured).all(axis=1)
    measured_ratio = np.full(len(test), np.nan)
    measured_ratio[fitted] = log_posterior_ratio(measured[fitted])
    measured_missed = wrong(measured_ratio) & fitted

    network_missed = np.asarray(test["sg_class"] != test["label"])
    n_galaxies_bright = int((bright & ~is_star).sum())
    n_compact = int((~test_star).sum())
    n_stars = int(test_star.sum())
    ideal_galaxy_misses = float(missed[~test_star].sum())
    ideal_star_misses = float(missed[test_star].sum())
    network_galaxy_misses = int(network_missed[~test_star].sum())
    network_star_misses = int(network_missed[test_star].sum())
    print(f"sky {args.sky} (nominal), true r < {ACCEPTANCE_R_LIMIT}")
    print(
        f"templates ({args.population} populations): {len(star_templates)} stars from {args.star_fields} fields, "
        f"{len(galaxy_templates)} compact galaxies from {args.galaxy_fields} (r < {ACCEPTANCE_R_LIMIT + TEMPLATE_MARGIN}); "
        f"{args.realisations} noise realisations per source"
    )
    print("PSF-fit 5-sigma point-source depth per band (sky-limited):")
    zero_points = np.array([ab_zeropoint(b) for b in bands])
    depth = zero_points - 2.5 * np.log10(5 * np.sqrt(noise.floor))
    print("  " + "  ".join(f"{b} {d:.2f}" for b, d in zip(bands, depth, strict=True)))
    print(f"{'':34s}{'ideal (fluxes only)':>22s}{'bundled network':>18s}")
    print(
        f"{'compact galaxies missed':34s}{ideal_galaxy_misses:>15.1f} / {n_compact:<5d}"
        f"{network_galaxy_misses:>11d} / {n_compact:<5d}"
    )
    print(
        f"{'compact-galaxy recall':34s}{1 - ideal_galaxy_misses / n_compact:>22.4f}"
        f"{1 - network_galaxy_misses / n_compact:>18.4f}"
    )
    print(
        f"{'stars missed (vs compact galaxies)':34s}{ideal_star_misses:>15.1f} / {n_stars:<5d}"
        f"{network_star_misses:>11d} / {n_stars:<5d}"
    )
    ideal_recall = 1 - ideal_galaxy_misses / n_galaxies_bright
    print(
        f"galaxy recall at r < {ACCEPTANCE_R_LIMIT} if every non-compact galaxy were recognised: "
        f"{ideal_recall:.4f} (ideal), {1 - network_galaxy_misses / n_galaxies_bright:.4f} (network); "
        f"n = {n_galaxies_bright}"
    )
    print(
        f"on the sky's own pixels ({fitted.sum()} of {len(test)} sources away from the edges): "
        f"compact galaxies missed {int(measured_missed[~test_star].sum())} (ideal) vs "
        f"{int((network_missed & fitted)[~test_star].sum())} (network), both "
        f"{int((measured_missed & network_missed)[~test_star].sum())}; stars missed "
        f"{int(measured_missed[test_star].sum())} vs {int((network_missed & fitted)[test_star].sum())}, both "
        f"{int((measured_missed & network_missed)[test_star].sum())}"
    )
    # Poisson-ish spread of the ideal count from one sky to another of this size.
    spread = math.sqrt(float((missed[~test_star] * (1 - missed[~test_star])).sum()))
    print(f"sky-to-sky spread of the ideal compact-galaxy misses: +-{spread:.1f}")
    both = missed[~test_star][network_missed[~test_star]]
    print(
        f"the network's {network_galaxy_misses} missed compact galaxies: ideal miss probability "
        f"median {np.median(both) if len(both) else float('nan'):.2f}"
    )
    print("trading stars for galaxies (ideal classifier; stars counted against compact galaxies only):")
    print(f"  {'call a star when P(star) >=':>30s}{'compact galaxies missed':>26s}{'stars missed':>14s}")
    for threshold in THRESHOLDS:
        cut = math.log(threshold / (1 - threshold))
        galaxies_missed = (log_ratios[:, ~test_star] >= cut).sum() / args.realisations
        stars_missed = (log_ratios[:, test_star] < cut).sum() / args.realisations
        print(f"  {threshold:>30.3f}{galaxies_missed:>26.1f}{stars_missed:>14.1f}")
    print(
        f"targets on this sky: at most {int(0.002 * n_galaxies_bright)} galaxies and "
        f"{int(0.003 * n_stars)} stars missed at r < {ACCEPTANCE_R_LIMIT} (99.8% and 99.7%)"
    )
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
