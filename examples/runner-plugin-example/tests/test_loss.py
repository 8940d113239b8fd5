"""The squared hinge loss: its value by hand, and its backward against central differences."""
import numpy as np
import pytest

from runner.api import RunnerError
from runner.testing import check_loss
from runner_plugin_example.losses import SquaredHinge


def test_value_by_hand():
    loss = SquaredHinge()
    # margins: 1 - 1*2 -> 0; 1 - (-1)(-0.5) = 0.5; 1 - 1*0.5 = 0.5; 1 - (-1)*1 = 2
    value = loss.forward(np.array([[2.0], [-0.5], [0.5], [1.0]]), np.array([[1], [0], [1], [0]]))
    assert value == pytest.approx((0 + 0.25 + 0.25 + 4) / 4)


def test_backward_matches_central_differences():
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((16, 1)) * 2
    target = rng.integers(0, 2, (16, 1))
    check = check_loss(SquaredHinge(), pred, target)
    assert check.rel_error < 1e-7, check


def test_targets_other_than_0_1_are_an_error():
    with pytest.raises(RunnerError, match="targets must be 0/1"):
        SquaredHinge().forward(np.zeros((2, 1)), np.array([[0.5], [1]]))
