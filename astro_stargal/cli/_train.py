"""The ``train`` subcommand: train or fine-tune on labelled fields."""

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune the classifier on labelled fields",
        description="Train on simulator output directories (truth.ecsv + FITS per band) and write "
        "OUTPUT/weights, which --weights accepts. Fine-tunes the bundled model by default. "
        "Options left out take the defaults of astro_stargal.training.TrainConfig.",
    )
    parser.add_argument("sources", nargs="+", help="simulator output directories")
    parser.add_argument(
        "-o", "--output-dir", required=True, help="checkpoint, history, learning curve and weights/"
    )
    # Each option below is named after the TrainConfig field it sets and is absent from args
    # unless given, so that the defaults live in one place (TrainConfig) only.
    options = parser.add_argument_group("training options (default: TrainConfig's)")
    options.add_argument(
        "--init", default=argparse.SUPPRESS, help="'bundled' (fine-tune), 'random', or a weights directory"
    )
    options.add_argument("--backbone", default=argparse.SUPPRESS, choices=("resnet50", "resnet18"))
    options.add_argument(
        "--branches",
        default=argparse.SUPPRESS,
        type=lambda text: tuple(text.split(",")),
        help="image,catalog (fused) or one branch",
    )
    options.add_argument("--label-column", default=argparse.SUPPRESS)
    options.add_argument("--epochs", type=int, default=argparse.SUPPRESS)
    options.add_argument("--batch-size", type=int, default=argparse.SUPPRESS)
    options.add_argument("--learning-rate", type=float, default=argparse.SUPPRESS)
    options.add_argument(
        "--band-dropout",
        type=float,
        default=argparse.SUPPRESS,
        help="probability of hiding each band of each source (0: none)",
    )
    options.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no rotations, flips or extra noise",
    )
    options.add_argument("--seed", type=int, default=argparse.SUPPRESS)
    options.add_argument("--device", default=argparse.SUPPRESS)
    options.add_argument(
        "--n-jobs", type=int, default=argparse.SUPPRESS, help="processes preparing the training set"
    )
    options.add_argument(
        "--max-minutes",
        type=float,
        default=argparse.SUPPRESS,
        help="wall-clock budget; the schedule is fitted to it",
    )
    options.add_argument("--name", default=argparse.SUPPRESS, help="model name written in the metadata")
    parser.set_defaults(run=run, python_options=TRAIN_OPTIONS)


#: How ``train`` spells the TrainConfig fields (each valued option is named after its field).
TRAIN_OPTIONS = {
    **{
        field: "--" + field.replace("_", "-")
        for field in (
            "init",
            "backbone",
            "branches",
            "label_column",
            "epochs",
            "batch_size",
            "learning_rate",
            "band_dropout",
            "seed",
            "device",
            "n_jobs",
            "max_minutes",
            "name",
        )
    },
    "augment=False": "--no-augment",
}


def run(args):
    from ..training import TrainConfig, train

    given = {
        name: value
        for name, value in vars(args).items()
        if name not in ("command", "run", "python_options", "sources", "output_dir")
    }
    # augment= and band_dropout= (the two switches above) set the augmentation list.
    config = TrainConfig(progress=True).with_options(**given)
    weights_dir = train(list(args.sources), args.output_dir, config)
    print(f"weights written to {weights_dir}")
