"""Running a loaded model over many sources, in chunks and batches.

Sources are prepared in chunks of `CHUNK_SIZE` (positions, cutouts and
features for one chunk at a time), so memory is bounded by the chunk, not by
the table: about ``workers + 2`` prepared chunks exist at once, and the
network reads them through views, without copies. Chunks are prepared by a
pool of ``workers`` threads (NumPy releases the GIL in the array work) while
the calling thread runs the network on the chunks already prepared, so on a
GPU preparation and inference overlap. Results come back in table order and
are bit identical whatever ``workers`` and ``chunk_size`` are.

The network runs in batches; on a GPU it uses pinned memory with
non-blocking copies, bfloat16 autocast and ``channels_last``, and a CUDA
out-of-memory error halves the batch (with one warning) instead of failing.
"""

import collections
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from .exceptions import StarGalaxyWarning
from .inputs import prepare_inputs

__all__ = ["CHUNK_SIZE", "default_batch_size", "default_workers", "predict_sources", "run_network"]

#: Sources prepared at a time by one worker (about 57 kB per source for 7 bands at 32 px, so
#: about 120 MB per chunk; about ``workers + 2`` chunks are held at once).
CHUNK_SIZE = 2048

#: Most preparation threads used by default (more rarely pays: the network becomes the limit).
MAX_DEFAULT_WORKERS = 16

#: Tables at least this long get a progress bar unless ``progress=False``.
PROGRESS_MIN_SOURCES = 5000


def default_batch_size(device):
    """Network batch size for a device: large on a GPU, modest on a CPU.

    Parameters
    ----------
    device : `torch.device`

    Returns
    -------
    batch_size : int

    Examples
    --------
    >>> default_batch_size(torch.device("cpu"))
    256
    """
    return 4096 if device.type == "cuda" else 256


def default_workers(device):
    """Number of preparation threads for a device.

    On a GPU, preparation is the bottleneck, so every CPU core prepares chunks
    (up to `MAX_DEFAULT_WORKERS`). On a CPU the network needs the cores, so one
    thread prepares the next chunk while the network runs on the current one.

    Parameters
    ----------
    device : `torch.device`

    Returns
    -------
    workers : int

    Examples
    --------
    >>> default_workers(torch.device("cpu"))
    1
    """
    if device.type == "cpu":
        return 1
    return max(1, min(MAX_DEFAULT_WORKERS, _available_cores()))


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def predict_sources(
    model,
    band_images,
    positions,
    *,
    batch_size=None,
    progress=None,
    chunk_size=CHUNK_SIZE,
    workers=None,
):
    """Star probability and flags for every source.

    Parameters
    ----------
    model : `~astro_stargal.weights.LoadedModel`
    band_images : dict
        Band -> `~astro_stargal.images.BandImage`.
    positions : `~astro_stargal.positions.SourcePositions`
    batch_size : int, optional
        Network batch size (default `default_batch_size`).
    progress : bool, optional
        Show a progress bar (default: for `PROGRESS_MIN_SOURCES` sources or more).
    chunk_size : int, optional
        Sources prepared at a time by one worker.
    workers : int, optional
        Threads preparing chunks (default `default_workers`); 0 prepares in
        the calling thread, between network batches.

    Returns
    -------
    p_star : 1D float32 `~numpy.ndarray`
        NaN for sources that could not be classified.
    flags : 1D int32 `~numpy.ndarray`

    Examples
    --------
    >>> from astro_stargal.images import read_images
    >>> from astro_stargal.positions import positions_from_table
    >>> model = load_model(device="cpu")  # doctest: +SKIP
    >>> band_images = read_images({"r": "r.fits"}, model.bands)  # doctest: +SKIP
    >>> p_star, flags = predict_sources(model, band_images, positions_from_table(table))  # doctest: +SKIP
    """
    n_sources = len(positions)
    batch_size = _validate_batch_size(batch_size, model.device)
    workers = _validate_workers(workers, model.device)
    if progress is None:
        progress = n_sources >= PROGRESS_MIN_SOURCES
    p_star = np.full(n_sources, np.nan, dtype=np.float32)
    flags = np.zeros(n_sources, dtype=np.int32)
    with tqdm(total=n_sources, disable=not progress, unit="source", desc="classifying") as bar:
        prepared = _prepare_chunks(model, band_images, positions, chunk_size, workers, flags, bar)
        network = _NetworkRunner(model, batch_size)
        for rows, stamps, catalog in _regroup(prepared, batch_size):
            p_star[rows] = network(stamps, catalog)
    return p_star, flags


def _prepare_chunks(model, band_images, positions, chunk_size, workers, flags, bar):
    """Yield ``(rows, stamps, catalog)`` of the classifiable sources chunk by chunk, in order, filling ``flags``."""
    starts = range(0, len(positions), chunk_size)

    def prepare(start):
        return prepare_inputs(
            band_images, positions[start : start + chunk_size], model.bands, model.stamp_size
        )

    if workers == 0 or len(starts) < 2:
        prepared = (prepare(start) for start in starts)
        yield from _usable_rows(starts, prepared, flags, bar)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="astro_stargal-prepare") as pool:
        yield from _usable_rows(starts, _ordered(pool, prepare, starts, ahead=workers + 1), flags, bar)


def _ordered(pool, function, items, *, ahead):
    """``function(item)`` for each item, in order, with at most ``ahead`` results pending or unread.

    Bounding the queue bounds memory: a fast pool cannot run far ahead of a
    slow consumer. Leaving early cancels the chunks not yet started.
    """
    pending = collections.deque()
    items = iter(items)
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _usable_rows(starts, prepared, flags, bar):
    for start, inputs in zip(starts, prepared, strict=True):
        flags[start : start + len(inputs.flags)] = inputs.flags
        usable = inputs.classifiable
        if usable.all():  # the common case: views, no copy
            yield start + np.arange(len(usable)), inputs.stamps, inputs.catalog
        else:
            rows = np.flatnonzero(usable)
            yield start + rows, inputs.stamps[rows], inputs.catalog[rows]
        bar.update(len(usable))


def _regroup(pieces, batch_size):
    """Regroup prepared pieces into whole multiples of ``batch_size`` sources (the last may be short).

    CPU kernels round differently for different batch shapes, so the network
    must see the same batches whatever the chunk size for results to be bit
    identical. Whole batches are passed on as views of each piece; only a
    batch that straddles two pieces is copied.
    """
    held, n_held = [], 0
    for piece in pieces:
        if n_held:
            # Complete the straddling batch from the head of this piece.
            needed = min(batch_size - n_held, len(piece[0]))
            held.append(tuple(part[:needed].copy() for part in piece))
            piece = tuple(part[needed:] for part in piece)
            n_held += needed
            if n_held < batch_size:
                continue
            yield tuple(np.concatenate(parts) for parts in zip(*held, strict=True))
            held, n_held = [], 0
        n_whole = len(piece[0]) - len(piece[0]) % batch_size
        if n_whole:
            yield tuple(part[:n_whole] for part in piece)
        if n_whole < len(piece[0]):
            # Copy the short tail, so the rest of the piece can be freed.
            held, n_held = [tuple(part[n_whole:].copy() for part in piece)], len(piece[0]) - n_whole
    if n_held:
        yield tuple(np.concatenate(parts) for parts in zip(*held, strict=True))


def run_network(model, stamps, catalog, batch_size):
    """Calibrated star probabilities for prepared inputs, batch by batch.

    A CUDA out-of-memory error halves the batch size and retries.

    Parameters
    ----------
    model : `~astro_stargal.weights.LoadedModel`
    stamps, catalog : `~numpy.ndarray`
        Prepared inputs (see `~astro_stargal.inputs.PreparedInputs`).
    batch_size : int
        Sources per network call.

    Returns
    -------
    p_star : 1D float32 `~numpy.ndarray`

    Examples
    --------
    >>> from astro_stargal.inputs import prepare_inputs
    >>> model = load_model(device="cpu")  # doctest: +SKIP
    >>> inputs = prepare_inputs(band_images, positions, model.bands, model.stamp_size)  # doctest: +SKIP
    >>> p_star = run_network(model, inputs.stamps, inputs.catalog, 256)  # doctest: +SKIP
    """
    return _NetworkRunner(model, batch_size)(stamps, catalog)


class _NetworkRunner:
    """Runs the network batch by batch and keeps a batch size reduced by an out-of-memory error.

    One runner serves a whole `predict_sources` call, so the reduced size
    holds for the rest of the call and the warning is said once.
    """

    def __init__(self, model, batch_size):
        self.model = model
        self.batch_size = batch_size
        self.warned = False

    def __call__(self, stamps, catalog):
        on_gpu = self.model.device.type == "cuda"
        results = np.empty(len(stamps), dtype=np.float32)
        start = 0
        while start < len(stamps):
            stop = min(start + self.batch_size, len(stamps))
            try:
                results[start:stop] = _forward(self.model, stamps[start:stop], catalog[start:stop], on_gpu)
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self._halve_batch_size()
                continue
            start = stop
        return results

    def _halve_batch_size(self):
        torch.cuda.empty_cache()
        self.batch_size //= 2
        if not self.warned:
            warnings.warn(
                f"GPU out of memory; continuing with batch_size={self.batch_size}",
                StarGalaxyWarning,
                stacklevel=4,
            )
            self.warned = True


@torch.inference_mode()
def _forward(model, stamps, catalog, on_gpu):
    device = model.device
    stamps = torch.from_numpy(stamps)
    catalog = torch.from_numpy(catalog)
    if on_gpu:
        stamps = (
            stamps.pin_memory().to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        )
        catalog = catalog.pin_memory().to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            probability = model.net.predict_proba(stamps, catalog)
    else:
        probability = model.net.predict_proba(stamps.to(device), catalog.to(device))
    return probability.float().cpu().numpy()


def _validate_workers(workers, device):
    if workers is None:
        return default_workers(device)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        msg = f"workers must be a non-negative integer (0 prepares in the calling thread), got {workers!r}"
        raise ValueError(msg)
    return int(workers)


def _validate_batch_size(batch_size, device):
    if batch_size is None:
        return default_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    return int(batch_size)
