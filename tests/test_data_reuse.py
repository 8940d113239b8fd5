"""A sweep's jobs, one after another in one process, share the splits they load alike (runner.run.build.load_splits)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from runner.api import DataContext, Meta, Split, Splits
from runner.run import build


class Counting:
    """A dataset that counts its loads."""

    def __init__(self):
        self.loads = 0

    def load(self, context: DataContext) -> Splits:
        self.loads += 1
        x = np.full((4, 2), float(context.seed), context.dtype)
        split = Split(x, np.zeros(4, np.int64))
        return Splits(split, split, split, Meta(name="counting", input_shape=(2,), output_size=2, task="classification"))


@pytest.fixture(autouse=True)
def empty():
    build._last_splits.clear()
    yield
    build._last_splits.clear()


def test_a_job_with_the_same_dataset_takes_the_previous_jobs_read_only_splits():
    entry, dataset = SimpleNamespace(provider="tests:counting"), Counting()
    section = OmegaConf.create({"name": "counting", "size": 4})
    context = DataContext(Path("/data"), 0)
    first = build.load_splits(entry, dataset, section, context, reuse=True)
    assert build.load_splits(entry, dataset, section, context, reuse=True) is first and dataset.loads == 1
    with pytest.raises(ValueError, match="read-only"):
        first.train.x[0, 0] = 1.0  # a write would reach the next job: refused
    build.load_splits(entry, dataset, section, DataContext(Path("/data"), 1), reuse=True)  # another seed: loaded
    build.load_splits(entry, dataset, OmegaConf.create({"name": "counting", "size": 5}), context, reuse=True)  # options
    assert dataset.loads == 3


def test_a_single_run_always_loads_and_keeps_nothing():
    entry, dataset = SimpleNamespace(provider="tests:counting"), Counting()
    section, context = OmegaConf.create({"name": "counting"}), DataContext(Path("/data"), 0)
    splits = build.load_splits(entry, dataset, section, context, reuse=False)
    build.load_splits(entry, dataset, section, context, reuse=False)
    assert dataset.loads == 2 and not build._last_splits
    splits.train.x[0, 0] = 1.0  # its own arrays: writable as the dataset made them
