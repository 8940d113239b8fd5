"""The squared hinge loss: runner's loss contract (gradient, value, shapes, dtypes, reduction...), and its value by hand."""

import numpy as np
import pytest
from runner_plugin_example.losses import SquaredHinge

from runner.api import RunnerError
from runner.testing import LossContract


class TestSquaredHinge(LossContract):
    factory = SquaredHinge
    pred_shape = (16, 1)  # a binary task's scores: one output
    target = "binary"  # 0/1, shaped like pred, as the runner passes them


def test_value_by_hand():
    loss = SquaredHinge()
    # margins: 1 - 1*2 -> 0; 1 - (-1)(-0.5) = 0.5; 1 - 1*0.5 = 0.5; 1 - (-1)*1 = 2
    value = loss.forward(np.array([[2.0], [-0.5], [0.5], [1.0]]), np.array([[1], [0], [1], [0]]))
    assert value == pytest.approx((0 + 0.25 + 0.25 + 4) / 4)


def test_targets_other_than_0_1_are_an_error():
    with pytest.raises(RunnerError, match="targets must be 0/1"):
        SquaredHinge().forward(np.zeros((2, 1)), np.array([[0.5], [1]]))
