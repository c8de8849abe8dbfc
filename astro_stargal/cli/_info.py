"""The ``info`` subcommand: installed models, their bands, and the compute device."""

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser("info", help="installed models, their bands, and the compute device")
    parser.set_defaults(run=run)


def run(args):
    import torch

    from .._version import __version__
    from ..models import list_models, resolve_device

    print(f"astro_stargal {__version__}, torch {torch.__version__}")
    print(f"default device: {resolve_device()}")
    models = list_models()
    if len(models) == 0:
        print("no models installed")
    for row in models:
        source = f"{row['source']} ({row['distribution']})" if row["distribution"] else row["source"]
        if row["available"]:
            state = f"bands {row['bands']}, stamp {row['stamp_size']} px, {row['path']}"
        else:
            state = f"unavailable: {row['reason']}"
        print(f"model {row['name']} [{source}]: {state}")
