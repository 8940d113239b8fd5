"""Built-in losses: gradients against central differences, values against their formulas and PyTorch."""

import numpy as np
import pytest

from runner.api import RunnerError
from runner.builtins.losses import (
    L1,
    MSE,
    NLL,
    BCEWithLogits,
    BinaryCrossEntropy,
    Hinge,
    Huber,
    SoftmaxCrossEntropy,
    SumSquared,
    runner_losses,
)
from runner.core.gradcheck import check_array

SMOOTH = 1e-7  # relative error allowed where the loss is smooth
KINKED = 1e-4  # where it has kinks (points kept away from them)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cases(rng, dtype=np.float64):
    """name -> (loss, pred, target): float64 inputs inside each loss's smooth range, away from kinks."""
    n, k = 6, 4
    z = rng.standard_normal((n, k))
    labels = rng.integers(0, k, n)
    real = rng.standard_normal((n, k))
    probs = rng.uniform(0.05, 0.95, (n, 1))
    bits = rng.integers(0, 2, (n, 1)).astype(float)
    logits = rng.standard_normal((n, 1)) * 3
    # huber: residuals away from |r| = delta; hinge: margins 1 - s z away from 0
    residual = rng.choice([-1, 1], (n, k)) * np.where(
        rng.random((n, k)) < 0.5, rng.uniform(0.1, 0.9, (n, k)), rng.uniform(1.1, 2.0, (n, k))
    )
    s = 2 * bits - 1
    scores = s * (1 + rng.uniform(0.1, 0.9, (n, 1)) * rng.choice([-1, 1], (n, 1)))
    table = {
        "mse": (MSE(), real, z),
        "sum_squared": (SumSquared(), real, z),
        "l1": (L1(), real, z),
        "softmax_cross_entropy": (SoftmaxCrossEntropy(), z, labels),
        "softmax_cross_entropy_onehot": (SoftmaxCrossEntropy(), z, np.eye(k)[labels]),
        "nll": (NLL(), softmax(z), labels),
        "nll_onehot": (NLL(), softmax(z), np.eye(k)[labels]),
        "binary_cross_entropy": (BinaryCrossEntropy(), probs, bits),
        "binary_cross_entropy_soft": (BinaryCrossEntropy(), probs, rng.uniform(0, 1, (n, 1))),
        "bce_with_logits": (BCEWithLogits(), logits, bits),
        "huber": (Huber(delta=1.0), z + residual, z),
        "huber_delta": (Huber(delta=0.5), z + 0.5 * residual, z),
        "hinge": (Hinge(), scores, bits),
    }
    return {
        name: (loss, pred.astype(dtype), target if target.dtype.kind == "i" else target.astype(dtype))
        for name, (loss, pred, target) in table.items()
    }


NAMES = list(cases(np.random.default_rng(0)))
KINKY = {"l1", "huber", "huber_delta", "hinge"}


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_central_differences(name):
    loss, pred, target = cases(np.random.default_rng(1))[name]
    f = lambda: loss.forward(pred, target)  # noqa: E731
    f()
    check = check_array(f, pred, loss.backward().copy(), 1e-6, None, np.random.default_rng(0))
    assert check.kinks == 0  # the points really are away from the kinks
    assert check.rel_error <= (KINKED if name in KINKY else SMOOTH), check


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(name):
    loss, pred, target = cases(np.random.default_rng(2), np.float32)[name]
    value = loss.forward(pred, target)
    assert isinstance(value, float) and np.float32(value) == value  # computed in float32
    grad = loss.backward()
    assert grad.dtype == np.float32 and grad.shape == pred.shape
    loss64, pred64, target64 = cases(np.random.default_rng(2))[name]
    assert value == pytest.approx(loss64.forward(pred64, target64), rel=1e-5, abs=1e-6)


def test_values_match_their_formulas():
    p = np.array([[0.25], [0.5]])
    t = np.array([[1.0], [0.0]])
    assert BinaryCrossEntropy().forward(p, t) == pytest.approx(-(np.log(0.25) + np.log(0.5)) / 2)
    z = np.array([[0.0], [np.log(3.0)]])  # sigmoid = 1/2, 3/4
    assert BCEWithLogits().forward(z, np.array([[1.0], [0.0]])) == pytest.approx(-(np.log(0.5) + np.log(0.25)) / 2)
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert NLL().forward(probs, np.array([1, 1])) == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)
    # huber, delta 1: r = 0.5 -> 0.125; r = -3 -> 2.5; delta 2: r = -3 -> 2 * (3 - 1) = 4
    assert Huber().forward(np.array([[0.5, -3.0]]), np.zeros((1, 2))) == pytest.approx((0.125 + 2.5) / 2)
    assert Huber(delta=2.0).forward(np.array([[-3.0]]), np.zeros((1, 1))) == pytest.approx(4.0)
    # hinge: target 1, score 0.25 -> 0.75; target 0 (s = -1), score 0.5 -> 1.5; target 1, score 2 -> 0
    assert Hinge().forward(np.array([[0.25], [0.5], [2.0]]), np.array([[1.0], [0.0], [1.0]])) == pytest.approx(2.25 / 3)
    assert Hinge().forward(np.array([[0.5]]), np.array([[-1.0]])) == pytest.approx(1.5)  # -1/+1 targets as they are


def test_gradients_match_their_formulas():
    loss = Huber(delta=1.0)
    loss.forward(np.array([[0.5, -3.0]]), np.zeros((1, 2)))
    np.testing.assert_allclose(loss.backward(), [[0.25, -0.5]])
    loss = Hinge()
    loss.forward(np.array([[0.25], [0.5], [2.0]]), np.array([[1.0], [0.0], [1.0]]))
    np.testing.assert_allclose(loss.backward(), [[-1 / 3], [1 / 3], [0.0]])
    loss = BCEWithLogits()
    loss.forward(np.array([[0.0, np.log(3.0)]]), np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(loss.backward(), [[(0.5 - 1) / 2, 0.75 / 2]])


def test_softmax_cross_entropy_indices_and_one_hot_agree():
    rng = np.random.default_rng(3)
    z, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    for loss_type in (SoftmaxCrossEntropy, NLL):
        pred = z if loss_type is SoftmaxCrossEntropy else softmax(z)
        a, b = loss_type(), loss_type()
        assert a.forward(pred, labels) == b.forward(pred, np.eye(3)[labels])
        np.testing.assert_array_equal(a.backward(), b.backward())
        assert loss_type.accepts_class_indices


def test_bce_with_logits_is_stable_for_huge_logits():
    loss = BCEWithLogits()
    z = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]])
    t = np.array([[1.0], [0.0], [0.0], [1.0]])
    assert loss.forward(z, t) == pytest.approx((0 + 0 + 1000 + 1000) / 4)
    np.testing.assert_array_equal(loss.backward(), [[0.0], [0.0], [0.25], [-0.25]])
    z32 = z.astype(np.float32)
    assert loss.forward(z32, t.astype(np.float32)) == pytest.approx(500.0)
    assert np.all(np.isfinite(loss.backward()))


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    loss = SoftmaxCrossEntropy()
    assert loss.forward(np.array([[1000.0, -1000.0], [0.0, 2000.0]]), np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(1000.0)
    assert np.all(np.isfinite(loss.backward()))


def test_probability_losses_stay_finite_at_0_and_1():
    bce = BinaryCrossEntropy(eps=1e-7)
    value = bce.forward(np.array([[0.0], [1.0], [1.0]]), np.array([[1.0], [0.0], [1.0]]))
    assert value == pytest.approx(-2 * np.log(1e-7) / 3, rel=1e-6)  # each wrong one costs -log(eps)
    np.testing.assert_array_equal(bce.backward(), [[0.0], [0.0], [0.0]])  # clipped: no gradient
    nll = NLL()
    for dtype in (np.float32, np.float64):
        assert np.isfinite(nll.forward(np.array([[0.0, 1.0]], dtype=dtype), np.array([0])))
        assert np.all(np.isfinite(nll.backward()))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: BinaryCrossEntropy(eps=0), "eps: expected a number in"),
        (lambda: BinaryCrossEntropy(eps=0.5), "eps: expected a number in"),
        (lambda: Huber(delta=0), "delta: expected a positive number"),
        (lambda: Huber(delta="abc"), "delta: expected a positive number"),
    ],
)
def test_bad_options_are_runner_errors(make, message):
    with pytest.raises(RunnerError, match=message):
        make()


def test_hinge_rejects_targets_other_than_0_1():
    with pytest.raises(RunnerError, match="hinge: targets must be 0/1"):
        Hinge().forward(np.zeros((2, 1)), np.array([[0.5], [1.0]]))


def test_every_loss_is_registered_with_a_description():
    specs = {spec.name: spec for spec in runner_losses()}
    assert set(specs) == {
        "mse",
        "sum_squared",
        "l1",
        "softmax_cross_entropy",
        "nll",
        "binary_cross_entropy",
        "bce_with_logits",
        "huber",
        "hinge",
    }
    assert all(spec.description for spec in specs.values())


# --------------------------------------------------------------------------- against PyTorch

TORCH_TOL = 1e-10  # absolute, value and gradient, float64


def torch_reference(name, pred, target):
    """The torch loss on a float64 leaf tensor for ``pred``."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install torch==2.13.0")
    F = torch.nn.functional
    p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(target)
    if target.dtype.kind == "i":
        t = t.long()  # class indices
    base = name.removesuffix("_onehot").removesuffix("_soft").removesuffix("_delta")
    value = {
        "mse": lambda: F.mse_loss(p, t),
        "sum_squared": lambda: 0.5 * ((p - t) ** 2).sum(),
        "l1": lambda: F.l1_loss(p, t),
        "softmax_cross_entropy": lambda: F.cross_entropy(p, t),  # indices, or probabilities as targets
        "nll": lambda: F.nll_loss(torch.log(p), t),
        "binary_cross_entropy": lambda: F.binary_cross_entropy(p, t),
        "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(p, t),
        "huber": lambda: F.huber_loss(p, t, delta=0.5 if name == "huber_delta" else 1.0),
        "hinge": lambda: torch.clamp(1 - (2 * t - 1) * p, min=0).mean(),
    }[base]()
    value.backward()
    return value.item(), p.grad.numpy()


def nll_onehot_reference(pred, target):
    """torch's nll_loss takes class indices only: one-hot rows go in as their argmax."""
    return torch_reference("nll", pred, target.argmax(axis=1))


@pytest.mark.parametrize("name", NAMES)
def test_matches_pytorch(name):
    loss, pred, target = cases(np.random.default_rng(4))[name]
    value, grad = (loss.forward(pred, target), loss.backward())
    if name == "nll_onehot":
        expected_value, expected_grad = nll_onehot_reference(pred, target)
    else:
        expected_value, expected_grad = torch_reference(name, pred, target)
    assert abs(value - expected_value) <= TORCH_TOL
    np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=TORCH_TOL)


def test_softmax_cross_entropy_matches_pytorch_on_soft_labels_and_huge_logits():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((5, 4)) * np.array([[1], [1], [1], [300], [1000]])
    soft = rng.dirichlet(np.ones(4), 5)
    for target in (soft, np.array([0, 1, 2, 3, 0])):
        loss = SoftmaxCrossEntropy()
        value, grad = loss.forward(z, target), loss.backward()
        expected_value, expected_grad = torch_reference("softmax_cross_entropy", z, target)
        assert abs(value - expected_value) <= TORCH_TOL * max(1.0, abs(expected_value))
        np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=TORCH_TOL)


def test_bce_with_logits_matches_pytorch_on_huge_logits():
    z = np.array([[1000.0], [-1000.0], [40.0], [-40.0], [1e-3]])
    t = np.array([[1.0], [1.0], [0.0], [0.0], [1.0]])
    loss = BCEWithLogits()
    value, grad = loss.forward(z, t), loss.backward()
    expected_value, expected_grad = torch_reference("bce_with_logits", z, t)
    assert abs(value - expected_value) <= TORCH_TOL * abs(expected_value)
    np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=TORCH_TOL)
