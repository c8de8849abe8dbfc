"""Make the bundled weights: simulate the training and test skies, train, evaluate, ablate.

This is the exact recipe behind ``weights/`` and the figures in
``docs/model_card.md``. It runs on one GPU in under ten minutes (16 CPU cores
for the simulation) and on a CPU with ``--quick`` (a tiny smoke-sized run).

Steps:

1. ``simulate_tiles(WORK/train_sky, 80, size=1536, seed=20261126, variation=True)``:
   about 170,000 sources (1 star : 3 galaxies) with PSF model and width, sky,
   galaxy profiles, SED mix and stellar SEDs randomised per tile.
2. ``simulate_tiles(WORK/test_sky, 48, size=1024, seed=99)`` (nominal CSST)
   and ``simulate_tiles(WORK/test_sky_varied, 48, size=1024, seed=98, variation=True)``:
   held-out skies from seeds never used in training.
3. One cached training set, then the fused model and the two single-branch
   ablation models trained the same way, concurrently on the one GPU.
4. Each model evaluated on both test skies with `classify_sources`.

With ``--no-test`` steps 2 and 4 are left out (the GPU session does this, and
the test skies are simulated and classified on another machine with
``python -m benchmarks.evaluate_model``).

Usage::

    python -m benchmarks.train_bundled_model WORK [--n-jobs 16] [--device cuda] [--max-minutes 4]
        [--variants fused,image,catalog] [--skies-only | --skip-skies] [--no-test]
"""

import argparse
import subprocess
import time
from pathlib import Path

from astro_stargal.instrument import band_order
from astro_stargal.simulate import simulate_tiles
from astro_stargal.training import build_training_set, labelled_fields, train

from .common import classify_simulation, module_command, print_summary, summarise, write_json

VARIANTS = {"fused": ("image", "catalog"), "image": ("image",), "catalog": ("catalog",)}
FULL = {
    "train_tiles": 80,
    "train_size": 1536,
    "test_tiles": 48,
    "test_size": 1024,
    "backbone": "resnet50",
    "epochs": 60,
}
QUICK = {
    "train_tiles": 3,
    "train_size": 256,
    "test_tiles": 1,
    "test_size": 256,
    "backbone": "resnet18",
    "epochs": 1,
}
TRAIN_SEED, TEST_SEED, TEST_VARIED_SEED = 20261126, 99, 98


def make_skies(work, config, n_jobs, *, test=True):
    started = time.perf_counter()
    simulate_tiles(
        work / "train_sky",
        config["train_tiles"],
        size=config["train_size"],
        seed=TRAIN_SEED,
        n_jobs=n_jobs,
        variation=True,
        overwrite=True,
    )
    if not test:
        print(f"simulated the training sky in {time.perf_counter() - started:.0f} s", flush=True)
        return
    simulate_tiles(
        work / "test_sky",
        config["test_tiles"],
        size=config["test_size"],
        seed=TEST_SEED,
        n_jobs=n_jobs,
        overwrite=True,
    )
    simulate_tiles(
        work / "test_sky_varied",
        config["test_tiles"],
        size=config["test_size"],
        seed=TEST_VARIED_SEED,
        n_jobs=n_jobs,
        variation=True,
        overwrite=True,
    )
    print(f"simulated skies in {time.perf_counter() - started:.0f} s", flush=True)


def train_variant(work, variant, config, device, max_minutes, *, test=True):
    """Train one variant and evaluate it on both test skies (run in its own process)."""
    provenance = {
        "simulator": f"astro_stargal.simulate.simulate_tiles(OUT, {config['train_tiles']}, size={config['train_size']}, seed={TRAIN_SEED}, variation=True)",
        "train_call": f"astro_stargal.training.train(OUT, RUN, init='random', backbone='{config['backbone']}', branches={VARIANTS[variant]}, epochs={config['epochs']}, patience=12, seed=0, max_minutes={max_minutes})",
        "recipe": "benchmarks/train_bundled_model.py",
    }
    weights_dir = train(
        work / "train_sky",
        work / f"run_{variant}",
        init="random",
        backbone=config["backbone"],
        branches=VARIANTS[variant],
        epochs=config["epochs"],
        patience=12,
        seed=0,
        device=device,
        cache=work / "training_set.npz",
        max_minutes=max_minutes,
        name="csst-resnet50-bilstm" if variant == "fused" else f"csst-{variant}-only",
        provenance=provenance,
        progress=False,
    )
    if not test:
        return
    results = {}
    for sky in ("test_sky", "test_sky_varied"):
        summary = summarise(classify_simulation(work / sky, weights=weights_dir, device=device))
        print_summary(summary, f"{variant} on {sky}")
        results[sky] = summary
    write_json(work / f"run_{variant}" / "test_metrics.json", results)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("work", type=Path)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-sized run")
    parser.add_argument("--n-jobs", type=int, default=16)
    parser.add_argument("--device")
    parser.add_argument("--max-minutes", type=float, default=4.0, help="training wall-clock budget per model")
    parser.add_argument("--variants", default="fused,image,catalog")
    parser.add_argument("--skies-only", action="store_true", help="simulate the skies, then stop")
    parser.add_argument("--skip-skies", action="store_true", help="reuse the skies already in WORK")
    parser.add_argument(
        "--no-test", action="store_true", help="neither simulate the test skies nor evaluate on them"
    )
    parser.add_argument("--only-variant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    args.work.mkdir(parents=True, exist_ok=True)

    if args.only_variant:
        train_variant(
            args.work, args.only_variant, config, args.device, args.max_minutes, test=not args.no_test
        )
        return

    if not args.skip_skies:
        make_skies(args.work, config, args.n_jobs, test=not args.no_test)
    if args.skies_only:
        return
    started = time.perf_counter()
    fields = labelled_fields(args.work / "train_sky")
    data = build_training_set(
        fields,
        bands=list(band_order()),
        stamp_size=32,
        cache=args.work / "training_set.npz",
        n_jobs=args.n_jobs,
        progress=False,
    )
    print(
        f"training set: {len(data)} sources ({int(data.labels.sum())} stars) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )

    processes = []
    for variant in args.variants.split(","):
        command = module_command(
            "benchmarks.train_bundled_model",
            args.work,
            "--only-variant",
            variant,
            "--max-minutes",
            args.max_minutes,
        )
        command += ["--quick"] if args.quick else []
        command += ["--no-test"] if args.no_test else []
        command += ["--device", args.device] if args.device else []
        log = open(args.work / f"log_{variant}.txt", "w")
        processes.append((variant, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    for variant, process, log in processes:
        process.wait()
        log.close()
        print(f"--- {variant} (exit {process.returncode})")
        print((args.work / f"log_{variant}.txt").read_text()[-4000:], flush=True)


if __name__ == "__main__":
    main()
