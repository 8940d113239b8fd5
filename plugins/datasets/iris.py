"""Fisher's Iris (150 flowers, 4 measurements, 3 species), as 3 classes or setosa vs the rest.

The CSV ships with this package. Splits are stratified by species and seeded: by ``split_seed``
when given (a fixed split whatever the run's seed), else by the run's seed.
"""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

from runner.api import DataContext, Dataset, Meta, RunnerError, Split, Splits, option

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SETOSA = "Iris-setosa"


def read_iris() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Features (150, 4) float64, species codes int64, species names (sorted; code = index).

    The csv module, not pandas: 150 rows do not need it, and importing pandas (with pyarrow) cost every
    run 0.45 s, since plugin discovery imports this module whatever the dataset."""
    text = resources.files(__package__).joinpath("iris.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    features = np.array([[float(row[name]) for name in FEATURES] for row in rows], np.float64).reshape(-1, len(FEATURES))
    names, codes = np.unique([row["species"] for row in rows], return_inverse=True)
    return features, codes.astype(np.int64), tuple(str(n) for n in names)


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, val, test: each class split by the fractions (rounded), each split shuffled."""
    parts: tuple[list, list, list] = ([], [], [])
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(rows) * test_fraction)
        n_val = round(len(rows) * val_fraction)
        parts[0].append(rows[n_val + n_test :])
        parts[1].append(rows[n_test : n_test + n_val])
        parts[2].append(rows[:n_test])
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    return train, val, test


class IrisDataset(Dataset):
    """Iris, 3 classes: x (N, 4) in cm, y int64 species indices."""

    def __init__(
        self, val_fraction: float = 0.2, test_fraction: float = 0.2, standardize: bool = False, split_seed: int | None = None
    ):
        self.val_fraction = option("val_fraction", val_fraction, float, lambda v: 0 <= v < 1, "a number in [0, 1)")
        self.test_fraction = option("test_fraction", test_fraction, float, lambda v: 0 <= v < 1, "a number in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise RunnerError(
                f"val_fraction + test_fraction: expected less than 1 to leave training data, got {val_fraction} + {test_fraction}"
            )
        self.standardize = option("standardize", standardize, bool)
        self.split_seed = option(
            "split_seed", split_seed, int, lambda v: v >= 0, "a whole number >= 0 or null (the run's seed)", or_none=True
        )

    def load(self, context: DataContext) -> Splits:
        x, species, names = read_iris()
        rng = np.random.default_rng(context.seed if self.split_seed is None else self.split_seed)
        train, val, test = stratified_split(species, self.val_fraction, self.test_fraction, rng)
        if self.standardize:  # with the training split's statistics only
            mean, std = x[train].mean(axis=0), x[train].std(axis=0)
            x = (x - mean) / np.where(std > 0, std, 1.0)
        x = x.astype(context.dtype)
        y, meta = self.targets(species, names)
        return Splits(
            train=Split(x[train], y[train]),
            val=Split(x[val], y[val]),
            test=Split(x[test], y[test]),
            meta=meta,
        )

    def targets(self, species: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, Meta]:
        return species, Meta("iris", (len(FEATURES),), len(names), "classification", names)


class IrisBinaryDataset(IrisDataset):
    """Iris as a binary task: y = 1 for Iris-setosa, 0 for the other two species."""

    def targets(self, species: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, Meta]:
        y = (species == names.index(SETOSA)).astype(np.int64)
        return y, Meta("iris_binary", (len(FEATURES),), 1, "binary", ("other", SETOSA))
