"""The model registry: one namespace of model names, filled by entry points and by `register_model`.

A name comes from one of three sources:

bundled
    The package's own models (``csst-resnet50-bilstm``, the default, and
    ``csst-fast``, the small CPU model), declared by astro_stargal's
    distribution in the entry-point group it reads, as any third party
    declares its models (in an uninstalled source checkout, which has no
    entry points, they are added directly).
entry point
    A package that declares ``NAME = "module:function"`` under
    ``[project.entry-points."astro_stargal.models"]``.
registered in code
    `register_model` in this process.

The entry-point group is scanned once per process (``list_models(refresh=True)``
scans again; so does asking for a name the last scan did not see). Scanning
imports nothing: a plugin's module is imported and its target called only when
the model is listed or loaded, so a broken plugin disturbs nobody who does not
ask for it.
"""

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from astropy.table import Table

from ..exceptions import StarGalaxyWarning
from ._format import METADATA_FILE, TENSOR_FILE, read_metadata

__all__ = [
    "DEFAULT_MODEL",
    "ENTRY_POINT_GROUP",
    "FAST_MODEL",
    "bundled_model",
    "fast_model",
    "list_models",
    "register_model",
    "unregister_model",
    "weights_directory",
]

ENTRY_POINT_GROUP = "astro_stargal.models"

DEFAULT_MODEL = "csst-resnet50-bilstm"

#: Name of the small bundled model for CPUs, distilled from `DEFAULT_MODEL`.
FAST_MODEL = "csst-fast"

#: Folder of `FAST_MODEL` inside the bundled weights folder.
_FAST_FOLDER = "csst-fast"

#: The values of the ``source`` column of `list_models`, in the order it lists them.
SOURCES = ("bundled", "entry point", "registered in code")

#: Entry points of the bundled models, as pyproject.toml declares them.
_BUNDLED_TARGETS = {
    DEFAULT_MODEL: "astro_stargal.models:bundled_model",
    FAST_MODEL: "astro_stargal.models:fast_model",
}

#: Name of this package's distribution, normalised as in PEP 503.
_OWN_DISTRIBUTION = "astro-stargal"

#: The columns of `list_models`: name -> (dtype, description).
_COLUMNS = {
    "name": (str, "model name, for weights=NAME and --model NAME"),
    "source": (str, "bundled, entry point, or registered in code"),
    "distribution": (str, "installed package (and version) that declares the entry point"),
    "target": (str, "entry point or registered target giving the weights directory"),
    "path": (str, "weights directory (model.json and model.safetensors)"),
    "bands": (str, "the model's bands, ordered by wavelength"),
    "stamp_size": (int, "stamp side in pixels"),
    "available": (bool, "the weights are present and their metadata valid"),
    "reason": (str, "why the model cannot be used"),
}

#: Model name -> `_Registration` made by `register_model` in this process.
_REGISTERED_IN_CODE = {}


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
    return _bundled_directory("")


def fast_model():
    """Return the directory of ``csst-fast``, the small CPU model (its entry point).

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
    >>> fast_model().name  # doctest: +SKIP
    'csst-fast'
    """
    return _bundled_directory(_FAST_FOLDER)


def _bundled_directory(folder):
    """The folder ``folder`` of the bundled weights that holds a ``model.json``."""
    # Installed from a wheel, weights/ is the namespace package astro_stargal._bundled_weights;
    # in a source checkout it sits next to the package.
    spec = importlib.util.find_spec("astro_stargal._bundled_weights")
    candidates = [Path(location) for location in (spec.submodule_search_locations or [])] if spec else []
    candidates.append(Path(__file__).resolve().parents[2] / "weights")
    candidates = [candidate / folder for candidate in candidates]
    for candidate in candidates:
        if (candidate / METADATA_FILE).exists():
            return candidate
    msg = f"the bundled weights ({METADATA_FILE}) are not installed; looked in {[str(c) for c in candidates]}"
    raise FileNotFoundError(msg)


@dataclass(frozen=True)
class _Registration:
    """Who claims a model name, and how to get the target that gives its weights directory."""

    name: str
    source: str
    distribution: str
    target_text: str
    load_target: object

    def describe(self):
        """Where the name comes from, for messages."""
        if self.source == "registered in code":
            return f"a model registered in code (target {self.target_text})"
        entry_point = f"entry point {self.target_text!r}"
        if self.distribution:
            entry_point += f" of distribution {self.distribution}"
        return f"the bundled model ({entry_point})" if self.source == "bundled" else entry_point


def register_model(name, target, *, force=False):
    """Register a model defined in code under a name, for ``weights=name`` and ``--model name``.

    Registered names share one namespace with the models of the entry-point
    group ``astro_stargal.models`` (see :doc:`/user_guide/models`) and last
    for this process.

    Parameters
    ----------
    name : str
        The model's name: not empty, no surrounding blanks, no ``/`` or ``\\``
        (so it can never be mistaken for a path).
    target : str, `~pathlib.Path` or callable
        A weights directory (or its ``model.json``), checked now; or a
        callable taking no arguments that returns one, called whenever the
        model is listed or loaded (the contract of an entry point).
    force : bool, optional
        Replace a model of the same name, whether registered in code or by an
        installed package (`unregister_model` brings the package's back).

    Raises
    ------
    ValueError
        If ``name`` is taken and ``force`` is False (the message names the
        current owner), or is not a valid name, or ``target``'s
        ``model.json`` is invalid.
    FileNotFoundError
        If ``target`` is a path that holds no ``model.json``.
    TypeError
        If ``target`` is neither a path nor a callable.

    Examples
    --------
    >>> import tempfile
    >>> from astro_stargal.models import StarGalaxyNet, load_model, save_weights
    >>> net = StarGalaxyNet(3, 6, backbone="resnet18", branches=("catalog",))
    >>> from astro_stargal.pipeline import FEATURE_NAMES
    >>> meta = {"name": "my-gri-model", "bands": ["g", "r", "i"], "stamp_size": 32, "feature_names": list(FEATURE_NAMES)}
    >>> directory = save_weights(net, tempfile.mkdtemp(), metadata=meta)
    >>> register_model("my-gri-model", directory)
    >>> load_model("my-gri-model", device="cpu").bands
    ('g', 'r', 'i')
    >>> unregister_model("my-gri-model")
    """
    _validate_name(name)
    registration = _registration_in_code(name, target)
    current = _registrations().get(name)
    if current and not force:
        msg = (
            f"model name {name!r} is already taken by {_describe_claimants(current)}; "
            f"pass force=True to replace it with {registration.describe()}"
        )
        raise ValueError(msg)
    _REGISTERED_IN_CODE[name] = registration


def unregister_model(name):
    """Remove a model registered with `register_model` (an installed package's model of that name returns).

    Parameters
    ----------
    name : str
        A name registered in code in this process.

    Raises
    ------
    ValueError
        If ``name`` was not registered in code (models of installed packages
        go away only by uninstalling the package).

    Examples
    --------
    >>> register_model("my-copy", bundled_model())
    >>> "my-copy" in list_models()["name"]
    True
    >>> unregister_model("my-copy")
    >>> "my-copy" in list_models()["name"]
    False
    """
    if name not in _REGISTERED_IN_CODE:
        claimants = _registrations().get(name)
        owner = f"it comes from {_describe_claimants(claimants)}" if claimants else "no model has that name"
        msg = f"model {name!r} was not registered with register_model: {owner}"
        raise ValueError(msg)
    del _REGISTERED_IN_CODE[name]


def list_models(*, refresh=False):
    """List every model that ``weights=NAME`` can select, and whether it can be used.

    Each model's target is called and its ``model.json`` read (its checksum is
    checked only when it is loaded). A model that cannot be used, such as a
    plugin that fails to import, raises, points to missing files or has bad
    metadata, or a name claimed by two packages, is listed as unavailable
    with the reason, and a `~astro_stargal.StarGalaxyWarning` names it and
    its distribution.

    Parameters
    ----------
    refresh : bool, optional
        Scan the installed packages' entry points again (they are scanned
        once per process), for packages installed since.

    Returns
    -------
    models : `~astropy.table.Table`
        One row per name: ``name``; ``source`` (``'bundled'``,
        ``'entry point'`` or ``'registered in code'``); ``distribution``
        (installed package and version, empty for models registered in code);
        ``target`` (the entry point, or what was registered); ``path`` (the
        weights directory); ``bands``; ``stamp_size``; ``available``; and
        ``reason`` (why not, empty when available). The bundled models come
        first (the default one first of all), then entry points, then models
        registered in code, each by name.

    Examples
    --------
    >>> models = list_models()
    >>> bundled = models[models["name"] == "csst-resnet50-bilstm"][0]
    >>> str(bundled["source"]), str(bundled["bands"]), int(bundled["stamp_size"])
    ('bundled', 'NUV u g r i z y', 32)
    """
    if refresh:
        _refresh_entry_points()
    rows = []
    claims = _registrations()
    order = {
        name: (SOURCES.index(claimants[0].source), name != DEFAULT_MODEL, name)
        for name, claimants in claims.items()
    }
    for name in sorted(claims, key=order.get):
        claimants = claims[name]
        directory, bands, stamp_size, reason = "", "", 0, ""
        if len(claimants) > 1:
            reason = f"the name is claimed by {_describe_claimants(claimants)}"
        else:
            try:
                directory, metadata = _resolve(claimants[0])
                bands, stamp_size = " ".join(metadata["bands"]), int(metadata["stamp_size"])
            except Exception as error:  # a third-party plugin may fail in any way; list it, never crash
                reason = f"{type(error).__name__}: {error}"
        if reason:
            warnings.warn(
                f"model {name!r} ({_describe_claimants(claimants)}) is unavailable: {reason}",
                StarGalaxyWarning,
                stacklevel=2,
            )
        rows.append(
            (
                name,
                ", ".join(dict.fromkeys(c.source for c in claimants)),
                ", ".join(c.distribution for c in claimants if c.distribution),
                ", ".join(c.target_text for c in claimants),
                str(directory),
                bands,
                stamp_size,
                not reason,
                reason,
            )
        )
    table = Table(rows=rows or None, names=tuple(_COLUMNS), dtype=[dtype for dtype, _ in _COLUMNS.values()])
    for name, (_, description) in _COLUMNS.items():
        table[name].description = description
    return table


def weights_directory(weights):
    """The weights directory that ``weights`` names.

    ``None`` is the default model. A string is a registered model name when
    one has it, else a path; a string that is both (a folder named like a
    model) is refused rather than guessed. A `~pathlib.Path` is always a
    path, and a ``model.json`` stands for its directory.
    """
    is_path = isinstance(weights, (str, os.PathLike)) and os.path.exists(weights)
    if weights is None or isinstance(weights, str):
        name = DEFAULT_MODEL if weights is None else weights
        claimants = _registrations().get(name) if is_path else _claimants(name)
        if claimants and is_path:
            msg = (
                f"weights={weights!r} is both a registered model ({_describe_claimants(claimants)}) and "
                f"an existing path; pass a pathlib.Path or './{weights}' for the path"
            )
            raise ValueError(msg)
        if claimants:
            return _weights_directory_of(name, claimants)
        if not is_path:
            msg = (
                f"weights={name!r} is neither an existing path nor a registered model; registered: "
                f"{sorted(_registrations())} (models registered with register_model exist only in the "
                "process that registered them)"
            )
            raise FileNotFoundError(msg)
    path = Path(weights)
    if not path.exists():
        msg = f"weights path {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    return path.parent if path.is_file() else path


def _claimants(name):
    """The registrations of ``name``; a name the last scan did not see triggers a new scan."""
    claimants = _registrations().get(name)
    if claimants is None:
        _refresh_entry_points()  # a package installed since the first scan, e.g. in a notebook
        claimants = _registrations().get(name)
    return claimants or []


def _registrations():
    """Model name -> the registrations claiming it (several only when packages clash); code wins."""
    claims = {name: list(claimants) for name, claimants in _entry_point_registrations().items()}
    claims.update({name: [registration] for name, registration in _REGISTERED_IN_CODE.items()})
    return claims


@functools.cache
def _entry_point_registrations():
    """Model name -> registrations declared in the entry-point group (scanned once; imports nothing)."""
    claims = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry_point.dist
        distribution_name = distribution.name if distribution is not None else ""
        own = _normalise(distribution_name) == _OWN_DISTRIBUTION
        registration = _Registration(
            name=entry_point.name,
            source="bundled" if own else "entry point",
            distribution=f"{distribution_name} {distribution.version}" if distribution is not None else "",
            target_text=entry_point.value,
            load_target=entry_point.load,
        )
        claims.setdefault(entry_point.name, []).append(registration)
    if not any(c.source == "bundled" for claimants in claims.values() for c in claimants):
        # A source checkout that was never installed has no entry points; the bundled models are still there.
        for name, function in ((DEFAULT_MODEL, bundled_model), (FAST_MODEL, fast_model)):
            bundled = _Registration(name, "bundled", "", _BUNDLED_TARGETS[name], lambda f=function: f)
            claims.setdefault(name, []).append(bundled)
    return claims


def _refresh_entry_points():
    importlib.invalidate_caches()  # importlib.metadata and the import system cache what they found on sys.path
    _entry_point_registrations.cache_clear()


def _weights_directory_of(name, claimants):
    """The weights directory of the one registration of ``name``, or an error naming the model and its source.

    An import failure stays an `ImportError` and missing files a
    `FileNotFoundError`; anything else a plugin does wrong is a `ValueError`.
    """
    if len(claimants) > 1:
        msg = (
            f"model name {name!r} is claimed by {_describe_claimants(claimants)}; uninstall one, "
            f"or choose with register_model({name!r}, target, force=True)"
        )
        raise ValueError(msg)
    registration = claimants[0]
    try:
        directory, _ = _resolve(registration)
    except Exception as error:  # a third-party plugin may fail in any way; say which one failed
        msg = f"model {name!r} ({registration.describe()}) is unavailable: {type(error).__name__}: {error}"
        category = ValueError
        if isinstance(error, ImportError):
            category = ImportError
        elif isinstance(error, FileNotFoundError):
            category = FileNotFoundError
        raise category(msg) from error
    return directory


def _resolve(registration):
    """Import and call a registration's target; return its weights directory and metadata."""
    try:
        target = registration.load_target()
    except ImportError:
        raise
    except Exception as error:  # a module that raises on import, or lacks the named attribute
        msg = f"cannot import {registration.target_text!r} ({type(error).__name__}: {error})"
        raise ImportError(msg) from error
    value = target() if callable(target) else target
    if not isinstance(value, (str, os.PathLike)):
        msg = f"its target returned {value!r}, not the path of a weights directory"
        raise TypeError(msg)
    directory = Path(value)
    directory = directory.parent if directory.is_file() else directory
    metadata = read_metadata(directory)
    if not (directory / TENSOR_FILE).is_file():
        msg = f"{str(directory / TENSOR_FILE)!r} does not exist"
        raise FileNotFoundError(msg)
    return directory, metadata


def _registration_in_code(name, target):
    if isinstance(target, (str, os.PathLike)):
        directory = Path(target).resolve()
        directory = directory.parent if directory.is_file() else directory
        read_metadata(directory)  # a wrong path fails now, naming it, not at first use
        return _Registration(name, "registered in code", "", str(directory), lambda: directory)
    if callable(target):
        text = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
        return _Registration(name, "registered in code", "", text, lambda: target)
    msg = f"target of model {name!r} must be a weights directory or a callable returning one, got {target!r}"
    raise TypeError(msg)


def _validate_name(name):
    if not _is_valid_name(name):
        msg = f"model name must be a non-empty string without surrounding blanks, '/' or '\\', got {name!r}"
        raise ValueError(msg)


def _is_valid_name(name):
    return isinstance(name, str) and name == name.strip() and bool(name) and not re.search(r"[/\\]", name)


def _describe_claimants(claimants):
    return " and ".join(registration.describe() for registration in claimants)


def _normalise(distribution_name):
    return re.sub(r"[-_.]+", "-", distribution_name).lower()
