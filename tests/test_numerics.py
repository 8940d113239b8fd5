"""Every built-in layer and loss against central differences, in float64."""

import numpy as np
import pytest

from runner.api import RunnerError
from runner.builtins.layers import Linear, ReLU, Sigmoid, Tanh
from runner.builtins.losses import L1, MSE, SoftmaxCrossEntropy, SumSquared
from runner.builtins.optimizers import SGD
from runner.core.gradcheck import Eval, check_array, check_layer

SMOOTH = 1e-7  # relative error allowed where the function is smooth
KINKED = 1e-4  # where it has kinks (inputs sampled away from them)


@pytest.mark.parametrize(
    "make, tol",
    [(lambda: Linear(5, init="he_normal"), SMOOTH), (ReLU, KINKED), (Sigmoid, SMOOTH), (Tanh, SMOOTH)],
    ids=["linear", "relu", "sigmoid", "tanh"],
)
def test_layer_backward_matches_central_differences(make, tol):
    checks = check_layer(make(), (7,), batch=6)
    assert set(checks) >= {"x"}
    for name, c in checks.items():
        assert c.rel_error <= tol, (name, c)
        assert c.entries > 0


def test_linear_checks_every_parameter():
    checks = check_layer(Linear(3), (4,))
    assert set(checks) == {"x", "W", "b"}
    assert checks["W"].entries == 12 and checks["b"].entries == 3


def loss_check(loss, pred, target):
    f = lambda: loss.forward(pred, target)  # noqa: E731
    f()
    return check_array(f, pred, loss.backward().copy(), 1e-6, None, np.random.default_rng(0))


@pytest.mark.parametrize("loss, tol", [(MSE(), SMOOTH), (SumSquared(), SMOOTH), (L1(), KINKED)], ids=["mse", "sum_squared", "l1"])
def test_regression_losses_gradients(loss, tol):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert loss_check(loss, pred, target).rel_error <= tol


@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_cross_entropy_gradient_with_indices_or_one_hot(one_hot):
    rng = np.random.default_rng(2)
    pred, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    target = np.eye(4)[labels] if one_hot else labels
    assert loss_check(SoftmaxCrossEntropy(), pred, target).rel_error <= SMOOTH


def test_loss_values_match_their_formulas():
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    target = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert MSE().forward(pred, target) == pytest.approx((0 + 4 + 9 + 16) / 4)
    assert SumSquared().forward(pred, target) == pytest.approx(0.5 * 29)
    assert L1().forward(pred, target) == pytest.approx((0 + 2 + 3 + 4) / 4)
    logits = np.array([[0.0, np.log(3.0)]])  # softmax = [1/4, 3/4]
    assert SoftmaxCrossEntropy().forward(logits, np.array([1])) == pytest.approx(-np.log(0.75))


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    loss = SoftmaxCrossEntropy()
    value = loss.forward(np.array([[1000.0, -1000.0], [0.0, 2000.0]]), np.array([0, 0]))
    assert value == pytest.approx(1000.0)  # (0 + 2000) / 2
    assert np.all(np.isfinite(loss.backward()))


def test_sigmoid_is_stable_and_keeps_float32():
    layer = Sigmoid()
    y = layer.forward(np.array([[-1000.0, 0.0, 1000.0]], dtype=np.float32), training=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]])


@pytest.mark.parametrize("make", [lambda: Linear(3), ReLU, Sigmoid, Tanh], ids=["linear", "relu", "sigmoid", "tanh"])
def test_float32_in_float32_out(make):
    layer = make()
    layer.build((4,), np.random.default_rng(0), np.dtype(np.float32))
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    assert layer.forward(x, training=True).dtype == np.float32
    assert layer.backward(np.ones((2, 3 if isinstance(layer, Linear) else 4), np.float32)).dtype == np.float32


def test_sgd_updates_in_place():
    w = np.array([1.0, 2.0])
    SGD(lr=0.5).step({"w": w}, {"w": np.array([2.0, -2.0])})
    np.testing.assert_array_equal(w, [0.0, 3.0])


@pytest.mark.parametrize("lr", [0, -0.1, "abc"])
def test_sgd_rejects_bad_lr(lr):
    with pytest.raises(RunnerError, match="lr: expected a positive number"):
        SGD(lr=lr)


def test_gradcheck_catches_a_wrong_backward():
    class BrokenTanh(Tanh):
        def backward(self, dout):
            return dout * (1.0 - self.y)  # wrong: should be 1 - y^2

    assert check_layer(BrokenTanh(), (5,))["x"].rel_error > 1e-2


def absolute_sum(x):
    """f = sum |x|, with the branch each entry is on: what a piecewise layer reports through ``branches``."""
    return lambda: Eval(float(np.sum(np.abs(x))), float(np.sum(np.abs(x))), (np.sign(x),))


def test_entries_at_a_kink_are_skipped_and_counted():
    x = np.array([1e-7, 1.5, -2.0])  # the first within the step of the kink at 0
    check = check_array(absolute_sum(x), x, np.sign(x), 1e-6, None, np.random.default_rng(0))
    assert check.kinks == 1 and check.entries == 2 and not check.direction  # the direction crosses it too
    assert check.rel_error <= 1e-9


def test_a_smooth_function_skips_nothing_even_at_zero():
    x = np.array([0.0, 1.5, -2.0])
    f = lambda: float(np.sum(np.sin(x)))  # noqa: E731  a bare float: smooth
    check = check_array(f, x, np.cos(x), 1e-6, None, np.random.default_rng(0))
    assert check.kinks == 0 and check.entries == 3 and check.direction and check.rel_error <= 1e-9


def test_kink_skipping_does_not_hide_a_wrong_gradient():
    x = np.array([1e-7, 1.5, -2.0])
    assert check_array(absolute_sum(x), x, -np.sign(x), 1e-6, None, np.random.default_rng(0)).rel_error == pytest.approx(1.0)
