"""Classifying many tiles on many machines with dask.distributed.

`classify_tiles` sends one task per tile to a dask cluster (the user's
`~distributed.Client`, or a `~distributed.LocalCluster` made for the call).
Each worker loads the model once, through a `~distributed.WorkerPlugin`, and
runs `~astro_stargal.classify_sources` on its tiles. Images are best given as
FITS paths that every worker can read: each worker then memory-maps only what
it needs, instead of receiving pixels over the network.

Every input row comes back exactly once, in input order. A tile whose task
still fails after ``retries`` retries is reported (a `TileFailure` with its
name and error, and one `~astro_stargal.exceptions.StarGalaxyWarning` for all
failures); its rows come back with NaN ``p_star``, masked ``sg_class`` and the
``TILE_FAILED`` flag, while every other tile's result is kept.

The ``BLENDED`` flag looks for neighbours among the rows of the same tile only:
a source whose close neighbour was assigned to another tile is not flagged.

dask is optional: ``pip install astro_stargal[distributed]``.
"""

import hashlib
import traceback
import uuid
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from astropy.table import Table

from ._columns import OUTPUT_COLUMNS, PROVENANCE_KEYS, output_columns, validate_threshold
from .classify import classify_sources
from .exceptions import StarGalaxyWarning
from .flags import SourceFlag
from .models import DEFAULT_MODEL, LoadedModel, load_model

try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # dask is optional; classify_tiles says how to install it
    _WorkerPlugin = object

__all__ = ["ClassifiedTiles", "ModelPlugin", "TileFailure", "classify_tiles"]

#: Calls with at least this many tiles get a progress bar unless ``progress=False``.
PROGRESS_MIN_TILES = 10

_INSTALL_HINT = "classify_tiles needs dask.distributed: pip install astro_stargal[distributed]"


@dataclass(frozen=True)
class TileFailure:
    """A tile that could not be classified.

    Attributes
    ----------
    tile : object
        The tile's name (a key of the mapping, or a value of the tile column).
    error : BaseException
        The error of the last try.
    traceback : str
        The worker's traceback of that error.
    n_rows : int
        Rows of the tile (they come back with NaN ``p_star`` and ``TILE_FAILED``).

    Examples
    --------
    >>> result, failures = classify_tiles(tiles)  # doctest: +SKIP
    >>> for failure in failures:  # doctest: +SKIP
    ...     print(failure.tile, failure.error)
    """

    tile: object
    error: BaseException
    traceback: str
    n_rows: int

    def __str__(self):
        return f"tile {self.tile!r} ({self.n_rows} rows): {type(self.error).__name__}: {self.error}"


class ClassifiedTiles(NamedTuple):
    """What `classify_tiles` returns; unpack it as ``result, failures = classify_tiles(...)``.

    Attributes
    ----------
    result : `~astropy.table.Table` or dict
        For a mapping of tiles, a dict tile -> classified table (same order as
        the input); for one big table, that table classified, rows in their
        original order.
    failures : list of `TileFailure`
        Empty when every tile was classified.

    Examples
    --------
    >>> classified = classify_tiles((big_table, {1: {"r": "tile1_r.fits"}}))  # doctest: +SKIP
    >>> classified.result["p_star"], classified.failures  # doctest: +SKIP
    """

    result: object
    failures: list


class ModelPlugin(_WorkerPlugin):
    """Worker plugin that loads the model once per dask worker.

    Tasks find the model as ``get_worker().plugins[plugin.name].model``.
    ``load_count`` says how often `setup` loaded it (once per worker).

    Parameters
    ----------
    weights : str, `~pathlib.Path` or `~astro_stargal.models.LoadedModel`, optional
        As for `~astro_stargal.models.load_model`.
    device : str, optional
        Device on each worker (default: the best one that worker has).

    Examples
    --------
    >>> from distributed import Client  # doctest: +SKIP
    >>> client = Client()  # doctest: +SKIP
    >>> client.register_plugin(ModelPlugin(), name=ModelPlugin().name)  # doctest: +SKIP
    """

    def __init__(self, weights=None, device=None):
        self.weights = weights
        self.device = device
        self.model = None
        self.load_count = 0

    @property
    def name(self):
        """Plugin name: one per model and device, so different models do not replace each other."""
        weights = self.weights
        if isinstance(weights, LoadedModel):
            weights = f"{weights.name}:{weights.metadata.get('sha256')}"
        key = f"{weights or DEFAULT_MODEL}|{self.device}"
        return f"astro_stargal-model-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def setup(self, worker):
        """Load the model on ``worker``."""
        self.model = load_model(self.weights, device=self.device)
        self.load_count += 1

    def teardown(self, worker):
        """Drop the model."""
        self.model = None


def classify_tiles(
    tiles,
    *,
    client=None,
    weights=None,
    device=None,
    retries=1,
    progress=None,
    tile_column="tile",
    n_workers=None,
    **classify_kwargs,
):
    """Classify the sources of many tiles on a dask cluster.

    Parameters
    ----------
    tiles : dict or tuple
        Either a mapping tile name -> ``(table, images)``, or a pair
        ``(table, tile_images)`` of one big table with a ``tile_column`` and a
        mapping tile -> images dict. ``images`` is what
        `~astro_stargal.classify_sources` takes; FITS paths readable on every
        worker are best (arrays and HDUs are copied to the workers).
    client : `distributed.Client`, optional
        The cluster to use. By default a `~distributed.LocalCluster` with
        ``n_workers`` single-threaded worker processes is started and closed
        afterwards.
    weights : str, `~pathlib.Path` or `~astro_stargal.models.LoadedModel`, optional
        The model (default the bundled one); loaded once on each worker.
    device : str, optional
        Device on each worker (default: the best one it has).
    retries : int, optional
        How often a failed tile is tried again before it is reported.
    progress : bool, optional
        Progress bar over tiles; by default shown for 10 tiles or more.
    tile_column : str, optional
        Column naming each row's tile, for the big-table form.
    n_workers : int, optional
        Workers of the local cluster (ignored with ``client``; default: dask's choice).
    **classify_kwargs
        Passed to `~astro_stargal.classify_sources` (``threshold``,
        ``batch_size``, ``chunk_size``, ``workers``, ``zeropoints``,
        ``position_columns``, ``overwrite``).

    Returns
    -------
    classified : `ClassifiedTiles`
        ``(result, failures)``. Every input row comes back exactly once, in
        input order; the rows of a failed tile have NaN ``p_star``, masked
        ``sg_class`` and the ``TILE_FAILED`` flag.

    Raises
    ------
    ImportError
        If dask.distributed is not installed.
    TypeError, ValueError
        For a malformed ``tiles`` (the message names the bad tile), a missing
        tile column, tiles without images, or bad options.

    Warns
    -----
    StarGalaxyWarning
        Once, listing the tiles that failed; warnings raised on the workers
        are repeated with their tile's name.

    Examples
    --------
    >>> from astropy.table import Table
    >>> big = Table.read("catalog.ecsv")  # doctest: +SKIP
    >>> images = {t: {b: f"tile{t}_{b}.fits" for b in "gri"} for t in set(big["tile"])}  # doctest: +SKIP
    >>> result, failures = classify_tiles((big, images), n_workers=4)  # doctest: +SKIP
    >>> for failure in failures:  # doctest: +SKIP
    ...     print(failure)
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    _validate_retries(retries)
    validate_threshold(classify_kwargs.get("threshold", 0.5))
    if "progress" in classify_kwargs or "weights" in classify_kwargs:
        msg = "progress and weights are options of classify_tiles itself, not per-tile options"
        raise TypeError(msg)
    jobs, assemble = _jobs(tiles, tile_column, overwrite=classify_kwargs.get("overwrite", False))
    if progress is None:
        progress = len(jobs) >= PROGRESS_MIN_TILES

    own_cluster = None
    if client is None:
        own_cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(own_cluster)
    try:
        outcomes = _run(client, jobs, ModelPlugin(weights, device), retries, progress, classify_kwargs)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()

    model_name = next((o[1] for o in outcomes if not isinstance(o, TileFailure)), None)
    failures = [outcome for outcome in outcomes if isinstance(outcome, TileFailure)]
    if failures:
        warnings.warn(
            f"{len(failures)} of {len(jobs)} tile(s) failed after {retries} retry(ies); their rows have "
            f"NaN p_star and the TILE_FAILED flag: " + "; ".join(str(failure) for failure in failures),
            StarGalaxyWarning,
            stacklevel=2,
        )
    columns_for = _column_builder(
        classify_kwargs.get("threshold", 0.5), model_name or str(weights or DEFAULT_MODEL)
    )
    return ClassifiedTiles(assemble(outcomes, columns_for), failures)


def _validate_retries(retries):
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        msg = f"retries must be a non-negative integer, got {retries!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class _Job:
    tile: object
    table: Table
    images: object


def _jobs(tiles, tile_column, *, overwrite):
    """Return the per-tile jobs and a function that assembles their outcomes into the result."""
    if isinstance(tiles, tuple) and len(tiles) == 2 and isinstance(tiles[0], Table):
        return _big_table_jobs(*tiles, tile_column, overwrite=overwrite)
    if not hasattr(tiles, "items"):
        msg = (
            "tiles must be a mapping tile -> (table, images) or a pair (table, tile_images), "
            f"got {type(tiles).__name__}"
        )
        raise TypeError(msg)
    jobs = []
    for tile, value in tiles.items():
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Table)):
            msg = f"tile {tile!r}: expected a pair (table, images), got {type(value).__name__}"
            raise TypeError(msg)
        _check_no_output_columns(value[0], f"the table of tile {tile!r}", overwrite)
        jobs.append(_Job(tile, value[0], value[1]))

    def assemble(outcomes, columns_for):
        return {
            job.tile: _with_columns(job.table, outcome, columns_for)
            for job, outcome in zip(jobs, outcomes, strict=True)
        }

    return jobs, assemble


def _big_table_jobs(table, tile_images, tile_column, *, overwrite):
    if tile_column not in table.colnames:
        msg = f"tile column {tile_column!r} not in the table; its columns are {table.colnames}"
        raise ValueError(msg)
    if not hasattr(tile_images, "items"):
        msg = f"tile_images must be a mapping tile -> images, got {type(tile_images).__name__}"
        raise TypeError(msg)
    _check_no_output_columns(table, "the table", overwrite)
    tile_of_row = np.asarray(table[tile_column])
    names, inverse = np.unique(tile_of_row, return_inverse=True)
    missing = [name.item() for name in names if name.item() not in tile_images]
    if missing:
        msg = f"no images for tile(s) {missing[:10]} of column {tile_column!r}; tile_images has {list(tile_images)[:10]}"
        raise ValueError(msg)
    # Stable sort: within a tile, rows keep their order.
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(names) + 1))
    rows = [order[bounds[k] : bounds[k + 1]] for k in range(len(names))]
    jobs = [
        _Job(name.item(), table[index], tile_images[name.item()])
        for name, index in zip(names, rows, strict=True)
    ]

    def assemble(outcomes, columns_for):
        p_star = np.full(len(table), np.nan, dtype=np.float32)
        flags = np.full(len(table), SourceFlag.TILE_FAILED, dtype=np.int32)
        offset = np.full(len(table), np.nan, dtype=np.float32)
        for index, outcome in zip(rows, outcomes, strict=True):
            if not isinstance(outcome, TileFailure):
                p_star[index], flags[index], offset[index] = outcome[0]
        result = _add_columns(table.copy(), columns_for(p_star, flags, offset))
        result.meta.update(_merged_provenance([job.tile for job in jobs], outcomes))
        return result

    return jobs, assemble


def _check_no_output_columns(table, what, overwrite):
    existing = [name for name in OUTPUT_COLUMNS if name in table.colnames]
    if existing and not overwrite:
        msg = f"{what} already has column(s) {existing}; pass overwrite=True to replace them"
        raise ValueError(msg)


def _column_builder(threshold, model_name):
    return lambda p_star, flags, offset: output_columns(p_star, flags, threshold, model_name, offset)


def _merged_provenance(tiles, outcomes):
    """One table's provenance from its tiles': the bands of any tile, each tile's images, the last date."""
    done = [
        (tile, outcome[2])
        for tile, outcome in zip(tiles, outcomes, strict=True)
        if not isinstance(outcome, TileFailure)
    ]
    if not done:
        return {}
    merged = dict(done[0][1])
    bands = dict.fromkeys(band for _, meta in done for band in meta.get("SGBANDS", "").split())
    merged["SGBANDS"] = " ".join(bands)
    merged["SGIMAGES"] = " | ".join(f"tile {tile}: {meta.get('SGIMAGES', '')}" for tile, meta in done)
    merged["SGDATE"] = max(meta.get("SGDATE", "") for _, meta in done)
    return merged


def _with_columns(table, outcome, columns_for):
    if isinstance(outcome, TileFailure):
        p_star = np.full(len(table), np.nan, dtype=np.float32)
        flags = np.full(len(table), SourceFlag.TILE_FAILED, dtype=np.int32)
        offset = np.full(len(table), np.nan, dtype=np.float32)
    else:
        p_star, flags, offset = outcome[0]
    result = _add_columns(table.copy(), columns_for(p_star, flags, offset))
    if not isinstance(outcome, TileFailure):
        result.meta.update(outcome[2])
    return result


def _add_columns(table, columns):
    for name, column in columns.items():
        if name in table.colnames:
            table.replace_column(name, column)
        else:
            table.add_column(column, name=name)
    return table


def _run(client, jobs, plugin, retries, progress, classify_kwargs):
    """Submit one task per tile; return per job ``(arrays, model_name, provenance)`` or a `TileFailure`."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    _ensure_plugin(client, plugin)
    call = uuid.uuid4().hex[:12]  # fresh keys per call, so no stale result of an earlier call is reused
    futures = [
        client.submit(
            _classify_tile,
            job.table,
            job.images,
            plugin.name,
            classify_kwargs,
            key=f"astro_stargal-tile-{call}-{index}",
            retries=retries,
            pure=False,
        )
        for index, job in enumerate(jobs)
    ]
    position = {future.key: index for index, future in enumerate(futures)}
    outcomes = [None] * len(jobs)
    with tqdm(total=len(jobs), disable=not progress, unit="tile", desc="classifying tiles") as bar:
        for future in as_completed(futures):
            index = position[future.key]
            job = jobs[index]
            if future.status == "error":
                error = future.exception()
                text = "".join(traceback.format_tb(future.traceback()))
                outcomes[index] = TileFailure(job.tile, error, text, len(job.table))
            else:
                arrays, model_name, caught, meta = future.result()
                for message, category in caught:
                    warnings.warn(f"tile {job.tile!r}: {message}", category, stacklevel=4)
                outcomes[index] = (arrays, model_name, meta)
            future.release()
            bar.update(1)
    return outcomes


def _ensure_plugin(client, plugin):
    """Register ``plugin`` unless every worker already has it (so a second call does not reload the model)."""
    name = plugin.name
    present = client.run(lambda dask_worker: name in dask_worker.plugins)
    if not present or not all(present.values()):
        client.register_plugin(plugin, name=name)


def _classify_tile(table, images, plugin_name, classify_kwargs):
    """Runs on a worker: classify one tile with the worker's model.

    Returns its output arrays, the model name, the warnings and the provenance ``meta``.
    """
    from distributed import get_worker

    model = get_worker().plugins[plugin_name].model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StarGalaxyWarning)
        result = classify_sources(
            table, images, weights=model, device=model.device, progress=False, **classify_kwargs
        )
    arrays = tuple(
        np.asarray(getattr(result[name], "value", result[name]))
        for name in ("p_star", "sg_flags", "sg_offset")
    )
    forwarded = [(str(w.message), w.category) for w in caught if issubclass(w.category, StarGalaxyWarning)]
    meta = {key: result.meta[key] for key in PROVENANCE_KEYS if key in result.meta}
    return arrays, model.name, forwarded, meta
