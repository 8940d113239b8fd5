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
class TrainerConfig:
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
    clip_grad_norm: float | None = None

    def validate(self, n_train: int) -> None:
        def positive(key: str, value) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RunnerError(f"trainer.{key}: expected a positive integer, got {value!r}")

        positive("batch_size", self.batch_size)
        positive("log_every", self.log_every)
        positive("iterations" if self.iterations is not None else "epochs", self.iterations if self.iterations is not None else self.epochs)
        if self.batch_size > n_train:
            raise RunnerError(f"trainer.batch_size: {self.batch_size} is larger than the {n_train} training samples")
        if self.clip_grad_norm is not None and (isinstance(self.clip_grad_norm, bool) or not isinstance(self.clip_grad_norm, (int, float)) or self.clip_grad_norm <= 0):
            raise RunnerError(f"trainer.clip_grad_norm: expected a positive number or null, got {self.clip_grad_norm!r}")
        if self.sampling not in ("shuffle", "replacement"):
            raise RunnerError(f"trainer.sampling: expected 'shuffle' or 'replacement', got {self.sampling!r}")

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)

    def total_steps(self, n_train: int) -> int:
        return self.iterations if self.iterations is not None else self.epochs * self.steps_per_epoch(n_train)


def batches(trainer: TrainerConfig, n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Index arrays, one per step, forever."""
    while True:
        if trainer.sampling == "replacement":
            for _ in range(trainer.steps_per_epoch(n)):
                yield rng.integers(0, n, trainer.batch_size)
        else:
            order = rng.permutation(n)
            for start in range(0, n, trainer.batch_size):
                yield order[start : start + trainer.batch_size]


def clip_by_global_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale every gradient by max_norm / ||g|| when the global norm ||g|| = sqrt(sum g^2) exceeds max_norm."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm


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
            score += np.sum((pred[:, 0] >= loss.binary_threshold) == yb)
        else:
            score += np.sum(np.abs(pred - yb)) / pred.shape[1]
    key = "mae" if meta.task == "regression" else "accuracy"
    return {"loss": total_loss / len(split), key: float(score / len(split))}


def train(
    model, loss: Loss, optimizer: Optimizer, splits: Splits, trainer: TrainerConfig, rng: np.random.Generator,
    sink: MetricSink, learning_rate: Callable[[int], float] | None = None,
) -> dict[str, float]:
    """Train and report; returns the final metrics, e.g. {"test/accuracy": 0.97, ...}.

    ``learning_rate(step)`` sets ``optimizer.lr`` before each step (a schedule), logged as train/lr.
    """
    train_split, meta = splits.train, splits.meta
    n = len(train_split)
    trainer.validate(n)
    per_epoch, total = trainer.steps_per_epoch(n), trainer.total_steps(n)
    targets = targets_for(train_split.y, meta, loss, train_split.x.dtype)
    params, grads = model.params, model.grads
    window: list[float] = []
    last_loss = float("nan")  # the latest logged train/loss
    final: dict[str, float] = {}
    started = time.perf_counter()
    log.info("training %d steps (%d per epoch), batch %d, %s sampling", total, per_epoch, trainer.batch_size, trainer.sampling)
    for step, index in enumerate(batches(trainer, n, rng), start=1):
        pred = model.forward(train_split.x[index], training=True)
        value = loss.forward(pred, targets[index])
        if not math.isfinite(value):
            raise RunnerError(f"training diverged at step {step}: train/loss is {value}; try a smaller optimizer.lr")
        model.backward(loss.backward())
        if trainer.clip_grad_norm is not None:
            grad_norm = clip_by_global_norm(grads, trainer.clip_grad_norm)
        if learning_rate is not None:
            optimizer.lr = learning_rate(step)
        optimizer.step(params, grads)
        window.append(value)
        if step % trainer.log_every == 0 or step == total:
            last_loss = float(np.mean(window))
            point = {"train/loss": last_loss}
            if hasattr(optimizer, "lr"):
                point["train/lr"] = float(optimizer.lr)
            if trainer.clip_grad_norm is not None:
                point["train/grad_norm"] = grad_norm
            sink(point, step)
            window.clear()
        if step % per_epoch == 0 or step == total:
            epoch = math.ceil(step / per_epoch)
            # train/loss stays the running mean of the batch losses; the other splits are evaluated whole
            final = {f"{name}/{key}": value for name, split in (("train", train_split), ("val", splits.val), ("test", splits.test))
                     for key, value in evaluate(model, loss, split, meta, trainer.batch_size).items()
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
