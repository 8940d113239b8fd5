"""The training loop: minibatches -> forward -> loss -> backward -> optimizer.step, evaluated each epoch."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from runner.api import Loss, Meta, Optimizer, RunnerError, Split, Splits

log = logging.getLogger("runner.train")

#: ``log(metrics, step)``: where the loop reports what it measures.
MetricSink = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class Schedule:
    """How long to train and how batches are drawn.

    ``sampling``: ``shuffle`` (each epoch a permutation, cut into batches) or ``replacement``
    (each batch drawn independently, as the classic MNIST recipe does). An epoch is
    ceil(n_train / batch_size) steps either way; ``iterations``, when set, overrides ``epochs``.
    """

    epochs: int = 10
    iterations: int | None = None
    batch_size: int = 32
    sampling: str = "shuffle"
    log_every: int = 10

    def validate(self, n_train: int) -> None:
        def positive(key: str, value) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RunnerError(f"trainer.{key}: expected a positive integer, got {value!r}")

        positive("batch_size", self.batch_size)
        positive("log_every", self.log_every)
        positive("iterations" if self.iterations is not None else "epochs", self.iterations if self.iterations is not None else self.epochs)
        if self.batch_size > n_train:
            raise RunnerError(f"trainer.batch_size: {self.batch_size} is larger than the {n_train} training samples")
        if self.sampling not in ("shuffle", "replacement"):
            raise RunnerError(f"trainer.sampling: expected 'shuffle' or 'replacement', got {self.sampling!r}")

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)

    def total_steps(self, n_train: int) -> int:
        return self.iterations if self.iterations is not None else self.epochs * self.steps_per_epoch(n_train)


def batches(schedule: Schedule, n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Index arrays, one per step, forever."""
    while True:
        if schedule.sampling == "replacement":
            for _ in range(schedule.steps_per_epoch(n)):
                yield rng.integers(0, n, schedule.batch_size)
        else:
            order = rng.permutation(n)
            for start in range(0, n, schedule.batch_size):
                yield order[start : start + schedule.batch_size]


def targets_for(y: np.ndarray, meta: Meta, loss: Loss, dtype) -> np.ndarray:
    """Targets in the form the loss takes: class indices, one-hot rows, or real-valued columns."""
    if meta.task == "classification":
        if loss.accepts_class_indices:
            return y
        return np.eye(meta.output_size, dtype=dtype)[y]
    if meta.task == "binary":
        return y.reshape(-1, 1).astype(dtype)
    return y.astype(dtype)


def evaluate(model, loss: Loss, split: Split, meta: Meta, batch_size: int) -> dict[str, float]:
    """Loss (mean over batches of the training size) and accuracy, or mae for regression."""
    target = targets_for(split.y, meta, loss, split.x.dtype)
    total_loss, score = 0.0, 0.0
    for start in range(0, len(split), batch_size):
        xb, tb, yb = split.x[start : start + batch_size], target[start : start + batch_size], split.y[start : start + batch_size]
        pred = model.forward(xb, training=False)
        total_loss += loss.forward(pred, tb) * len(xb)
        if meta.task == "classification":
            score += np.sum(pred.argmax(axis=1) == yb)
        elif meta.task == "binary":
            score += np.sum((pred[:, 0] >= 0.5) == yb)
        else:
            score += np.sum(np.abs(pred - yb)) / pred.shape[1]
    key = "mae" if meta.task == "regression" else "accuracy"
    return {"loss": total_loss / len(split), key: float(score / len(split))}


def train(model, loss: Loss, optimizer: Optimizer, splits: Splits, schedule: Schedule, rng: np.random.Generator, sink: MetricSink) -> dict[str, float]:
    """Train and report; returns the final metrics, e.g. {"test/accuracy": 0.97, ...}."""
    train_split, meta = splits.train, splits.meta
    n = len(train_split)
    schedule.validate(n)
    per_epoch, total = schedule.steps_per_epoch(n), schedule.total_steps(n)
    targets = targets_for(train_split.y, meta, loss, train_split.x.dtype)
    params, grads = model.params, model.grads
    window: list[float] = []
    last_loss = float("nan")  # the latest logged train/loss
    final: dict[str, float] = {}
    started = time.perf_counter()
    log.info("training %d steps (%d per epoch), batch %d, %s sampling", total, per_epoch, schedule.batch_size, schedule.sampling)
    for step, index in enumerate(batches(schedule, n, rng), start=1):
        pred = model.forward(train_split.x[index], training=True)
        value = loss.forward(pred, targets[index])
        if not math.isfinite(value):
            raise RunnerError(f"training diverged at step {step}: train/loss is {value}; try a smaller optimizer.lr")
        model.backward(loss.backward())
        optimizer.step(params, grads)
        window.append(value)
        if step % schedule.log_every == 0 or step == total:
            last_loss = float(np.mean(window))
            sink({"train/loss": last_loss}, step)
            window.clear()
        if step % per_epoch == 0 or step == total:
            epoch = math.ceil(step / per_epoch)
            # train/loss stays the running mean of the batch losses; the other splits are evaluated whole
            final = {f"{name}/{key}": value for name, split in (("train", train_split), ("val", splits.val), ("test", splits.test))
                     for key, value in evaluate(model, loss, split, meta, schedule.batch_size).items()
                     if (name, key) != ("train", "loss")}
            final["epoch"] = epoch
            sink(final, step)
            final["train/loss"] = last_loss
            if epoch % max(1, math.ceil(total / per_epoch / 20)) == 0 or step == total:  # about 20 lines
                    log.info("epoch %d step %d/%d  %s  (%.1f s)", epoch, step, total,
                         "  ".join(f"{k} {v:.4f}" for k, v in final.items() if k != "epoch"), time.perf_counter() - started)
        if step == total:
            return final
    raise AssertionError("unreachable")
