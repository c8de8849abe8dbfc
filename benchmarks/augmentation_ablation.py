"""What augmentation buys: the same model trained with and without it, tested on held-out skies.

Trains two models that differ only in ``augment`` (random rotations, flips and
extra sky noise; band dropout is kept in both) on the same simulated training
sky and the same cached training set, then evaluates both on a held-out sky
through `classify_sources` and prints their test figures side by side.

The bundled model's run did not include this ablation (its GPU time went to
the branch ablation); this script measures it on whatever scale the machine
allows, e.g. a ResNet-18 image-only model on a small sky on a CPU.

Usage::

    astro-stargal simulate aug_train --size 768 --tiles 6 --seed 31 --variation
    astro-stargal simulate aug_test --size 1024 --tiles 4 --seed 99
    python -m benchmarks.augmentation_ablation aug_train aug_test --work aug_runs \\
        [--backbone resnet18] [--branches image] [--epochs 8] [--device cpu]
"""

import argparse
from pathlib import Path

from astro_stargal.training import train

from .common import Stopwatch, classify_simulation, summarise, write_json

REPORTED = (
    "star_recall_r_lt_25",
    "galaxy_recall_r_lt_25",
    "star_recall_all",
    "galaxy_recall_all",
    "expected_calibration_error",
    "roc_auc",
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("train_sky", type=Path)
    parser.add_argument("test_sky", type=Path)
    parser.add_argument("--work", type=Path, default=Path("augmentation_runs"))
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--branches", default="image")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    results = {}
    for augment in (True, False):
        name = "augmented" if augment else "plain"
        with Stopwatch() as watch:
            weights_dir = train(
                args.train_sky,
                args.work / name,
                init="random",
                backbone=args.backbone,
                branches=tuple(args.branches.split(",")),
                epochs=args.epochs,
                batch_size=args.batch_size,
                augment=augment,
                patience=args.epochs,
                seed=args.seed,
                device=args.device,
                cache=args.work / "training_set.npz",
                progress=False,
            )
        seconds = watch.seconds
        summary = summarise(classify_simulation(args.test_sky, weights=weights_dir, device=args.device))
        results[name] = {key: summary[key] for key in REPORTED} | {"training_seconds": seconds}
        print(f"{name}: trained in {seconds:.0f} s", flush=True)

    print(f"\n{'figure':<28} {'augmented':>10} {'plain':>10}")
    for key in REPORTED:
        print(f"{key:<28} {results['augmented'][key]:>10.4f} {results['plain'][key]:>10.4f}")
    write_json(args.work / "augmentation_ablation.json", results)
    return results


if __name__ == "__main__":
    main()
