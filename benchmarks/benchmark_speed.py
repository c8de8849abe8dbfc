"""Throughput of the bundled models side by side, and of SExtractor's CLASS_STAR on the same field.

Renders one CSST-like field (or reads a simulator directory), then, for each
model of ``--models`` (default both bundled ones, ``csst-resnet50-bilstm``
and ``csst-fast``), times:

* network only: `astro_stargal.pipeline.run_network` on already prepared inputs;
* end to end: `classify_sources` on the truth table (stacked to ``--sources``
  rows) and the FITS files (position transforms, cutouts, features, network,
  output table), with ``--workers`` preparation threads (default: the
  library's choice for the device) and, with ``--serial-sources``, with
  preparation in the calling thread (``workers=0``) for comparison. On a GPU
  that can hold the images, also with the stamps cut by CPU threads instead
  (the path taken when the images are too large for the GPU);
* one tile end to end: `classify_sources` on the field's own table once,
  with each band's PSF measured from the table (the default) and, where the
  simulator wrote them, given as files.

Then SExtractor (``source-extractor`` or ``sex``, if installed) makes one pass
over the r image with CLASS_STAR (detection included, one thread,
``benchmarks/sextractor/compare_peers.sex`` and ``class_star.param``), and
its detections per second are the reference. The ratios between models and
against SExtractor are measured in one run on one machine, so they hold
where absolute rates (which differ between machines) do not.

With ``--repeat N`` every timing is made N times, alternating, and the best
of each is kept. Prints sources per second and the ratios; with ``--output``
the figures are also written as JSON. State the machine with the figures.
Runs from a checkout without installing; the bundled models are then read
from ``weights/``.

Usage::

    python -m benchmarks.benchmark_speed --device cpu --sources 5000 --repeat 3
    python -m benchmarks.benchmark_speed --device cuda --sources 100000
    python -m benchmarks.benchmark_speed [--sky-dir DIR] [--size 1024] [--models A,B] [--workers N]
        [--chunk-size N] [--threads N] [--output results.json]
"""

import argparse
import json
import math
import subprocess
import tempfile
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch
from astropy.table import Table, vstack

from astro_stargal import classify_sources, load_model
from astro_stargal.io import positions_from_table, read_images
from astro_stargal.models import DEFAULT_MODEL, FAST_MODEL, bundled_model, fast_model
from astro_stargal.pipeline import (
    CHUNK_SIZE,
    DeviceImages,
    default_batch_size,
    default_workers,
    prepare_inputs,
    run_network,
)
from astro_stargal.training import labelled_fields

from .common import MissingPrerequisite, Stopwatch, machine_description, require_program, simulated_sky
from .compare_peers import copy_data_files, photometry_options, tool_version, write_plain_image

SEXTRACTOR_DIR = Path(__file__).resolve().parent / "sextractor"
DETECTION_BAND = "r"

#: The bundled models by name; found in ``weights/`` even in a checkout that was never installed.
BUNDLED = {DEFAULT_MODEL: bundled_model, FAST_MODEL: fast_model}


def _fields(args):
    if args.sky_dir:
        return labelled_fields(Path(args.sky_dir))
    return simulated_sky(Path(tempfile.mkdtemp()) / "bench_sky", tiles=1, size=args.size, seed=4242)


def _weights(name):
    return BUNDLED[name]() if name in BUNDLED else name


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sky-dir", help="simulator output directory (default: render one field)")
    parser.add_argument("--size", type=int, default=1024, help="field side when rendering")
    parser.add_argument("--device")
    parser.add_argument(
        "--models",
        default=f"{DEFAULT_MODEL},{FAST_MODEL}",
        help="comma-separated model names or weights directories; the first is the reference",
    )
    parser.add_argument("--batch-size", type=int)
    parser.add_argument(
        "--sources", type=int, default=3000, help="the truth table is stacked to this many rows"
    )
    parser.add_argument(
        "--network-sources", type=int, default=16384, help="prepared sources timed through the network alone"
    )
    parser.add_argument("--serial-sources", type=int, default=0, help="rows timed with workers=0 (0: skip)")
    parser.add_argument("--workers", type=int, help="preparation threads (default: the library's choice)")
    parser.add_argument("--threads", type=int, help="PyTorch threads (default: the library's choice)")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    parser.add_argument("--no-sextractor", action="store_true", help="leave SExtractor out")
    parser.add_argument("--repeat", type=int, default=1, help="time everything this often, keep the best")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    field = _fields(args)[0]
    table = vstack([field.table] * math.ceil(args.sources / len(field.table)))[: args.sources]
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    models = {name: load_model(_weights(name), device=args.device) for name in names}
    device = next(iter(models.values())).device
    print(f"machine: {machine_description()}, {torch.get_num_threads()} torch threads, device {device}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print(f"field: {len(field.table)} sources; end to end on {len(table)} rows (the table stacked)")

    timers = {name: _ModelTimer(model, field, table, args) for name, model in models.items()}
    sextractor = None if args.no_sextractor else _SExtractor.find(field)
    results = {name: {} for name in models}
    for _ in range(args.repeat):
        # Alternate the measurements and keep the best of each, so that a machine whose speed drifts
        # (shared or throttled cores) affects all alike.
        if sextractor is not None:
            sextractor.measure()
        for name, timer in timers.items():
            for key, rate in timer.measure().items():
                results[name][key] = max(results[name].get(key, 0.0), rate)

    summary = {"machine": machine_description(), "device": str(device), "rows": len(table), "models": results}
    for name, rates in results.items():
        print(f"\n{name} (batch {timers[name].batch_size}, workers {timers[name].workers}):")
        for key, rate in rates.items():
            print(f"  {key:34s} {rate:10,.0f} sources/s")
    if sextractor is not None:
        summary["sextractor"] = sextractor.summary()
        print(
            f"\nSExtractor, one pass with CLASS_STAR on {DETECTION_BAND} ({sextractor.version}): "
            f"{sextractor.detections} detections in {sextractor.best:.2f} s, {sextractor.rate:,.0f} detections/s"
        )
    summary["ratios"] = _ratios(results, names[0], sextractor)
    print()
    for label, value in summary["ratios"].items():
        print(f"{label:60s} {value:6.2f}")
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=1))
    return summary


def _ratios(results, reference, sextractor):
    """Each model's rates against the reference model's and, end to end, against SExtractor's."""
    ratios = {}
    for name, rates in results.items():
        for key, rate in rates.items():
            if name != reference and key in results[reference]:
                ratios[f"{name} / {reference}, {key}"] = rate / results[reference][key]
            if sextractor is not None and key.startswith("end to end"):
                ratios[f"{name} / SExtractor CLASS_STAR, {key}"] = rate / sextractor.rate
    return ratios


class _ModelTimer:
    """The timings of one model on one field."""

    def __init__(self, model, field, table, args):
        self.model, self.field, self.table, self.args = model, field, table, args
        self.batch_size = args.batch_size or default_batch_size(model.device)
        self.workers = default_workers(model.device) if args.workers is None else args.workers
        network_table = table[: args.network_sources]
        inputs = prepare_inputs(
            read_images(field.images, model.bands),
            positions_from_table(network_table),
            model.bands,
            model.stamp_size,
            image_crop=model.image_crop,
        )
        usable = inputs.classifiable
        self.stamps, self.catalog = inputs.stamps[usable], inputs.catalog[usable]
        self.options = {
            "weights": model,
            "batch_size": self.batch_size,
            "progress": False,
            "chunk_size": args.chunk_size,
            "threads": args.threads,
        }
        run_network(model, self.stamps[: self.batch_size], self.catalog[: self.batch_size], self.batch_size)
        self.classify(table[: self.batch_size], workers=self.workers)  # warm-up
        self.psf_files = _psf_files(field)

    def classify(self, table, **options):
        """Seconds taken by `classify_sources` on ``table``."""
        with Stopwatch(self.model.device) as watch:
            classify_sources(table, self.field.images, **self.options, **options)
        return watch.seconds

    def measure(self):
        """Sources per second of each timing, once."""
        model, table = self.model, self.table
        with Stopwatch(model.device) as watch:
            run_network(model, self.stamps, self.catalog, self.batch_size)
        rates = {"network only": len(self.stamps) / watch.seconds}
        where = "stamps cut on the GPU" if self._images_on_device() else "stamps cut on the CPU"
        rates[f"end to end ({where})"] = len(table) / self.classify(table, workers=self.workers)
        if self._images_on_device():
            # As for images too large for the GPU: CPU threads cut the stamps into pinned memory.
            with patch.object(DeviceImages, "fit", staticmethod(lambda *args, **kwargs: False)):
                seconds = self.classify(table, workers=self.workers)
            rates["end to end (stamps cut on the CPU)"] = len(table) / seconds
        if self.args.serial_sources:
            rows = table[: self.args.serial_sources]
            rates["end to end (workers=0)"] = len(rows) / self.classify(rows, workers=0)
        tile = self.field.table
        rates["one tile, PSF measured"] = len(tile) / self.classify(tile, workers=self.workers)
        if self.psf_files:
            seconds = self.classify(tile, workers=self.workers, psf=self.psf_files)
            rates["one tile, PSF given"] = len(tile) / seconds
        return rates

    def _images_on_device(self):
        return DeviceImages.fit(read_images(self.field.images, self.model.bands), self.model.device)


def _psf_files(field):
    """Band -> the simulator's PSF file beside each image, where it wrote one."""
    files = {}
    for band, image in field.images.items():
        path = Path(image[0] if isinstance(image, tuple) else image)
        psf = path.with_name(path.name.replace(".fits", ".psf.fits"))
        if psf.exists():
            files[band] = str(psf)
    return files


class _SExtractor:
    """One SExtractor pass with CLASS_STAR over the field's r image, timed."""

    def __init__(self, executable, image):
        self.executable = executable
        self.workdir = Path(tempfile.mkdtemp(prefix="sextractor_"))
        # The image alone in a plain FITS file, written untimed.
        self.image = self.workdir / f"{DETECTION_BAND}.fits"
        self.header = write_plain_image(image, self.image)
        self.version = tool_version(executable)
        self.best = math.inf
        self.detections = 0
        copy_data_files(self.workdir, executable)

    @classmethod
    def find(cls, field):
        """The SExtractor run for ``field``, or None (with a message) where it is not installed."""
        try:
            executable = require_program(
                ("source-extractor", "sex"),
                "SExtractor: the Debian/Ubuntu package source-extractor, or conda-forge "
                "astromatic-source-extractor",
            )
        except MissingPrerequisite as missing:
            print(f"SExtractor left out: {missing}")
            return None
        image = field.images[DETECTION_BAND]
        return cls(executable, image[0] if isinstance(image, tuple) else image)

    def measure(self):
        """Run the pass once; keep the best wall time."""
        command = [
            self.executable,
            str(self.image),
            "-c",
            str(SEXTRACTOR_DIR / "compare_peers.sex"),
            "-PARAMETERS_NAME",
            str(SEXTRACTOR_DIR / "class_star.param"),
            "-CATALOG_NAME",
            "class_star.cat",
            "-SEEING_FWHM",
            str(self.header.get("PSFFWHM", 0.13)),
            *photometry_options(self.header),
        ]
        with Stopwatch() as watch:
            completed = subprocess.run(command, cwd=self.workdir, capture_output=True, text=True)
        if completed.returncode != 0:
            msg = f"SExtractor failed ({completed.returncode}): {completed.stderr[-2000:]}"
            raise RuntimeError(msg)
        self.best = min(self.best, watch.seconds)
        self.detections = len(Table.read(self.workdir / "class_star.cat", hdu="LDAC_OBJECTS"))

    @property
    def rate(self):
        """Detections per second of the best pass."""
        return self.detections / self.best

    def summary(self):
        return {
            "version": self.version,
            "detections": self.detections,
            "seconds": self.best,
            "rate": self.rate,
        }


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
