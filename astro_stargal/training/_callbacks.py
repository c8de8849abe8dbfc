"""What happens around the epochs of a training run: checkpoints, history, early stopping, time budget.

``TrainingLoop.fit`` (in ``_loop.py``) calls each callback's hooks
in list order: ``on_fit_start(loop)`` once (after which a resumed run is where
it stopped), ``on_epoch_end(loop, row)`` after every epoch, with that epoch's
history row, and ``on_fit_end(loop)`` when the epochs are over. A callback
changes the run only through the loop's schedule (``planned_epochs``) or its
``stop_requested`` flag, so the loop itself stays the same whatever is
attached to it.
"""

import json
import time
from pathlib import Path

import torch
from astropy.table import Table

from .._files import atomic_write
from ..evaluation import plot_training_curves

__all__ = [
    "CHECKPOINT_FILE",
    "HISTORY_FILE",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "EpochEndFunction",
    "History",
    "TimeBudget",
]

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.csv"


class Callback:
    """Hooks of the training loop; each does nothing unless a subclass overrides it."""

    def on_fit_start(self, loop):
        """Called once before the first epoch (of this call: after a restored checkpoint)."""

    def on_epoch_end(self, loop, row):
        """Called after each epoch with its history row."""

    def on_fit_end(self, loop):
        """Called once when the epochs are over."""


class TimeBudget(Callback):
    """Shorten the schedule so that the run ends within ``max_minutes`` of wall-clock time (None: no budget).

    The schedule is planned after the first epoch and again after the
    second, whose timing is free of warm-up costs. It goes before
    `Checkpoint`, so that the checkpoint records the plan.
    """

    def __init__(self, max_minutes):
        self.max_minutes = max_minutes
        self.started = None

    def on_fit_start(self, loop):
        self.started = time.monotonic()

    def on_epoch_end(self, loop, row):
        if self.max_minutes is not None and loop.epoch <= 2:
            seconds_left = 60 * self.max_minutes - (time.monotonic() - self.started)
            loop.fit_plan_to_budget(row["seconds"], seconds_left)


class Checkpoint(Callback):
    """Save the loop's whole state after every epoch (atomically), and resume from it."""

    def __init__(self, output_dir, *, resume=True):
        self.path = Path(output_dir) / CHECKPOINT_FILE
        self.resume = resume

    def on_fit_start(self, loop):
        if self.resume and self.path.exists():
            loop.restore(torch.load(self.path, map_location="cpu", weights_only=True))

    def on_epoch_end(self, loop, row):
        state = loop.state()
        atomic_write(self.path, lambda path: torch.save(state, path))


class History(Callback):
    """Write the history (``history.csv``, ``history.json``) after every epoch, and a learning curve at the end."""

    def __init__(self, output_dir):
        self.output_dir = Path(output_dir)

    def on_epoch_end(self, loop, row):
        table = Table(rows=loop.history) if loop.history else Table()
        table.write(self.output_dir / HISTORY_FILE, overwrite=True)
        (self.output_dir / "history.json").write_text(json.dumps(loop.history, indent=1))

    def on_fit_end(self, loop):
        try:
            figure = plot_training_curves(self.output_dir / HISTORY_FILE)
        except ImportError:  # matplotlib is optional
            return
        figure.savefig(self.output_dir / "learning_curve.png", dpi=120)


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better validation loss (also when resuming a stopped run)."""

    def __init__(self, patience):
        self.patience = patience

    def on_fit_start(self, loop):
        self._check(loop)

    def on_epoch_end(self, loop, row):
        self._check(loop)

    def _check(self, loop):
        if loop.epochs_without_improvement >= self.patience:
            loop.stop_requested = True


class EpochEndFunction(Callback):
    """Call the user's ``function(epoch, history_row)`` after each epoch (None: do nothing)."""

    def __init__(self, function):
        self.function = function

    def on_epoch_end(self, loop, row):
        if self.function is not None:
            self.function(loop.epoch, row)
