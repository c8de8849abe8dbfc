"""Measure a trained model on simulated fields it never saw, through the public API.

Runs `astro_stargal.classify_sources` on every tile of a simulator output
directory (``astro-stargal simulate``), joins the result with the truth and
prints: recall per class for sources with true r < 25 (the acceptance
figures; again without the sources flagged ``BLENDED``), recall per r-magnitude bin down to r = 26, galaxy recall at
z > 1.5, the expected calibration error and the ROC AUC.

Usage::

    astro-stargal simulate test_sky --size 1024 --tiles 16 --seed 99
    python -m benchmarks.evaluate_model test_sky [--weights DIR] [--device cpu] [--json out.json]

``--orientations 8`` is test-time augmentation: the network's logit is
averaged over the eight rotations and flips of the stamps (eight times the
network time). It is an experiment, not an option of `classify_sources`: it
did not reduce the errors (``docs/model_card.md``).
"""

import argparse
import copy
import dataclasses

import torch
from astropy.table import Table

from astro_stargal import load_model

from .common import classify_simulation, model_weights, print_summary, summarise, write_json


def averaged_over_orientations(model):
    """A copy of ``model`` whose network averages its logit over the eight rotations and flips of the stamps."""
    net = copy.deepcopy(model.net)
    single = net.forward

    def forward(stamps, catalog):
        logits = []
        for flipped in (stamps, torch.flip(stamps, dims=(3,))):
            logits.extend(single(torch.rot90(flipped, k=k, dims=(2, 3)), catalog) for k in range(4))
        return torch.stack(logits).mean(dim=0)

    net.forward = forward
    return dataclasses.replace(model, net=net)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sky_dir", help="simulator output directory with truth.ecsv")
    parser.add_argument("--weights", help="weights directory or model name (default: bundled)")
    parser.add_argument("--device")
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument("--table", help="write the classified truth table here (ECSV)")
    parser.add_argument(
        "--orientations", type=int, choices=(1, 8), default=1, help="8: average over rotations and flips"
    )
    args = parser.parse_args(argv)
    model = load_model(model_weights(args.weights), device=args.device)
    if args.orientations == 8:
        model = averaged_over_orientations(model)
    result = classify_simulation(args.sky_dir, weights=model, device=args.device)
    summary = summarise(result)
    print_summary(summary, f"{args.weights or 'bundled model'} on {args.sky_dir}")
    if args.json:
        write_json(args.json, summary)
    if args.table:
        Table(result).write(args.table, overwrite=True)
    return summary


if __name__ == "__main__":
    main()
