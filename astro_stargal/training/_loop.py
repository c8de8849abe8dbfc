"""The epoch loop: one configuration in, the best averaged weights out.

Each epoch draws all its randomness (batch order, augmentations) from a
generator seeded by the run's seed and the epoch number, so a run resumed
from a checkpoint draws exactly what an uninterrupted one does. Each source's
target is its truth label or, when a teacher is distilled, the mix
``teacher_weight * sigmoid(teacher logit) + (1 - teacher_weight) * label``
(made once, before the first epoch). The loss
weights stars and galaxies equally whatever their numbers; AdamW follows a
one-cycle schedule (linear warm-up, cosine decay); on a GPU the loop uses
bfloat16 autocast and ``channels_last``. An exponential moving average of the
weights (`_WeightAverage`) is what is validated and kept. Checkpoints,
history, early stopping and the time budget are callbacks (``_callbacks.py``).
"""

import copy
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ._calibration import recall, weighted_bce

__all__ = ["WARMUP_FRACTION", "TrainingLoop"]

WARMUP_FRACTION = 0.15


class TrainingLoop:
    """Epoch loop with deterministic per-epoch randomness, so a resumed run equals an uninterrupted one.

    ``net`` is trained in place on ``training`` and validated on
    ``validation`` (both `TrainingSet`) as ``config`` (a `TrainConfig`)
    says; ``device`` is a `torch.device`. After `fit`, ``best_state`` holds
    the averaged weights of the epoch with the lowest validation loss.
    """

    def __init__(self, net, training, validation, config, *, device):
        self.net = net.to(device)
        self.device = device
        self.on_gpu = device.type == "cuda"
        if self.on_gpu:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.training = _to_tensors(training, device)
        self.training["targets"] = _targets(training, config.teacher_weight if config.teacher else 0.0).to(
            device
        )
        self.validation = validation
        self.batch_size = config.batch_size or (1024 if self.on_gpu else 128)
        self.augmentations = config.augmentations
        self.seed = config.seed
        self.progress = config.progress
        n_stars = int(training.labels.sum())
        n_total = len(training)
        self.class_weight = torch.tensor(
            [n_total / (2 * (n_total - n_stars)), n_total / (2 * n_stars)], device=device
        )
        self.steps_per_epoch = math.ceil(n_total / self.batch_size)
        self.optimizer = torch.optim.AdamW(
            net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.average = _WeightAverage(self.net, config.average_decay)
        self.learning_rate = config.learning_rate
        self.requested_epochs = config.epochs
        self.planned_epochs = config.epochs
        self.step = 0
        self.epoch = 0
        self.history = []
        self.best_state = {name: value.detach().cpu().clone() for name, value in net.state_dict().items()}
        self.best_loss = math.inf
        self.best_epoch = 0
        self.epochs_without_improvement = 0
        # Set by callbacks (early stopping); not checkpointed, they set it again on resuming.
        self.stop_requested = False

    def fit(self, callbacks=()):
        """Run epochs until the planned schedule ends or a callback asks to stop."""
        for callback in callbacks:
            callback.on_fit_start(self)
        while self.epoch < self.planned_epochs and not self.stop_requested:
            row = self.run_epoch()
            for callback in callbacks:
                callback.on_epoch_end(self, row)
        for callback in callbacks:
            callback.on_fit_end(self)

    def state(self):
        """Everything a resumed run needs to continue exactly (what `Checkpoint` saves)."""
        return {
            "epoch": self.epoch,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "average": self.average.state(),
            "step": self.step,
            "planned_epochs": self.planned_epochs,
            "history": self.history,
            "best_state": self.best_state,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def restore(self, state):
        """Continue from a `state`."""
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.average.restore(state["average"])
        self.step = state["step"]
        self.planned_epochs = state["planned_epochs"]
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.best_state = state["best_state"]
        self.best_loss = state["best_loss"]
        self.best_epoch = state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]

    def run_epoch(self):
        """Train one epoch, validate the averaged weights, and return the epoch's history row."""
        started = time.monotonic()
        epoch_seed = self.seed * 100_003 + self.epoch
        torch.manual_seed(epoch_seed)
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed)
        n_total = len(self.training["labels"])
        order = torch.randperm(n_total, generator=generator, device=self.device)
        self.net.train()
        total_loss = 0.0
        steps = range(0, n_total, self.batch_size)
        for start in tqdm(steps, disable=not self.progress, desc=f"epoch {self.epoch + 1}", unit="batch"):
            rows = order[start : start + self.batch_size]
            stamps, catalog, labels, targets = (
                self.training[key][rows] for key in ("stamps", "catalog", "labels", "targets")
            )
            stamps = stamps.float()
            for augmentation in self.augmentations:
                stamps, catalog = augmentation(stamps, catalog, generator)
            if self.on_gpu:
                stamps = stamps.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_gpu):
                logits = self.net(stamps, catalog).float()
            weights = self.class_weight[labels.long()]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, weight=weights)
            for group in self.optimizer.param_groups:
                group["lr"] = self.current_learning_rate()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.average.update(self.net)
            self.step += 1
            total_loss += float(loss.detach()) * len(rows)
        self.epoch += 1

        val_loss_raw = weighted_bce(self.logits(self.validation, self.net), self.validation.labels)
        logits = self.logits(self.validation)
        val_loss = weighted_bce(logits, self.validation.labels)
        predicted_star = logits > 0
        row = {
            "epoch": self.epoch,
            "train_loss": total_loss / n_total,
            "val_loss": val_loss,
            "val_loss_raw": val_loss_raw,
            "val_accuracy": float(np.mean(predicted_star == self.validation.labels.astype(bool))),
            "val_star_recall": recall(predicted_star, self.validation.labels, 1),
            "val_galaxy_recall": recall(predicted_star, self.validation.labels, 0),
            "learning_rate": self.current_learning_rate(),
            "seconds": time.monotonic() - started,
        }
        self.history.append(row)
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.epochs_without_improvement = val_loss, self.epoch, 0
            self.best_state = {
                name: value.detach().cpu().clone() for name, value in self.average.net.state_dict().items()
            }
        else:
            self.epochs_without_improvement += 1
        return row

    def current_learning_rate(self):
        """One-cycle schedule: linear warm-up over 15% of the planned steps, then cosine decay to zero."""
        total = max(1, self.planned_epochs * self.steps_per_epoch)
        progress = min(self.step / total, 1.0)
        if progress < WARMUP_FRACTION:
            return self.learning_rate * (0.04 + 0.96 * progress / WARMUP_FRACTION)
        decay = (progress - WARMUP_FRACTION) / (1 - WARMUP_FRACTION)
        return self.learning_rate * 0.5 * (1 + math.cos(math.pi * decay))

    def fit_plan_to_budget(self, seconds_per_epoch, seconds_left):
        """Shorten the schedule (never beyond the requested epochs) so that it ends inside the time budget."""
        affordable = self.epoch + int(seconds_left // seconds_per_epoch)
        self.planned_epochs = max(self.epoch, min(self.requested_epochs, affordable))

    @torch.inference_mode()
    def logits(self, data, net=None):
        """Uncalibrated logits of ``data`` (a `TrainingSet`) with ``net`` (default: the averaged weights)."""
        net = self.average.net if net is None else net
        net.eval()
        outputs = []
        for start in range(0, len(data), self.batch_size):
            stamps = torch.from_numpy(data.stamps[start : start + self.batch_size].astype(np.float32))
            catalog = torch.from_numpy(data.catalog[start : start + self.batch_size])
            stamps, catalog = stamps.to(self.device), catalog.to(self.device)
            if self.on_gpu:
                stamps = stamps.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_gpu):
                outputs.append(net(stamps, catalog).float().cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)


class _WeightAverage:
    """Exponential moving average of a network's weights and BatchNorm statistics.

    The decay ramps up as ``(1 + n) / (10 + n)`` over the first updates, so
    that a short run is not dominated by its random starting weights.
    Integer buffers (BatchNorm's batch counters) are copied, not averaged.
    """

    def __init__(self, net, decay):
        self.decay = float(decay)
        self.net = copy.deepcopy(net)
        self.net.requires_grad_(False)
        self.updates = 0
        self._pairs = None

    @torch.no_grad()
    def update(self, net):
        if self._pairs is None:
            pairs = list(zip(self.net.state_dict().values(), net.state_dict().values(), strict=True))
            self._pairs = (
                [(mine, theirs) for mine, theirs in pairs if mine.is_floating_point()],
                [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()],
            )
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floating, counters = self._pairs
        torch._foreach_lerp_([mine for mine, _ in floating], [theirs for _, theirs in floating], 1.0 - decay)
        for mine, theirs in counters:
            mine.copy_(theirs)

    def state(self):
        return {"net": self.net.state_dict(), "updates": self.updates}

    def restore(self, state):
        self.net.load_state_dict(state["net"])
        self.updates = state["updates"]


def _targets(data, teacher_weight):
    """Each source's training target: its label, mixed with the teacher's probability where there is one."""
    labels = torch.from_numpy(data.labels.astype(np.float32))
    if teacher_weight == 0:
        return labels
    teacher = torch.sigmoid(torch.from_numpy(data.teacher_logit.astype(np.float32)))
    mixed = teacher_weight * teacher + (1.0 - teacher_weight) * labels
    return torch.where(torch.isfinite(mixed), mixed, labels)


def _to_tensors(data, device):
    """The training arrays as tensors on ``device`` (stamps kept in float16 to halve memory)."""
    return {
        "stamps": torch.from_numpy(data.stamps).to(device),
        "catalog": torch.from_numpy(data.catalog).to(device),
        "labels": torch.from_numpy(data.labels).to(device),
    }
