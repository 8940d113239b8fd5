"""The graph's nodes (plugins/layers/merge.py): add, concat and multiply of several inputs, learned
scalar scale and bias; against PyTorch float64 (1e-10) and central differences (1e-7). Their contract
classes are in tests/test_contracts.py (MergeLayerContract, LayerContract)."""

from __future__ import annotations

import numpy as np
import pytest

from runner.api import MergeLayer, RunnerError, input_count
from runner.builtins import layers as L
from runner.core.gradcheck import check_layer, check_node_at

TORCH_ATOL = 1e-10
SMOOTH = 1e-7

# name -> (factory, the inputs' shapes (one sample), torch's function of the inputs)
MERGES = {
    "add": (L.Add, ((7,), (7,)), lambda torch, *xs: xs[0] + xs[1]),
    "add-three": (L.Add, ((3, 4), (3, 4), (3, 4)), lambda torch, *xs: xs[0] + xs[1] + xs[2]),
    "concat": (L.Concat, ((5,), (2,)), lambda torch, *xs: torch.cat(xs, dim=-1)),
    "concat-three": (L.Concat, ((2, 3), (2, 1), (2, 4)), lambda torch, *xs: torch.cat(xs, dim=-1)),
    "multiply": (L.Multiply, ((7,), (7,)), lambda torch, *xs: xs[0] * xs[1]),
    "multiply-three": (L.Multiply, ((6,), (6,), (6,)), lambda torch, *xs: xs[0] * xs[1] * xs[2]),
}


def inputs(shapes, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((batch, *shape)) for shape in shapes)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is a test-only dependency: the reference the layers are compared with")


@pytest.mark.parametrize("name", MERGES)
def test_merges_match_torch(torch, name):
    make, shapes, theirs = MERGES[name]
    layer = make()
    out = layer.build(shapes, np.random.default_rng(0), np.dtype(np.float64))
    xs = inputs(shapes)
    y = layer.forward(*xs, training=True)
    dout = np.random.default_rng(1).standard_normal(y.shape)
    dxs = layer.backward(dout)
    xt = [torch.tensor(x, requires_grad=True) for x in xs]
    yt = theirs(torch, *xt)
    yt.backward(torch.tensor(dout))
    assert y.shape == (5, *out) == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=TORCH_ATOL)
    assert len(dxs) == len(xs)
    for dx, x in zip(dxs, xt):
        np.testing.assert_allclose(dx, x.grad.numpy(), rtol=0, atol=TORCH_ATOL)


@pytest.mark.parametrize("name", MERGES)
def test_merges_match_central_differences(name):
    make, shapes, _ = MERGES[name]
    layer = make()
    layer.build(shapes, np.random.default_rng(0), np.dtype(np.float64))
    checks = check_node_at(layer, inputs(shapes, seed=3), True, 1e-6, None, np.random.default_rng(0))
    assert set(checks) == {f"x{k}" for k in range(len(shapes))}
    for key, c in checks.items():
        assert c.rel_error <= SMOOTH and c.entries > 0 and c.kinks == 0, (key, c)


def test_one_array_given_twice_is_perturbed_per_input():
    """multiply(a, a) = a^2: each input's own gradient is dout a (the graph adds them: 2 a dout)."""
    layer = L.Multiply()
    layer.build(((4,), (4,)), np.random.default_rng(0), np.dtype(np.float64))
    a = np.random.default_rng(0).standard_normal((3, 4))
    checks = check_node_at(layer, (a.copy(), a.copy()), True, 1e-6, None, np.random.default_rng(0))
    assert max(c.rel_error for c in checks.values()) <= SMOOTH


@pytest.mark.parametrize("make, key, theirs", [(lambda: L.Scale(init=1.7), "w", "mul"), (lambda: L.Bias(init=-0.3), "b", "add")])
def test_learned_scalars_match_torch_and_central_differences(torch, make, key, theirs):
    layer = make()
    assert layer.build((3, 4), np.random.default_rng(0), np.dtype(np.float64)) == (3, 4)
    x = np.random.default_rng(2).standard_normal((5, 3, 4))
    dout = np.random.default_rng(3).standard_normal((5, 3, 4))
    y = layer.forward(x, training=True)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    pt = torch.tensor(layer.params[key], requires_grad=True)
    yt = getattr(xt, theirs)(pt)
    yt.backward(torch.tensor(dout))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=TORCH_ATOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=TORCH_ATOL)
    np.testing.assert_allclose(layer.grads[key], pt.grad.numpy(), rtol=0, atol=TORCH_ATOL)
    checks = check_layer(make(), (3, 4))
    assert set(checks) == {"x", key} and max(c.rel_error for c in checks.values()) <= SMOOTH


def test_the_multi_input_contract():
    assert input_count(L.Linear(3)) == 1 and input_count(L.Add()) is None
    assert issubclass(L.Concat, MergeLayer) and MergeLayer.n_inputs == 2

    class Pair:  # a third party's merge without subclassing: declaring n_inputs is enough
        n_inputs = 2

    assert input_count(Pair()) == 2


@pytest.mark.parametrize(
    "make, shapes, message",
    [
        (L.Add, ((3,), (4,)), "add: inputs of shapes 3, 4; add needs equal shapes"),
        (L.Multiply, ((3,), (3, 1)), "multiply: inputs of shapes 3, 3x1; multiply needs equal shapes"),
        (L.Concat, ((2, 3), (3, 3)), "concat: inputs of shapes 2x3, 3x3; concat needs equal shapes but for the last"),
    ],
)
def test_merge_shapes_that_do_not_fit_are_refused_by_build(make, shapes, message):
    with pytest.raises(RunnerError, match=message):
        make().build(shapes, np.random.default_rng(0), np.dtype(np.float32))


def test_scalar_options_are_checked():
    with pytest.raises(RunnerError, match="init: expected a number, got 'a'"):
        L.Scale(init="a")
