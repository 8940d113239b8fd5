"""Two moons: two interleaving half circles, a small binary task that a linear model cannot solve."""

from __future__ import annotations

import numpy as np

from runner.api import DataContext, Dataset, Meta, Split, Splits, option


def moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (half of each class, shuffled): class 0 on the upper half circle of radius 1
    around (0, 0), class 1 on the lower one around (1, 0.5); Gaussian noise of std ``noise``."""
    n0 = n // 2
    t = rng.uniform(0, np.pi, n)
    x = np.where(
        (np.arange(n) < n0)[:, None], np.stack([np.cos(t), np.sin(t)], axis=1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    )
    x += noise * rng.standard_normal(x.shape)
    y = (np.arange(n) >= n0).astype(np.int64)
    order = rng.permutation(n)
    return x[order], y[order]


class TwoMoons(Dataset):
    """x (N, 2), y 0/1 (int64); each split drawn from its own stream of the run's seed."""

    def __init__(self, n_train: int = 400, n_val: int = 100, n_test: int = 100, noise: float = 0.1):
        sizes = (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))
        self.sizes = tuple(option(key, value, int, lambda v: v >= 2, "a whole number >= 2") for key, value in sizes)
        self.noise = option("noise", noise, float, lambda v: v >= 0, "a number >= 0")

    def load(self, context: DataContext) -> Splits:
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(context.seed).spawn(3)]
        splits = []
        for n, rng in zip(self.sizes, streams):
            x, y = moons(n, self.noise, rng)
            splits.append(Split(x.astype(context.dtype), y))
        return Splits(*splits, meta=Meta("two_moons", (2,), 1, "binary", ("upper", "lower")))
