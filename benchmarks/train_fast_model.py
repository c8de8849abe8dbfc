"""The recipe behind ``weights/csst-fast``: a small CPU model distilled from the bundled one.

Steps:

1. simulate (once) varied CSST-like training skies with
   `astro_stargal.simulate.simulate_tiles` (``variation=True``: PSF, sky,
   galaxy profiles and SEDs drawn per tile), from seeds that no held-out sky
   uses (``benchmarks.compare_fast_model`` evaluates on seed 99);
2. train a random ``backbone='compact'`` network on 24-pixel stamps whose
   central 16 pixels the image branch sees, with a 32-unit BiLSTM, distilled
   from the bundled model (``teacher='csst-resnet50-bilstm'``: the teacher's
   logits are computed once per source while the training set is prepared);
3. with ``--install DIR``, copy the weights there (``weights/csst-fast`` in
   the repository; the tensor file's SHA-256 is in its ``model.json``).

On the 2-core development CPU the default (16 + 40 tiles of 1024 px) takes
about 10 minutes to simulate and 20 to 25 to prepare and train; state the
machine with the figures it prints.

Example::

    python -m benchmarks.train_fast_model --sky-dir fast_sky --output runs/fast --install weights/csst-fast
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from astro_stargal.models import METADATA_FILE, TENSOR_FILE, load_model
from astro_stargal.simulate import simulate_tiles
from astro_stargal.training import TrainConfig, train

from .common import Stopwatch, machine_description

#: Training-sky parts: (directory name, seed). Held-out skies use 99, 98, 20261202 and 20261203.
SKY_PARTS = (("a", 20261220), ("b", 20261221))


def training_sky(sky_dir, tiles, *, size, n_jobs):
    """Simulate (once) each part of the training sky; return their directories."""
    parts = []
    for (name, seed), n_tiles in zip(SKY_PARTS, tiles, strict=True):
        directory = Path(sky_dir) / name
        if not (directory / "truth.ecsv").exists():
            simulate_tiles(directory, n_tiles, size=size, seed=seed, n_jobs=n_jobs, variation=True)
        parts.append(str(directory))
    return parts


def fast_config(args):
    """The training configuration of ``csst-fast``."""
    return TrainConfig(
        init="random",
        backbone="compact",
        stamp_size=24,
        image_crop=16,
        lstm_hidden=32,
        teacher=args.teacher,
        teacher_weight=args.teacher_weight,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_minutes=args.max_minutes,
        n_jobs=args.n_jobs,
        device=args.device,
        name="csst-fast",
        progress=True,
        provenance={
            "recipe": "python -m benchmarks.train_fast_model " + " ".join(args.argv),
            "training_sky": {
                "parts": [
                    {"seed": seed, "tiles": n} for (_, seed), n in zip(SKY_PARTS, args.tiles, strict=True)
                ],
                "size": args.size,
                "simulator": "astro_stargal.simulate.simulate_tiles(..., variation=True)",
            },
            "machine": machine_description(),
        },
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sky-dir", default="fast_sky")
    parser.add_argument("--output", default="runs/fast")
    parser.add_argument("--tiles", type=int, nargs=2, default=(16, 40), help="tiles of each sky part")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--teacher", default="csst-resnet50-bilstm")
    parser.add_argument("--teacher-weight", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--max-minutes", type=float, default=15.0)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="PyTorch threads for training (one: on a shared 2-core CPU, two threads made each step 17x slower)",
    )
    parser.add_argument("--install", help="copy the trained weights into this directory")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with Stopwatch() as simulation:
        sources = training_sky(args.sky_dir, args.tiles, size=args.size, n_jobs=args.n_jobs)
    torch.set_num_threads(args.threads)
    with Stopwatch() as training:
        weights_dir = train(sources, args.output, fast_config(args))
    model = load_model(weights_dir, device="cpu")
    n_parameters = sum(parameter.numel() for parameter in model.net.parameters())
    size_kb = (Path(weights_dir) / TENSOR_FILE).stat().st_size / 1000
    print(f"machine: {machine_description()}")
    print(f"simulation {simulation.seconds:.0f} s, preparation and training {training.seconds:.0f} s")
    print(f"{n_parameters:,} parameters, tensor file {size_kb:.0f} kB")
    print(json.dumps(model.metadata["metrics"], indent=1))
    if args.install:
        target = Path(args.install)
        target.mkdir(parents=True, exist_ok=True)
        for name in (METADATA_FILE, TENSOR_FILE):
            shutil.copy2(Path(weights_dir) / name, target / name)
        print(f"installed in {target}")
    print(f"weights: {weights_dir}")


if __name__ == "__main__":
    main()
