"""The ``info`` subcommand: versions, installed models, their bands, the compute device and CPU threads."""

import importlib.metadata
import platform
import sys
from pathlib import Path

__all__ = ["DEPENDENCIES", "add_parser", "installed_versions", "run"]

#: Packages whose installed version ``info`` reports (read from their metadata, without importing them).
DEPENDENCIES = (
    "numpy",
    "scipy",
    "astropy",
    "photutils",
    "torch",
    "torchvision",
    "safetensors",
    "galsim",
    "matplotlib",
    "dask",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "info",
        help="versions, installed models, their bands, and the compute device",
        description="Print the versions of astro_stargal and its dependencies at once, then the "
        "installed models and the default device (which needs PyTorch loaded: a few seconds).",
    )
    parser.set_defaults(run=run)


def installed_versions(names=DEPENDENCIES):
    """``'numpy 2.4.0, ..., galsim not installed'``: installed versions, read without importing the packages.

    Parameters
    ----------
    names : sequence of str
        Distribution names.

    Returns
    -------
    versions : str

    Examples
    --------
    >>> installed_versions(["numpy"]).startswith("numpy ")
    True
    """
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return ", ".join(versions)


def run(args):
    from .._version import __version__

    print(f"astro_stargal {__version__} at {Path(__file__).resolve().parents[1]}")
    print(f"Python {platform.python_version()} ({sys.executable})")
    print(installed_versions())
    # The lines above answer at once; the models and the device need PyTorch, which takes seconds to load.
    print("loading PyTorch to list the models and the device ...", flush=True)

    import torch

    from ..models import list_models, resolve_device
    from ..pipeline._inference import default_threads

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
    print(f"default device: {resolve_device()}")
    print(
        f"CPU threads for the network now: {default_threads(torch.device('cpu'))} "
        f"(torch.get_num_threads() {torch.get_num_threads()}; fewer when other work keeps cores busy)"
    )
