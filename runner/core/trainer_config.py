"""How long to train and how batches are drawn: the config group ``trainer`` checked (``TrainerConfig``),
and the ``BatchSampler`` it drives, whose state a checkpoint saves. Used by the loop (runner.core.train)
and by the run that builds it (runner.run.build); importable from runner.core.train too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runner.api import RunnerError, option


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
    eval_every: int | None = None
    train_metrics: str = "running"
    eval_test: str = "final"

    def validate(self, n_train: int) -> None:
        def positive(key: str, value) -> None:
            option(f"trainer.{key}", value, int, lambda v: v > 0, "a positive integer")

        positive("batch_size", self.batch_size)
        positive("log_every", self.log_every)
        positive(
            "iterations" if self.iterations is not None else "epochs",
            self.iterations if self.iterations is not None else self.epochs,
        )
        if self.batch_size > n_train:
            raise RunnerError(f"trainer.batch_size: {self.batch_size} is larger than the {n_train} training samples")
        option("trainer.clip_grad_norm", self.clip_grad_norm, float, lambda v: v > 0, "a positive number or null", or_none=True)
        if self.sampling not in ("shuffle", "replacement"):
            raise RunnerError(f"trainer.sampling: expected 'shuffle' or 'replacement', got {self.sampling!r}")
        if self.eval_every is not None:
            positive("eval_every", self.eval_every)
        if self.train_metrics not in ("running", "full"):
            raise RunnerError(f"trainer.train_metrics: expected 'running' or 'full', got {self.train_metrics!r}")
        if self.eval_test not in ("final", "every"):
            raise RunnerError(f"trainer.eval_test: expected 'final' or 'every', got {self.eval_test!r}")

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)

    def total_steps(self, n_train: int) -> int:
        return self.iterations if self.iterations is not None else self.epochs * self.steps_per_epoch(n_train)

    def evaluation_interval(self, n_train: int) -> int:
        """Epochs between evaluations: ``eval_every``, or about 20 evaluations per run when null."""
        if self.eval_every is not None:
            return self.eval_every
        return max(1, math.ceil(math.ceil(self.total_steps(n_train) / self.steps_per_epoch(n_train)) / 20))


class BatchSampler:
    """Index arrays, one per step, forever; its state (RNG, epoch permutation, position) can be saved.

    ``shuffle``: each epoch a permutation of the training set cut into batches (the last may be
    smaller); ``replacement``: each batch drawn independently with replacement.
    """

    def __init__(self, trainer: TrainerConfig, n: int, rng: np.random.Generator):
        self.trainer, self.n, self.rng = trainer, n, rng
        self.order: np.ndarray | None = None
        self.position = 0

    def next(self) -> np.ndarray:
        if self.trainer.sampling == "replacement":
            return self.rng.integers(0, self.n, self.trainer.batch_size)
        if self.order is None or self.position >= self.n:
            self.order, self.position = self.rng.permutation(self.n), 0
        index = self.order[self.position : self.position + self.trainer.batch_size]
        self.position += self.trainer.batch_size
        return index

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = None if state["order"] is None else np.asarray(state["order"])
        self.position = int(state["position"])
