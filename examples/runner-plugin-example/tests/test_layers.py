"""PReLU's backward against central differences, with runner's own checker."""
import numpy as np
import pytest

from runner.api import RunnerError
from runner.testing import check_layer, max_rel_error
from runner_plugin_example.layers import PReLU


@pytest.mark.parametrize("shared", [True, False])
def test_prelu_gradients_match_central_differences(shared):
    checks = check_layer(PReLU(init=0.3, shared=shared), input_shape=(7,))
    assert set(checks) == {"x", "alpha"}
    assert max_rel_error(checks) < 1e-7, checks


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
