"""Synthetic data, generated from the run's seed: two regression sets and the spirals.

Each split (and the regression teacher) draws from its own stream spawned from
``context.seed``, so changing one split's size leaves the others unchanged.
Noise is added to train and val only: the test targets are the exact function.
"""

from __future__ import annotations

import numpy as np

from runner.api import DataContext, Dataset, Meta, RunnerError, Split, Splits, option


def _streams(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _count(key: str, value, minimum: int = 0) -> int:
    return option(key, value, int, lambda v: v >= minimum, f"a whole number >= {minimum}")


def _number(key: str, value, minimum: float | None = None) -> float:
    if minimum is None:
        return option(key, value)
    return option(key, value, float, lambda v: v >= minimum, f"a number >= {minimum}")


class LinearDataset(Dataset):
    """y = slope * x + intercept (+ noise * N(0, 1) on train/val), x uniform in [low, high]; shapes (N, 1)."""

    def __init__(
        self,
        n_train: int = 200,
        n_val: int = 50,
        n_test: int = 50,
        slope: float = 2.0,
        intercept: float = 1.0,
        noise: float = 0.0,
        low: float = -10.0,
        high: float = 10.0,
    ):
        self.sizes = (_count("n_train", n_train, 1), _count("n_val", n_val), _count("n_test", n_test))
        self.slope = _number("slope", slope)
        self.intercept = _number("intercept", intercept)
        self.noise = _number("noise", noise, minimum=0)
        self.low, self.high = _number("low", low), _number("high", high)
        if not self.low < self.high:
            raise RunnerError(f"low, high: expected low < high, got {low!r}, {high!r}")

    def load(self, context: DataContext) -> Splits:
        splits = []
        for i, (n, rng) in enumerate(zip(self.sizes, _streams(context.seed, 3))):
            x = rng.uniform(self.low, self.high, size=(n, 1)).astype(context.dtype)
            y = self.slope * x.astype(np.float64) + self.intercept
            if i < 2 and self.noise:
                y += self.noise * rng.standard_normal(y.shape)
            splits.append(Split(x, y.astype(context.dtype)))
        return Splits(splits[0], splits[1], splits[2], meta=Meta("linear", (1,), 1, "regression"))


class RegressionDataset(Dataset):
    """y = tanh(x @ A) @ B (+ noise on train/val), x ~ N(0, 1), A and B a fixed random teacher."""

    HIDDEN = 16

    def __init__(
        self,
        inputs: int = 8,
        outputs: int = 3,
        n_train: int = 256,
        n_val: int = 64,
        n_test: int = 64,
        noise: float = 0.01,
    ):
        self.inputs = _count("inputs", inputs, 1)
        self.outputs = _count("outputs", outputs, 1)
        self.sizes = (_count("n_train", n_train, 1), _count("n_val", n_val), _count("n_test", n_test))
        self.noise = _number("noise", noise, minimum=0)

    def load(self, context: DataContext) -> Splits:
        teacher, *streams = _streams(context.seed, 4)
        a = teacher.standard_normal((self.inputs, self.HIDDEN)) / np.sqrt(self.inputs)
        b = teacher.standard_normal((self.HIDDEN, self.outputs)) / np.sqrt(self.HIDDEN)
        splits = []
        for i, (n, rng) in enumerate(zip(self.sizes, streams)):
            x = rng.standard_normal((n, self.inputs)).astype(context.dtype)
            y = np.tanh(x.astype(np.float64) @ a) @ b
            if i < 2 and self.noise:
                y += self.noise * rng.standard_normal(y.shape)
            splits.append(Split(x, y.astype(context.dtype)))
        meta = Meta("regression", (self.inputs,), self.outputs, "regression")
        return Splits(splits[0], splits[1], splits[2], meta=meta)


class SpiralsDataset(Dataset):
    """``classes`` interleaved spiral arms in the plane (CS231n's toy data): x (N, 2), y the arm (int64).

    Arm k: radius r = t, angle 4 t + 2 pi k / classes + noise * N(0, 1), for t uniform in [0, 1];
    x = (r sin angle, r cos angle). No linear model separates the arms; a small MLP does.
    """

    def __init__(self, classes: int = 2, n_train: int = 300, n_val: int = 100, n_test: int = 100, noise: float = 0.2):
        self.classes = _count("classes", classes, 2)
        self.sizes = (_count("n_train", n_train, 1), _count("n_val", n_val), _count("n_test", n_test))
        self.noise = _number("noise", noise, minimum=0)

    def load(self, context: DataContext) -> Splits:
        splits = []
        for n, rng in zip(self.sizes, _streams(context.seed, 3)):
            y = rng.integers(0, self.classes, n)
            t = rng.uniform(0.0, 1.0, n)
            angle = 4.0 * t + 2.0 * np.pi * y / self.classes + self.noise * rng.standard_normal(n)
            x = np.stack([t * np.sin(angle), t * np.cos(angle)], axis=1)
            splits.append(Split(x.astype(context.dtype), y.astype(np.int64)))
        classes = tuple(f"arm {k}" for k in range(self.classes))
        return Splits(splits[0], splits[1], splits[2], meta=Meta("spirals", (2,), self.classes, "classification", classes))
