"""Two moons: runner's dataset contract (types, shapes, dtypes, labels, seeding...), and the moons themselves."""

from pathlib import Path

import numpy as np
import pytest
from runner_plugin_example.datasets import TwoMoons

from runner.api import DataContext, RunnerError
from runner.testing import DatasetContract


class TestTwoMoons(DatasetContract):
    factory = TwoMoons


class TestTwoMoonsSmallAndNoiseless(DatasetContract):
    factory = TwoMoons
    options = {"n_train": 10, "n_val": 2, "n_test": 3, "noise": 0.0}


def load(seed=0, **options):
    return TwoMoons(**options).load(DataContext(Path("."), seed))


def test_sizes_and_balance():
    splits = load(n_train=50, n_val=10, n_test=11)
    assert len(splits.train) == 50 and len(splits.val) == 10 and len(splits.test) == 11
    assert set(np.unique(splits.train.y)) == {0, 1} and splits.train.y.sum() == 25
    assert (splits.meta.task, splits.meta.output_size, splits.meta.input_shape) == ("binary", 1, (2,))


def test_without_noise_the_points_lie_on_the_circles():
    s = load(noise=0.0).train
    upper, lower = s.x[s.y == 0], s.x[s.y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1, rtol=1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1, rtol=1e-6)


def test_bad_sizes_name_the_option():
    with pytest.raises(RunnerError, match="n_train: expected a whole number"):
        TwoMoons(n_train=1)
