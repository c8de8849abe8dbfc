"""The recipe behind the PSF-aware bundled model: simulate a realistic training sky, fine-tune, evaluate.

The model is fine-tuned from the previous bundled model (``init='bundled'``)
with the PSF-relative catalog features added (`astro_stargal.pipeline.PSF_FEATURE_NAMES`,
which start at zero weight, so training starts from the previous model's
predictions) on a mix of

- realistic co-added skies (`astro_stargal.simulate.Realism`, ``variation=True``:
  aberrated PSFs with r-band FWHM 0.08-0.25" varying over each tile,
  dithered and resampled exposures with weight maps, defects, white dwarfs, M
  dwarfs, binaries, QSOs, Sersic, clumpy and merging galaxies), and
- the simulator's varied nominal skies (``variation=True`` without realism),
  so that nothing is lost on skies like the previous training sky,

with training positions moved at random by ``--position-error`` arcsec rms per
axis and recentred, as `astro_stargal.classify_sources` recentres a
catalog's positions. ``--features standard`` trains the same way without the
PSF features (the ablation). Seeds differ from every held-out sky of
`benchmarks.realistic_sky`.

On the 2-core CPU the default (24 realistic + 8 varied tiles of 1024 px,
sources to r = 26, 4 epochs) simulates in about 40 minutes and trains in
about an hour; on a GPU machine raise ``--tiles``, ``--epochs`` and
``--max-magnitude``.

Example::

    python -m benchmarks.train_psf_model --sky-dir train_sky --output runs/psf --epochs 4
"""

import argparse
import json
from pathlib import Path

from astro_stargal.pipeline import FEATURE_NAMES, PSF_FEATURE_NAMES
from astro_stargal.simulate import Realism, simulate_tiles
from astro_stargal.training import TrainConfig, train

from .common import Stopwatch, machine_description

#: Training-sky seeds (the held-out skies use 99, 98, 20261202 and 20261203).
REALISTIC_SEED = 20261210
VARIED_SEED = 20261211


def training_sky(sky_dir, *, realistic_tiles, varied_tiles, size, n_jobs):
    """Simulate (once) the realistic and the varied parts of the training sky; return their directories."""
    parts = []
    for name, tiles, seed, realism in (
        ("realistic", realistic_tiles, REALISTIC_SEED, Realism()),
        ("varied", varied_tiles, VARIED_SEED, None),
    ):
        if tiles == 0:
            continue
        directory = Path(sky_dir) / name
        if not (directory / "truth.ecsv").exists():
            simulate_tiles(
                directory, tiles, size=size, seed=seed, n_jobs=n_jobs, variation=True, realism=realism
            )
        parts.append(str(directory))
    return parts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sky-dir", default="train_sky")
    parser.add_argument("--output", default="runs/psf")
    parser.add_argument("--realistic-tiles", type=int, default=24)
    parser.add_argument("--varied-tiles", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--features", choices=("psf", "standard"), default="psf")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--position-error", type=float, default=0.03)
    parser.add_argument("--max-magnitude", type=float, default=26.0)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--name", default="csst-resnet50-bilstm")
    args = parser.parse_args(argv)
    with Stopwatch() as simulation:
        sources = training_sky(
            args.sky_dir,
            realistic_tiles=args.realistic_tiles,
            varied_tiles=args.varied_tiles,
            size=args.size,
            n_jobs=args.n_jobs,
        )
    features = FEATURE_NAMES + (PSF_FEATURE_NAMES if args.features == "psf" else ())
    config = TrainConfig(
        init="bundled",
        features=features,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        position_error=args.position_error,
        max_magnitude=args.max_magnitude,
        max_minutes=args.max_minutes,
        n_jobs=args.n_jobs,
        device=args.device,
        name=args.name,
        progress=True,
        provenance={
            "recipe": "python -m benchmarks.train_psf_model " + " ".join(argv or []),
            "training_sky": {
                "realistic": {"tiles": args.realistic_tiles, "seed": REALISTIC_SEED},
                "varied": {"tiles": args.varied_tiles, "seed": VARIED_SEED},
                "size": args.size,
            },
            "machine": machine_description(),
        },
    )
    with Stopwatch() as training:
        weights_dir = train(sources, args.output, config)
    metadata = json.loads((Path(weights_dir) / "model.json").read_text())
    print(
        f"simulation {simulation.seconds:.0f} s, training {training.seconds:.0f} s on {machine_description()}"
    )
    print(json.dumps(metadata["metrics"], indent=1))
    print(f"validity: {json.dumps(metadata['validity'])}")
    print(f"weights: {weights_dir}")


if __name__ == "__main__":
    main()
