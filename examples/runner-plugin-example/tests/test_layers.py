"""PReLU: runner's layer contract (gradients, shapes, dtypes, in-place rules...), and its values by hand."""

import numpy as np
import pytest
from runner_plugin_example.layers import PReLU

from runner.api import RunnerError
from runner.testing import LayerContract


class TestPReLU(LayerContract):
    """One slope for every feature (the default)."""

    factory = PReLU
    options = {"init": 0.3}
    input_shape = (7,)


class TestPReLUPerFeature(LayerContract):
    """One slope per feature of the last axis, on inputs of two axes per sample."""

    factory = PReLU
    options = {"init": 0.3, "shared": False}
    input_shape = (3, 7)


def test_prelu_forward_and_parameter_shapes():
    layer = PReLU(init=0.25, shared=False)
    assert layer.build((3,), np.random.default_rng(0), np.dtype(np.float32)) == (3,)
    assert layer.params["alpha"].shape == (3,) and layer.params["alpha"].dtype == np.float32
    y = layer.forward(np.array([[-2.0, 0.0, 4.0]], np.float32), training=True)
    np.testing.assert_allclose(y, [[-0.5, 0.0, 4.0]])
    assert y.dtype == np.float32


def test_bad_options_name_the_option():
    with pytest.raises(RunnerError, match="init: expected a number"):
        PReLU(init="big")
    with pytest.raises(RunnerError, match="shared: expected true or false"):
        PReLU(shared="yes")
