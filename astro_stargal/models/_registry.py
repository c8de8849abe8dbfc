"""The model registry: models found through the ``astro_stargal.models`` entry-point group."""

import importlib.metadata
import importlib.util
import os
import warnings
from pathlib import Path

from astropy.table import Table

from ..exceptions import StarGalaxyWarning
from ._format import METADATA_FILE, read_metadata

__all__ = ["DEFAULT_MODEL", "ENTRY_POINT_GROUP", "bundled_model", "list_models", "weights_directory"]

ENTRY_POINT_GROUP = "astro_stargal.models"

DEFAULT_MODEL = "csst-resnet50-bilstm"


def bundled_model():
    """Return the directory of the bundled CSST model (the entry point of ``csst-resnet50-bilstm``).

    Returns
    -------
    directory : `~pathlib.Path`
        Holds ``model.json`` and ``model.safetensors``.

    Raises
    ------
    FileNotFoundError
        If the package was installed without its weights.

    Examples
    --------
    >>> sorted(path.name for path in bundled_model().glob("model.*"))  # doctest: +SKIP
    ['model.json', 'model.safetensors']
    """
    # Installed from a wheel, weights/ is the namespace package astro_stargal._bundled_weights;
    # in a source checkout it sits next to the package.
    spec = importlib.util.find_spec("astro_stargal._bundled_weights")
    candidates = [Path(location) for location in (spec.submodule_search_locations or [])] if spec else []
    candidates.append(Path(__file__).resolve().parents[2] / "weights")
    for candidate in candidates:
        if (candidate / METADATA_FILE).exists():
            return candidate
    msg = f"the bundled weights ({METADATA_FILE}) are not installed; looked in {[str(c) for c in candidates]}"
    raise FileNotFoundError(msg)


def list_models():
    """List the models registered under the ``astro_stargal.models`` entry-point group.

    Returns
    -------
    models : `~astropy.table.Table`
        One row per model: ``name``, ``entry_point``, ``path``, ``bands``,
        ``stamp_size`` and ``available`` (False when its weights cannot be found).

    Examples
    --------
    >>> "csst-resnet50-bilstm" in list_models()["name"]  # doctest: +SKIP
    True
    """
    rows = []
    for name, entry_point, target in _registered_models():
        try:
            directory = _call_plugin(target)
            metadata = read_metadata(directory)
            rows.append(
                (
                    name,
                    entry_point,
                    str(directory),
                    " ".join(metadata["bands"]),
                    metadata["stamp_size"],
                    True,
                )
            )
        except Exception as error:  # a third-party plugin may fail in any way; list it as unavailable
            warnings.warn(
                f"model {name!r} ({entry_point}) is unavailable: {error!r}",
                StarGalaxyWarning,
                stacklevel=2,
            )
            rows.append((name, entry_point, "", "", 0, False))
    return Table(
        rows=rows or None,
        names=("name", "entry_point", "path", "bands", "stamp_size", "available"),
        dtype=(str, str, str, str, int, bool),
    )


def _registered_models():
    """Yield ``(name, entry point text, loaded target)``; plugins that fail to import become warnings."""
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry_point.load()
        except Exception as error:  # a third-party plugin may fail in any way; it must not crash us
            warnings.warn(
                f"model plugin {entry_point.name!r} ({entry_point.value}) failed to load and is skipped: {error!r}",
                StarGalaxyWarning,
                stacklevel=3,
            )
            continue
        yield entry_point.name, entry_point.value, target


def _call_plugin(target):
    directory = Path(target() if callable(target) else target)
    return directory.parent if directory.is_file() else directory


def weights_directory(weights):
    if weights is None:
        weights = DEFAULT_MODEL
    if isinstance(weights, str) and not os.path.exists(weights):
        registered = {name: target for name, _, target in _registered_models()}
        if weights in registered:
            return _call_plugin(registered[weights])
        known = sorted(registered)
        msg = f"weights={weights!r} is neither an existing path nor a registered model; registered: {known}"
        raise FileNotFoundError(msg)
    path = Path(weights)
    if not path.exists():
        msg = f"weights path {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    return path.parent if path.is_file() else path
