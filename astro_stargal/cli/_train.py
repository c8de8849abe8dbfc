"""The ``train`` subcommand: train or fine-tune on labelled fields."""

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune the classifier on labelled fields",
        description="Train on simulator output directories (truth.ecsv + FITS per band) and write "
        "OUTPUT/weights, which --weights accepts. Fine-tunes the bundled model by default.",
    )
    parser.add_argument("sources", nargs="+", help="simulator output directories")
    parser.add_argument(
        "-o", "--output-dir", required=True, help="checkpoint, history, learning curve and weights/"
    )
    parser.add_argument(
        "--init", default="bundled", help="'bundled' (fine-tune), 'random', or a weights directory"
    )
    parser.add_argument("--backbone", default="resnet50", choices=("resnet50", "resnet18"))
    parser.add_argument("--branches", default="image,catalog", help="image,catalog (fused) or one branch")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--band-dropout", type=float, default=0.15)
    parser.add_argument("--no-augment", action="store_true", help="no rotations, flips or extra noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device")
    parser.add_argument("--n-jobs", type=int, default=1, help="processes preparing the training set")
    parser.add_argument("--max-minutes", type=float, help="wall-clock budget; the schedule is fitted to it")
    parser.add_argument("--name", help="model name written in the metadata")
    parser.set_defaults(run=run)


def run(args):
    from ..training import train

    weights_dir = train(
        list(args.sources),
        args.output_dir,
        init=args.init,
        backbone=args.backbone,
        branches=tuple(args.branches.split(",")),
        label_column=args.label_column,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        band_dropout=args.band_dropout,
        augment=not args.no_augment,
        seed=args.seed,
        device=args.device,
        n_jobs=args.n_jobs,
        max_minutes=args.max_minutes,
        name=args.name,
        progress=True,
    )
    print(f"weights written to {weights_dir}")
