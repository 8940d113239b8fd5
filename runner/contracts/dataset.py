"""DatasetContract: what every dataset plugin must do."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import pytest

from runner.api import DataContext, Meta, Split, Splits
from runner.contracts.base import _Contract

TASKS = ("classification", "binary", "regression")


class DatasetContract(_Contract):
    """The checks a Dataset plugin must pass. Set ``factory`` (and ``options``).

    - ``data_dir(tmp_path)``: where the dataset reads or downloads its files; a new empty directory
      by default (override it to return your data's directory);
    - ``seed`` (0), ``other_seed`` (1): the run seeds the checks load with;
    - ``seed_changes_splits`` (True): False for a fixed dataset that ignores the seed;
    - ``dtypes`` (float32, float64): the ``context.dtype`` values checked.

    The splits of ``seed`` in float32 are loaded once per test class (``splits``), the others as needed.
    """

    __test__ = False
    seed = 0
    other_seed = 1
    seed_changes_splits = True
    dtypes = (np.float32, np.float64)
    _cache: dict | None = None

    def data_dir(self, tmp_path: Path) -> Path:
        """The data directory the dataset is given (``DataContext.data_dir``)."""
        return tmp_path

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _splits_of_this_class(cls):
        """Keeps the default load for one test class's checks, and drops it after them."""
        cls._cache = {}
        yield
        cls._cache = None

    def splits(self, tmp_path: Path, seed: int | None = None, dtype=np.float32, fresh: bool = False) -> Splits:
        """A new dataset's ``load`` (the default seed in float32 only once per class, unless ``fresh``)."""
        context = DataContext(Path(self.data_dir(tmp_path)), self.seed if seed is None else seed, np.dtype(dtype))
        default = (context.seed, context.dtype) == (self.seed, np.dtype(np.float32))
        cache = self._cache if default and not fresh and self._cache is not None else {}
        key = str(context.data_dir)
        if key not in cache:
            cache[key] = self.make().load(context)
        return cache[key]

    def test_load_returns_splits(self, tmp_path):
        """load returns runner.api.Splits of three runner.api.Split and a runner.api.Meta (the runner
        relies on ``len(split)`` and the fields, which look-alike tuples do not have)."""
        splits = self.splits(tmp_path)
        assert isinstance(splits, Splits), f"load returned {type(splits).__name__}; expected runner.api.Splits"
        for name in ("train", "val", "test"):
            part = getattr(splits, name)
            assert isinstance(part, Split), f"{name} is {type(part).__name__}; expected runner.api.Split"
        assert isinstance(splits.meta, Meta), f"meta is {type(splits.meta).__name__}; expected runner.api.Meta"

    def test_x_has_the_input_shape_and_the_context_dtype(self, tmp_path):
        """Every split's x is an array of shape (n, *meta.input_shape) in the context's dtype (each of
        ``dtypes``), with finite values."""
        for dtype in map(np.dtype, self.dtypes):
            splits = self.splits(tmp_path, dtype=dtype)
            for name in ("train", "val", "test"):
                x = getattr(splits, name).x
                where = f"{dtype}: {name}.x"
                assert isinstance(x, np.ndarray), f"{where} is {type(x).__name__}"
                assert x.shape[1:] == tuple(splits.meta.input_shape), (
                    f"{where} has shape {x.shape}; meta.input_shape is {splits.meta.input_shape}"
                )
                assert x.dtype == dtype, f"{where} is {x.dtype}; expected the context's dtype"
                assert np.all(np.isfinite(x)), f"{where} has {np.sum(~np.isfinite(x))} non-finite values"

    def test_y_fits_the_task(self, tmp_path):
        """Every split's y has one entry per sample, of meta.task's kind: classification, integer labels
        in [0, output_size) of shape (n,); binary, integer labels 0/1 of shape (n,); regression,
        floats of shape (n, output_size)."""
        splits = self.splits(tmp_path)
        meta = splits.meta
        for name in ("train", "val", "test"):
            x, y = getattr(splits, name).x, getattr(splits, name).y
            where = f"{name}.y ({meta.task})"
            assert isinstance(y, np.ndarray) and len(y) == len(x), (
                f"{where}: {type(y).__name__} of {len(y)} entries for {len(x)} samples"
            )
            if meta.task == "regression":
                assert np.issubdtype(y.dtype, np.floating) and y.shape == (len(x), meta.output_size), (
                    f"{where}: {y.dtype} {y.shape}; expected floats of shape {(len(x), meta.output_size)}"
                )
            elif meta.task in ("classification", "binary"):
                classes = 2 if meta.task == "binary" else meta.output_size
                assert (np.issubdtype(y.dtype, np.integer) or y.dtype == bool) and y.shape == (len(x),), (
                    f"{where}: {y.dtype} {y.shape}; expected integer labels of shape {(len(x),)}"
                )
                if len(y):
                    assert 0 <= y.min() and y.max() < classes, (
                        f"{where}: labels from {y.min()} to {y.max()}; expected 0 to {classes - 1}"
                    )

    def test_train_split_is_not_empty(self, tmp_path):
        """The training split has samples."""
        assert len(self.splits(tmp_path).train.x) > 0, "the training split is empty"

    def test_same_seed_gives_identical_splits(self, tmp_path):
        """Two datasets loading with the same seed give identical splits: a run is reproducible."""
        first, second = self.splits(tmp_path), self.splits(tmp_path, fresh=True)
        for name in ("train", "val", "test"):
            for field in ("x", "y"):
                a, b = getattr(getattr(first, name), field), getattr(getattr(second, name), field)
                assert np.array_equal(a, b), f"seed {self.seed}, loaded twice: {name}.{field} differs"

    def test_other_seed_gives_other_splits(self, tmp_path):
        """Another seed gives other splits (another shuffle or draw), unless ``seed_changes_splits`` is False."""
        if not self.seed_changes_splits:
            return
        first, other = self.splits(tmp_path), self.splits(tmp_path, seed=self.other_seed)
        same = all(
            np.array_equal(getattr(getattr(first, name), field), getattr(getattr(other, name), field))
            for name in ("train", "val", "test")
            for field in ("x", "y")
        )
        assert not same, (
            f"seeds {self.seed} and {self.other_seed} give identical splits; use context.seed, or declare "
            f"seed_changes_splits = False for a dataset that is fixed"
        )

    def test_meta_describes_the_task(self, tmp_path):
        """meta has a name, input_shape a tuple of positive ints, output_size a positive int, task one
        of classification / binary / regression (binary: one output), and classes, when given, a tuple
        of strings: one per output for classification, two for binary."""
        meta = self.splits(tmp_path).meta
        assert isinstance(meta.name, str) and meta.name, f"meta.name = {meta.name!r}"
        shape = meta.input_shape
        assert isinstance(shape, tuple) and shape and all(isinstance(n, numbers.Integral) and n > 0 for n in shape), (
            f"meta.input_shape = {shape!r}; expected a tuple of positive ints"
        )
        assert isinstance(meta.output_size, numbers.Integral) and meta.output_size > 0, f"meta.output_size = {meta.output_size!r}"
        assert meta.task in TASKS, f"meta.task = {meta.task!r}; expected one of {', '.join(TASKS)}"
        if meta.task == "binary":
            assert meta.output_size == 1, f"meta.output_size = {meta.output_size} for a binary task; expected 1 (one output)"
        assert isinstance(meta.classes, tuple) and all(isinstance(c, str) for c in meta.classes), (
            f"meta.classes = {meta.classes!r}; expected a tuple of strings"
        )
        if meta.classes and meta.task != "regression":
            expected = 2 if meta.task == "binary" else meta.output_size
            assert len(meta.classes) == expected, (
                f"{len(meta.classes)} classes {meta.classes}; expected {expected} for {meta.task}"
            )
