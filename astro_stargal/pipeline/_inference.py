"""Running a loaded model over many sources, in chunks and batches.

Sources are cut in chunks of `CHUNK_SIZE` (positions and raw stamps for one
chunk at a time, `~astro_stargal.pipeline.cut_stamps`), so memory is bounded by
the chunk, not by the table: about ``workers + 2`` chunks exist at once. Chunks
are cut by a pool of ``workers`` threads (NumPy releases the GIL in the
gathers) while the calling thread feeds the chunks already cut to the model's
device, in batches of ``batch_size`` sources counted from the start of the
table. On the device each batch is finished (features, flags, normalisation:
`~astro_stargal.pipeline.finish_inputs`) and classified, so on a GPU the CPU
cores only gather pixels and the arithmetic runs next to the network. Results
come back in table order and are bit identical whatever ``workers`` and
``chunk_size`` are, because the batches are.

On a GPU with room for the images (`~astro_stargal.pipeline.DeviceImages`:
at most a quarter of its free memory), the images are copied there once and
the GPU cuts the stamps itself: the CPU threads only transform positions.
Otherwise the threads cut raw stamps straight into pinned memory, copied
asynchronously. Either way the next batch is queued before the previous
batch's results are read back, so the GPU does not wait for Python between
batches. The
network runs in bfloat16 autocast with ``channels_last``, and a CUDA
out-of-memory error halves the batch (with one warning) instead of failing.
"""

import collections
import contextlib
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from ..exceptions import StarGalaxyWarning
from ._inputs import (
    BandConstants,
    DeviceImages,
    RawStamps,
    cut_stamps,
    finish_inputs,
    locate_sources,
    shared_grids,
)

__all__ = [
    "CHUNK_SIZE",
    "EXPECTED_SOURCES_PER_SECOND",
    "PROGRESS_AFTER_SECONDS",
    "default_batch_size",
    "default_threads",
    "default_workers",
    "expected_seconds",
    "predict_sources",
    "run_network",
]

#: Sources cut at a time by one worker (about 29 kB of raw stamps per source for 7 bands at
#: 32 px, so about 60 MB per chunk; about ``workers + 2`` chunks are held at once).
CHUNK_SIZE = 2048

#: Most preparation threads used by default (more rarely pays: the network becomes the limit).
MAX_DEFAULT_WORKERS = 16

#: Rough end-to-end speed of the bundled model, in sources per second: per PyTorch thread on a CPU
#: (about 300 measured on one core of the 2-core development CPU), and on a GPU (150,000 to 250,000
#: measured on an H100; a quarter of that is assumed for smaller GPUs; Apple MPS is not measured).
EXPECTED_SOURCES_PER_SECOND = {"cpu": 300, "cuda": 50_000, "mps": 1_000}

#: A call expected to take longer than this (seconds) shows a progress bar unless ``progress=False``.
PROGRESS_AFTER_SECONDS = 2.0

#: Seconds over which `default_threads` measures how busy the machine is.
BUSY_SAMPLE_SECONDS = 0.05


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
    return 8192 if device.type == "cuda" else 256


def default_workers(device):
    """Number of preparation threads for a device.

    On a GPU, the CPU cores only cut stamps, and every core helps (up to
    `MAX_DEFAULT_WORKERS`). On a CPU the network needs the cores, so one
    thread cuts the next chunk while the network runs on the current one.

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


def default_threads(device):
    """Number of PyTorch threads for the network on a device.

    On a CPU: the cores this process may use (its CPU affinity) less those
    that other processes keep busy (measured over `BUSY_SAMPLE_SECONDS` from
    ``/proc/stat`` on Linux; not measured elsewhere), rounded, at least 1 and
    at most ``torch.get_num_threads()`` (which follows ``OMP_NUM_THREADS``
    and ``torch.set_num_threads``). Threads waiting for a core that another
    process holds stall the others at every step of the network: on the
    2-core development CPU with another job running, 2 threads classified
    3 to 4 times slower than 1. On a GPU the current setting is kept.

    Parameters
    ----------
    device : `torch.device`

    Returns
    -------
    threads : int

    Examples
    --------
    >>> 1 <= default_threads(torch.device("cpu")) <= torch.get_num_threads()
    True
    """
    if device.type != "cpu":
        return torch.get_num_threads()
    cores = _available_cores()
    free = round(cores - _cores_busy_elsewhere())
    return max(1, min(torch.get_num_threads(), cores, free))


def expected_seconds(n_sources, device, threads=None):
    """Rough time to classify ``n_sources`` on ``device`` (`EXPECTED_SOURCES_PER_SECOND`).

    Parameters
    ----------
    n_sources : int
    device : `torch.device`
    threads : int, optional
        PyTorch threads on a CPU (default ``torch.get_num_threads()``).

    Returns
    -------
    seconds : float

    Examples
    --------
    >>> expected_seconds(3000, torch.device("cpu"), threads=2)
    5.0
    """
    rate = EXPECTED_SOURCES_PER_SECOND.get(device.type, EXPECTED_SOURCES_PER_SECOND["cpu"])
    if device.type == "cpu":
        rate *= threads or torch.get_num_threads()
    return n_sources / rate


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cores_busy_elsewhere(interval=BUSY_SAMPLE_SECONDS):
    """Cores that other processes kept busy over the last ``interval`` seconds; 0.0 where unknown.

    Reads the machine's CPU times in ``/proc/stat`` (Linux) before and after,
    and takes off what this process used meanwhile.
    """
    try:
        before, own_before = _machine_cpu_times(), time.process_time()
        time.sleep(interval)
        after, own_after = _machine_cpu_times(), time.process_time()
    except (OSError, ValueError):  # no /proc/stat: not Linux
        return 0.0
    busy, total = (after[0] - before[0]), (after[1] - before[1])
    if total <= 0:
        return 0.0
    busy_cores = busy / total * (os.cpu_count() or 1)
    return max(0.0, busy_cores - (own_after - own_before) / interval)


def _machine_cpu_times():
    """``(busy, total)`` CPU time of the whole machine so far, in clock ticks (first line of /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user and nice]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


@contextlib.contextmanager
def _torch_threads(threads):
    """Run the block with ``threads`` PyTorch threads, then give the caller back its own setting."""
    previous = torch.get_num_threads()
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads != previous:
            torch.set_num_threads(previous)


def predict_sources(
    model,
    band_images,
    positions,
    *,
    batch_size=None,
    progress=None,
    chunk_size=CHUNK_SIZE,
    workers=None,
    threads=None,
    psf_models=None,
):
    """Star probability and flags for every source.

    Parameters
    ----------
    model : `~astro_stargal.models.LoadedModel`
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`.
    positions : `~astro_stargal.io.SourcePositions`
    batch_size : int, optional
        Network batch size (default `default_batch_size`).
    progress : bool, optional
        Show a progress bar (default: when the call is expected to take more
        than `PROGRESS_AFTER_SECONDS`, see `expected_seconds`).
    chunk_size : int, optional
        Sources prepared at a time by one worker.
    workers : int, optional
        Threads preparing chunks (default `default_workers`); 0 prepares in
        the calling thread, between network batches.
    threads : int, optional
        PyTorch threads running the network during the call (default
        `default_threads`); the caller's setting is restored afterwards.
    psf_models : dict, optional
        Band -> `~astro_stargal.psf.PSFModel`; needed for a model whose
        features include PSF-relative ones (`~astro_stargal.pipeline.band_psfs`).

    Returns
    -------
    p_star : 1D float32 `~numpy.ndarray`
        NaN for sources that could not be classified.
    flags : 1D int32 `~numpy.ndarray`

    Examples
    --------
    >>> from astro_stargal.io import read_images
    >>> from astro_stargal.io import positions_from_table
    >>> model = load_model(device="cpu")  # doctest: +SKIP
    >>> band_images = read_images({"r": "r.fits"}, model.bands)  # doctest: +SKIP
    >>> p_star, flags = predict_sources(model, band_images, positions_from_table(table))  # doctest: +SKIP
    """
    n_sources = len(positions)
    batch_size = _validate_batch_size(batch_size, model.device)
    workers = _validate_workers(workers, model.device)
    threads = _validate_threads(threads, model.device)
    if progress is None:
        progress = expected_seconds(n_sources, model.device, threads) > PROGRESS_AFTER_SECONDS
    with _torch_threads(threads):
        return _predict(model, band_images, positions, batch_size, progress, chunk_size, workers, psf_models)


def _predict(model, band_images, positions, batch_size, progress, chunk_size, workers, psf_models):
    n_sources = len(positions)
    p_star = np.full(n_sources, np.nan, dtype=np.float32)
    flags = np.zeros(n_sources, dtype=np.int32)
    on_gpu = model.device.type == "cuda"
    same_grid = shared_grids(band_images, model.bands)
    # What the stamps and features are is the model's to say (its metadata), not this module's.
    constants = BandConstants.from_images(
        band_images,
        model.bands,
        feature_names=model.feature_names,
        image_softening=model.image_softening,
        psf_models=psf_models,
        stamp_size=model.stamp_size,
        image_crop=model.image_crop,
    )
    located = {"same_grid": same_grid, "pin_memory": on_gpu, "psf_models": psf_models}

    # With room on the GPU for the images, the GPU cuts the stamps itself and the CPU only locates them.
    device_images = None
    if DeviceImages.fit(band_images, model.device):
        device_images = DeviceImages(band_images, model.bands, model.stamp_size, model.device)

    def prepare(start):
        chunk = positions[start : start + chunk_size]
        if device_images is not None:
            return locate_sources(band_images, chunk, model.bands, model.stamp_size, **located)
        raw = cut_stamps(band_images, chunk, model.bands, model.stamp_size, **located)
        # On a GPU the rest of the preparation runs there, batch by batch, beside the network.
        return raw if on_gpu else finish_inputs(raw, constants)

    with tqdm(total=n_sources, disable=not progress, unit="source", desc="classifying") as bar:
        network = _NetworkRunner(model, constants, batch_size, device_images)
        starts = range(0, n_sources, chunk_size)
        for rows, batch_p_star, batch_flags in network.run(
            _batches(_in_order(prepare, starts, workers), batch_size)
        ):
            p_star[rows] = batch_p_star
            flags[rows] = batch_flags
            bar.update(rows.stop - rows.start)
    return p_star, flags


def _in_order(function, items, workers):
    """``function(item)`` for each item, in order: in a thread pool, or here when ``workers`` is 0."""
    if workers == 0 or len(items) < 2:
        yield from (function(item) for item in items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="astro_stargal-cut") as pool:
        yield from _ordered(pool, function, items, ahead=workers + 1)


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


def _batches(chunks, batch_size):
    """Regroup chunks of `~astro_stargal.pipeline.RawStamps` into batches of ``batch_size`` table rows.

    Yields ``(rows, parts)``: the slice of table rows and the list of chunk
    views that make up the batch (one view unless the batch straddles chunks).
    Batches start at multiples of ``batch_size`` whatever the chunk size, so
    the network always sees the same batches (CPU kernels round differently
    for different batch shapes).
    """
    held, start = [], 0
    for chunk in chunks:
        while len(chunk):
            n_held = sum(len(part) for part in held)
            take = min(batch_size - n_held, len(chunk))
            held.append(chunk[:take])
            chunk = chunk[take:]
            if n_held + take == batch_size:
                yield slice(start, start + batch_size), held
                held, start = [], start + batch_size
    if held:
        yield slice(start, start + sum(len(part) for part in held)), held


def run_network(model, stamps, catalog, batch_size):
    """Calibrated star probabilities for already prepared inputs, batch by batch.

    Parameters
    ----------
    model : `~astro_stargal.models.LoadedModel`
    stamps, catalog : `~numpy.ndarray`
        Prepared inputs (see `~astro_stargal.pipeline.PreparedInputs`).
    batch_size : int
        Sources per network call.

    Returns
    -------
    p_star : 1D float32 `~numpy.ndarray`

    Examples
    --------
    >>> from astro_stargal.pipeline import prepare_inputs
    >>> model = load_model(device="cpu")  # doctest: +SKIP
    >>> inputs = prepare_inputs(band_images, positions, model.bands, model.stamp_size)  # doctest: +SKIP
    >>> p_star = run_network(model, inputs.stamps, inputs.catalog, 256)  # doctest: +SKIP
    """
    on_gpu = model.device.type == "cuda"
    results = np.empty(len(stamps), dtype=np.float32)
    for start in range(0, len(stamps), batch_size):
        batch = slice(start, start + batch_size)
        stamps_batch = torch.from_numpy(stamps[batch])
        catalog_batch = torch.from_numpy(catalog[batch])
        if on_gpu:
            stamps_batch = stamps_batch.pin_memory().to(model.device, non_blocking=True)
            catalog_batch = catalog_batch.pin_memory().to(model.device, non_blocking=True)
        results[batch] = _network(model, stamps_batch, catalog_batch).float().cpu().numpy()
    return results


class _NetworkRunner:
    """Finishes and classifies batches on the model's device, one batch in flight ahead of the results.

    One runner serves a whole `predict_sources` call, so a batch size reduced
    by an out-of-memory error holds for the rest of the call and the warning
    is said once.
    """

    def __init__(self, model, constants, batch_size, device_images=None):
        self.model = model
        self.constants = constants.to(model.device)
        self.device_images = device_images
        self.batch_size = batch_size
        self.warned = False

    def run(self, batches):
        """Yield ``(rows, p_star, flags)`` (NumPy) for each ``(rows, parts)`` batch, in order."""
        in_flight = None
        for rows, parts in batches:
            launched = (rows, self._launch(parts))
            if in_flight is not None:
                yield self._collect(*in_flight)
            in_flight = launched
        if in_flight is not None:
            yield self._collect(*in_flight)

    def _launch(self, parts):
        """Queue one batch on the device; return its results (host tensors, filled asynchronously on a GPU)."""
        device = self.model.device
        non_blocking = device.type == "cuda"
        batch = type(parts[0]).concatenate([part.to(device, non_blocking=non_blocking) for part in parts])
        results, start = [], 0
        while start < len(batch):
            stop = min(start + self.batch_size, len(batch))
            try:
                results.append(_forward(self.model, batch[start:stop], self.constants, self.device_images))
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self._halve_batch_size()
                continue
            start = stop
        p_star = torch.cat([result[0] for result in results])
        flags = torch.cat([result[1] for result in results])
        if device.type != "cuda":
            return p_star, flags, None
        host_p_star = torch.empty(p_star.shape, dtype=p_star.dtype, pin_memory=True)
        host_flags = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
        host_p_star.copy_(p_star, non_blocking=True)
        host_flags.copy_(flags, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host_p_star, host_flags, done

    @staticmethod
    def _collect(rows, launched):
        p_star, flags, done = launched
        if done is not None:
            done.synchronize()
        return rows, p_star.numpy(), flags.numpy()

    def _halve_batch_size(self):
        torch.cuda.empty_cache()
        self.batch_size //= 2
        if not self.warned:
            warnings.warn(
                f"GPU out of memory; continuing with batch_size={self.batch_size}",
                StarGalaxyWarning,
                stacklevel=5,
            )
            self.warned = True


@torch.inference_mode()
def _forward(model, batch, constants, device_images=None):
    """Classify one batch on the model's device: ``(p_star, flags)`` tensors there.

    ``batch`` is `~astro_stargal.pipeline.PreparedInputs`, or `~astro_stargal.pipeline.RawStamps`
    to be finished there first (and cut there from ``device_images`` when it
    has no pixels yet). ``p_star`` is NaN for sources with no band present.
    """
    if isinstance(batch, RawStamps):
        if batch.pixels is None:
            batch = device_images.cut(batch)
        batch = finish_inputs(batch, constants)
    inputs = batch.to(model.device)  # the CPU's NumPy kernel gives arrays
    p_star = _network(model, inputs.stamps, inputs.catalog).float()
    return torch.where(inputs.classifiable, p_star, torch.nan), inputs.flags


@torch.inference_mode()
def _network(model, stamps, catalog):
    if model.device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model.net.predict_proba(stamps.contiguous(memory_format=torch.channels_last), catalog)
    if model.net.backbone == "compact":
        stamps = stamps.contiguous(memory_format=torch.channels_last)
    return model.net.predict_proba(stamps, catalog)


def _validate_workers(workers, device):
    if workers is None:
        return default_workers(device)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        msg = f"workers must be a non-negative integer (0 cuts in the calling thread), got {workers!r}"
        raise ValueError(msg)
    return int(workers)


def _validate_threads(threads, device):
    if threads is None:
        return default_threads(device)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        msg = f"threads must be a positive integer, got {threads!r}"
        raise ValueError(msg)
    return int(threads)


def _validate_batch_size(batch_size, device):
    if batch_size is None:
        return default_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    return int(batch_size)
