"""Running a loaded model over many sources, in chunks and batches.

Sources are processed in chunks of `CHUNK_SIZE` (positions, cutouts and
features for one chunk at a time), so memory is bounded by the chunk, not by
the table. Within a chunk the network runs in batches; on a GPU it uses
bfloat16 autocast and ``channels_last``, and a CUDA out-of-memory error halves
the batch (with one warning) instead of failing.
"""

import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from .exceptions import StarGalaxyWarning
from .inputs import prepare_inputs

__all__ = ["CHUNK_SIZE", "default_batch_size", "predict_sources", "run_network"]

#: Sources prepared at a time (bounds memory: about 60 kB per source for 7 bands at 32 px).
CHUNK_SIZE = 8192

#: Tables at least this long get a progress bar unless ``progress=False``.
PROGRESS_MIN_SOURCES = 5000


def default_batch_size(device):
    """Network batch size for a device: large on a GPU, modest on a CPU.

    Examples
    --------
    >>> default_batch_size(torch.device("cpu"))
    256
    """
    return 4096 if device.type == "cuda" else 256


def predict_sources(model, band_images, positions, *, batch_size=None, progress=None, chunk_size=CHUNK_SIZE):
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
        Sources prepared at a time.

    Returns
    -------
    p_star : 1D float32 `~numpy.ndarray`
        NaN for sources that could not be classified.
    flags : 1D int32 `~numpy.ndarray`
    """
    n_sources = len(positions)
    batch_size = _validate_batch_size(batch_size, model.device)
    if progress is None:
        progress = n_sources >= PROGRESS_MIN_SOURCES
    p_star = np.full(n_sources, np.nan, dtype=np.float32)
    flags = np.zeros(n_sources, dtype=np.int32)
    with tqdm(total=n_sources, disable=not progress, unit="source", desc="classifying") as bar:
        prepared = _prepare_chunks(model, band_images, positions, chunk_size, flags, bar)
        for rows, stamps, catalog in _regroup(prepared, batch_size):
            p_star[rows] = run_network(model, stamps, catalog, batch_size)
    return p_star, flags


def _prepare_chunks(model, band_images, positions, chunk_size, flags, bar):
    """Yield ``(rows, stamps, catalog)`` of the classifiable sources chunk by chunk, filling ``flags``."""
    for start in range(0, len(positions), chunk_size):
        rows = slice(start, min(start + chunk_size, len(positions)))
        inputs = prepare_inputs(band_images, positions[rows], model.bands, model.stamp_size)
        flags[rows] = inputs.flags
        usable = np.flatnonzero(inputs.classifiable)
        yield start + usable, inputs.stamps[usable], inputs.catalog[usable]
        bar.update(rows.stop - rows.start)


def _regroup(pieces, batch_size):
    """Regroup prepared pieces into whole multiples of ``batch_size`` sources (the last may be short).

    CPU kernels round differently for different batch shapes, so the network
    must see the same batches whatever the chunk size for results to be bit
    identical.
    """
    held, n_held = [], 0
    for piece in pieces:
        held.append(piece)
        n_held += len(piece[0])
        if n_held >= batch_size:
            rows, stamps, catalog = (np.concatenate(parts) for parts in zip(*held, strict=True))
            n_ready = n_held - n_held % batch_size
            yield rows[:n_ready], stamps[:n_ready], catalog[:n_ready]
            held, n_held = [(rows[n_ready:], stamps[n_ready:], catalog[n_ready:])], n_held - n_ready
    if n_held:
        yield tuple(np.concatenate(parts) for parts in zip(*held, strict=True))


def run_network(model, stamps, catalog, batch_size):
    """Calibrated star probabilities for prepared inputs, batch by batch.

    A CUDA out-of-memory error halves the batch size and retries.
    """
    device = model.device
    on_gpu = device.type == "cuda"
    results = np.empty(len(stamps), dtype=np.float32)
    start = 0
    warned = False
    while start < len(stamps):
        stop = min(start + batch_size, len(stamps))
        try:
            results[start:stop] = _forward(model, stamps[start:stop], catalog[start:stop], on_gpu)
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            torch.cuda.empty_cache()
            batch_size //= 2
            if not warned:
                warnings.warn(
                    f"GPU out of memory; continuing with batch_size={batch_size}",
                    StarGalaxyWarning,
                    stacklevel=2,
                )
                warned = True
            continue
        start = stop
    return results


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


def _validate_batch_size(batch_size, device):
    if batch_size is None:
        return default_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    return int(batch_size)
