"""Lion: runner's optimizer contract (in-place steps, descent, state round trips, dtypes...), and its update by hand."""

import numpy as np
import pytest
from runner_plugin_example.optimizers import Lion

from runner.api import RunnerError
from runner.testing import OptimizerContract


class TestLion(OptimizerContract):
    factory = Lion
    options = {"lr": 0.01}


class TestLionWithWeightDecay(OptimizerContract):
    factory = Lion
    options = {"lr": 0.01, "beta1": 0.8, "weight_decay": 0.1}


def test_two_steps_by_hand():
    opt = Lion(lr=0.1, beta1=0.9, beta2=0.99)
    theta = np.array([1.0, -1.0, 0.5], np.float32)
    g1 = np.array([0.2, -0.3, 0.0], np.float32)
    opt.step({"w": theta}, {"w": g1})
    np.testing.assert_allclose(theta, [0.9, -0.9, 0.5])  # sign(0.1 g1); sign(0) = 0
    g2 = np.array([-1.0, -1.0, 1.0], np.float32)
    opt.step({"w": theta}, {"w": g2})
    m = 0.01 * g1  # after step 1: m = (1 - beta2) g1
    c = 0.9 * m + 0.1 * g2  # interpolation for step 2
    np.testing.assert_allclose(theta, np.array([0.9, -0.9, 0.5]) - 0.1 * np.sign(c), rtol=1e-6)
    assert theta.dtype == np.float32


def test_decoupled_weight_decay():
    opt = Lion(lr=0.1, weight_decay=0.5)
    theta = np.array([2.0])
    opt.step({"w": theta}, {"w": np.array([0.0])})
    np.testing.assert_allclose(theta, [2.0 - 0.1 * 0.5 * 2.0])


@pytest.mark.parametrize(
    "options, message", [({"lr": 0}, "lr"), ({"beta1": 1.0}, "beta1"), ({"weight_decay": -1}, "weight_decay")]
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(RunnerError, match=message):
        Lion(**options)
