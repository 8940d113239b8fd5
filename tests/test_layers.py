"""Every built-in layer: backward against central differences, values and gradients against PyTorch,
dtypes and shapes, randomness and running statistics, Linear's initializers, and option checking."""

import math

import numpy as np
import pytest

from runner.api import RunnerError
from runner.builtins import layers as L
from runner.core.gradcheck import check_layer

SMOOTH = 1e-7  # relative error allowed where the function is smooth
KINKED = 1e-4  # where it has kinks (inputs sampled at least 1e-2 away from them)
TORCH_ATOL = 1e-10  # float64, same inputs and weights: only rounding differs

# id -> (factory, tolerance, input shape of one sample, training)
GRADCHECK = {
    **{f"linear-{init}": (lambda init=init: L.Linear(5, init=init, bias=0.1), SMOOTH, (7,), True) for init in L.INITS},
    "relu": (L.ReLU, KINKED, (7,), True),
    "leaky_relu": (lambda: L.LeakyReLU(alpha=0.1), KINKED, (7,), True),
    # elu with alpha=1 is C1 at 0 (its second derivative jumps), alpha=0.5 is kinked; inputs avoid 0 either way
    "elu": (L.ELU, SMOOTH, (7,), True),
    "elu-0.5": (lambda: L.ELU(alpha=0.5), KINKED, (7,), True),
    "gelu": (L.GELU, SMOOTH, (7,), True),
    "gelu-tanh": (lambda: L.GELU(approximate="tanh"), SMOOTH, (7,), True),
    "sigmoid": (L.Sigmoid, SMOOTH, (7,), True),
    "tanh": (L.Tanh, SMOOTH, (7,), True),
    "softplus": (L.Softplus, SMOOTH, (7,), True),
    # beta x > threshold for some inputs: the linear branch (torch's convention, a jump of ~1e-1 at the threshold)
    "softplus-threshold": (lambda: L.Softplus(beta=2.0, threshold=1.5), SMOOTH, (7,), True),
    "swish": (lambda: L.Swish(beta=1.7), SMOOTH, (7,), True),
    "silu": (L.SiLU, SMOOTH, (7,), True),
    "identity": (L.Identity, SMOOTH, (7,), True),
    "softmax": (L.Softmax, SMOOTH, (2, 5), True),
    "dropout-train": (lambda: L.Dropout(p=0.3), SMOOTH, (3, 7), True),
    "dropout-eval": (lambda: L.Dropout(p=0.3), SMOOTH, (3, 7), False),
    "flatten": (L.Flatten, SMOOTH, (2, 3, 2), True),
    "batchnorm-train": (lambda: L.BatchNorm(momentum=0.3), SMOOTH, (5,), True),
    "batchnorm-eval": (L.BatchNorm, SMOOTH, (5,), False),
    "layernorm": (L.LayerNorm, SMOOTH, (3, 6), True),
    # images (channels, h, w); more shapes, strides and paddings in tests/test_conv.py
    "conv2d": (lambda: L.Conv2D(3, kernel=3, padding=1), SMOOTH, (2, 5, 5), True),
    "conv2d-strided": (lambda: L.Conv2D(2, kernel=[2, 3], stride=2, padding=[0, 1], init="torch"), SMOOTH, (3, 6, 7), True),
    "maxpool2d": (L.MaxPool2D, SMOOTH, (2, 4, 6), True),  # smooth away from ties, which random inputs do not have
    "maxpool2d-overlapping": (lambda: L.MaxPool2D(3, stride=2, padding=1), SMOOTH, (2, 7, 7), True),
    "avgpool2d": (lambda: L.AvgPool2D(3, stride=2, padding=1), SMOOTH, (2, 7, 7), True),
    "global_avg_pool": (L.GlobalAvgPool, SMOOTH, (3, 4, 5), True),
    "batchnorm2d-train": (lambda: L.BatchNorm2D(momentum=0.3), SMOOTH, (3, 4, 4), True),
    "batchnorm2d-eval": (L.BatchNorm2D, SMOOTH, (3, 4, 4), False),
    "scale": (lambda: L.Scale(init=1.5), SMOOTH, (3, 7), True),
    "bias": (lambda: L.Bias(init=-0.5), SMOOTH, (3, 7), True),
}
#: the graph's merge nodes, checked in tests/test_graph_layers.py (several inputs)
MERGES = {"add", "concat", "multiply"}


@pytest.mark.parametrize("name", GRADCHECK)
def test_backward_matches_central_differences(name):
    make, tol, shape, training = GRADCHECK[name]
    layer = make()
    checks = check_layer(layer, shape, batch=6, training=training)
    assert set(checks) == {"x", *layer.params}
    for key, c in checks.items():
        assert c.rel_error <= tol, (key, c)
        assert c.entries > 0 and c.kinks == 0, (key, c)


def test_every_registered_layer_is_gradchecked_and_documented():
    specs = L.runner_layers()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    checked = {name.split("-")[0] for name in GRADCHECK} | MERGES
    assert set(names) <= checked
    for spec in specs:
        assert spec.description and spec.factory.__doc__, spec.name


# --------------------------------------------------------------------------- against PyTorch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is a test-only dependency: the reference the layers are compared with")


def run_ours(layer, x, dout, training=True, seed=0):
    layer.build(x.shape[1:], np.random.default_rng(seed), np.dtype(np.float64))
    return layer, layer.forward(x, training=training), layer.backward(dout)


def run_torch(torch, fn, x, dout):
    xt = torch.tensor(x, requires_grad=True)
    y = fn(xt)
    y.backward(torch.tensor(dout))
    return y.detach().numpy(), xt.grad.numpy()


def assert_close(ours, theirs):
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TORCH_ATOL)


def sample(shape, seed=3, scale=3.0):
    """Inputs spread over (-3 scale, 3 scale) so both sides of every kink and threshold are hit."""
    return scale * np.random.default_rng(seed).standard_normal(shape)


# our layer, torch's function of (torch.nn.functional, x)
ELEMENTWISE = {
    "relu": (L.ReLU, lambda F, x: F.relu(x)),
    "leaky_relu": (L.LeakyReLU, lambda F, x: F.leaky_relu(x)),
    "leaky_relu-0.2": (lambda: L.LeakyReLU(alpha=0.2), lambda F, x: F.leaky_relu(x, 0.2)),
    "elu": (L.ELU, lambda F, x: F.elu(x)),
    "elu-0.5": (lambda: L.ELU(alpha=0.5), lambda F, x: F.elu(x, alpha=0.5)),
    "gelu": (L.GELU, lambda F, x: F.gelu(x)),
    "gelu-tanh": (lambda: L.GELU(approximate="tanh"), lambda F, x: F.gelu(x, approximate="tanh")),
    "sigmoid": (L.Sigmoid, lambda F, x: x.sigmoid()),
    "tanh": (L.Tanh, lambda F, x: x.tanh()),
    "softplus": (L.Softplus, lambda F, x: F.softplus(x)),
    "softplus-2-3": (lambda: L.Softplus(beta=2.0, threshold=3.0), lambda F, x: F.softplus(x, beta=2.0, threshold=3.0)),
    "silu": (L.SiLU, lambda F, x: F.silu(x)),
    "swish": (L.Swish, lambda F, x: F.silu(x)),
    "swish-1.5": (lambda: L.Swish(beta=1.5), lambda F, x: x * (1.5 * x).sigmoid()),
    "identity": (L.Identity, lambda F, x: x),  # torch.nn.Identity()(x) is x itself
    "softmax": (L.Softmax, lambda F, x: F.softmax(x, dim=-1)),
    "flatten": (L.Flatten, lambda F, x: x.flatten(1)),
}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_matches_torch(torch, name):
    ours, theirs = ELEMENTWISE[name]
    x = sample((8, 3, 5))
    x[0, 0, :3] = [0.0, 40.0, -40.0]  # the kink itself, and far into the saturated / thresholded ranges
    dout = sample((8, 15) if name == "flatten" else x.shape, seed=4, scale=1.0)
    _, y, dx = run_ours(ours(), x, dout)
    y_t, dx_t = run_torch(torch, lambda x: theirs(torch.nn.functional, x), x, dout)
    assert_close(y, y_t)
    assert_close(dx, dx_t)


def test_linear_matches_torch(torch):
    x, dout = sample((6, 4)), sample((6, 3), seed=4)
    layer, y, dx = run_ours(L.Linear(3, init="he_uniform", bias=0.3), x, dout)
    linear = torch.nn.Linear(4, 3, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(layer.params["W"].T))  # torch's weight is (out, in), ours (in, out)
        linear.bias.copy_(torch.tensor(layer.params["b"]))
    y_t, dx_t = run_torch(torch, linear, x, dout)
    assert_close(y, y_t)
    assert_close(dx, dx_t)
    assert_close(layer.grads["W"], linear.weight.grad.numpy().T)
    assert_close(layer.grads["b"], linear.bias.grad.numpy())


def with_random_affine(torch, layer, module, rng):
    """Give our gamma/beta and torch's weight/bias the same random values (not the ones/zeros they start with)."""
    for ours, theirs in (("gamma", module.weight), ("beta", module.bias)):
        layer.params[ours][...] = rng.standard_normal(layer.params[ours].shape)
        with torch.no_grad():
            theirs.copy_(torch.tensor(layer.params[ours]))


@pytest.mark.parametrize("momentum", [0.1, 0.35])
def test_batchnorm_matches_torch_in_training_and_eval(torch, momentum):
    rng = np.random.default_rng(5)
    layer = L.BatchNorm(momentum=momentum, eps=1e-3)
    layer.build((4,), rng, np.dtype(np.float64))
    bn = torch.nn.BatchNorm1d(4, momentum=momentum, eps=1e-3, dtype=torch.float64)
    with_random_affine(torch, layer, bn, rng)
    for training in [True, True, True, False]:
        bn.train(training)
        x = 2.0 + 3.0 * rng.standard_normal((7, 4))
        dout = rng.standard_normal((7, 4))
        bn.zero_grad()
        y_t, dx_t = run_torch(torch, bn, x, dout)
        assert_close(layer.forward(x, training=training), y_t)
        assert_close(layer.backward(dout), dx_t)
        assert_close(layer.grads["gamma"], bn.weight.grad.numpy())
        assert_close(layer.grads["beta"], bn.bias.grad.numpy())
        # running_var is updated with the unbiased batch variance, as torch does
        assert_close(layer.buffers["running_mean"], bn.running_mean.numpy())
        assert_close(layer.buffers["running_var"], bn.running_var.numpy())
    assert not np.allclose(layer.buffers["running_mean"], 0.0)  # the statistics did move


def test_layernorm_matches_torch(torch):
    rng = np.random.default_rng(6)
    x, dout = 1.0 + sample((5, 3, 6)), rng.standard_normal((5, 3, 6))
    layer = L.LayerNorm(eps=1e-4)
    layer.build((3, 6), rng, np.dtype(np.float64))
    ln = torch.nn.LayerNorm(6, eps=1e-4, dtype=torch.float64)
    with_random_affine(torch, layer, ln, rng)
    y_t, dx_t = run_torch(torch, ln, x, dout)
    assert_close(layer.forward(x, training=True), y_t)
    assert_close(layer.backward(dout), dx_t)
    assert_close(layer.grads["gamma"], ln.weight.grad.numpy())
    assert_close(layer.grads["beta"], ln.bias.grad.numpy())


# --------------------------------------------------------------------------- dropout


def built_dropout(p, seed=0, shape=(1000,)):
    layer = L.Dropout(p=p)
    layer.build(shape, np.random.default_rng(seed), np.dtype(np.float64))
    return layer


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics(p):
    x = np.ones((1000, 1000))
    y = built_dropout(p).forward(x, training=True)
    dropped = np.mean(y == 0)
    assert abs(dropped - p) < 0.005  # 10 standard deviations of the fraction over 1e6 draws
    np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - p), rtol=1e-15)
    assert y.mean() == pytest.approx(1.0, abs=0.02)  # inverted dropout keeps the expectation


def test_dropout_backward_uses_the_forward_mask_and_eval_is_identity():
    layer = built_dropout(0.4)
    x = sample((50, 1000))
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx == 0, y == 0)
    assert layer.forward(x, training=False) is x
    assert layer.backward(x) is x
    assert built_dropout(0.0).forward(x, training=True) is not x
    np.testing.assert_array_equal(built_dropout(0.0).forward(x, training=True), x)


def test_dropout_is_seeded():
    x = np.ones((20, 1000))
    first = built_dropout(0.5, seed=1).forward(x, training=True)
    np.testing.assert_array_equal(first, built_dropout(0.5, seed=1).forward(x, training=True))
    assert not np.array_equal(first, built_dropout(0.5, seed=2).forward(x, training=True))
    layer = built_dropout(0.5, seed=1)
    assert not np.array_equal(layer.forward(x, training=True), layer.forward(x, training=True))  # a new mask each step
    f32 = built_dropout(0.5, seed=1).forward(x.astype(np.float32), training=True)
    np.testing.assert_array_equal(f32 == 0, first == 0)  # the mask does not depend on the dtype


# --------------------------------------------------------------------------- determinism, dtypes, shapes


def test_batchnorm_eval_is_deterministic_and_training_is_seeded():
    x = sample((16, 5))

    def trained(seed):
        layer = L.BatchNorm()
        layer.build((5,), np.random.default_rng(seed), np.dtype(np.float64))
        outs = [layer.forward(x + i, training=True) for i in range(3)]
        return layer, outs

    layer, outs = trained(0)
    _, again = trained(0)
    for a, b in zip(outs, again):
        np.testing.assert_array_equal(a, b)
    first = layer.forward(x, training=False)
    np.testing.assert_array_equal(first, layer.forward(x, training=False))
    mean = layer.buffers["running_mean"].copy()
    layer.forward(x, training=False)
    np.testing.assert_array_equal(layer.buffers["running_mean"], mean)  # eval leaves the statistics alone


def test_batchnorm_rejects_a_single_sample_in_training():
    layer = L.BatchNorm()
    layer.build((3,), np.random.default_rng(0), np.dtype(np.float64))
    with pytest.raises(RunnerError, match="at least 2 samples, got 1"):
        layer.forward(np.ones((1, 3)), training=True)
    layer.forward(np.ones((1, 3)), training=False)


# factory, input shape of one sample
ALL_LAYERS = {name: (make, shape) for name, (make, _, shape, _) in GRADCHECK.items()}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", ALL_LAYERS)
def test_float32_in_float32_out_and_shapes(name, training):
    make, shape = ALL_LAYERS[name]
    layer = make()
    out_shape = layer.build(shape, np.random.default_rng(0), np.dtype(np.float32))
    for array in (*layer.params.values(), *layer.grads.values(), *layer.buffers.values()):
        assert array.dtype == np.float32
    x = np.random.default_rng(1).standard_normal((6, *shape)).astype(np.float32)
    y = layer.forward(x, training=training)
    assert y.dtype == np.float32 and y.shape == (6, *out_shape)
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for array in (*layer.params.values(), *layer.grads.values(), *layer.buffers.values()):
        assert array.dtype == np.float32


def test_flat_layers_name_the_problem_with_images():
    for layer in (L.Linear(3), L.BatchNorm()):
        with pytest.raises(RunnerError, match="expected flat inputs of \\(features,\\), got 28x28; put a flatten layer"):
            layer.build((28, 28), np.random.default_rng(0), np.dtype(np.float32))
    assert L.Flatten().build((28, 28), np.random.default_rng(0), np.dtype(np.float32)) == (784,)


# --------------------------------------------------------------------------- initializers


def weights(init, n_in=512, out=512, dtype=np.float64, **options):
    layer = L.Linear(out, init=init, **options)
    layer.build((n_in,), np.random.default_rng(7), np.dtype(dtype))
    return layer.params["W"], layer.params["b"]


@pytest.mark.parametrize(
    "init, std, bound",
    [
        ("normal", 0.01, None),
        ("xavier_normal", math.sqrt(2 / 1024), None),
        ("he_normal", math.sqrt(2 / 512), None),
        ("uniform_centered", math.sqrt(1 / 12), 0.5),
        ("xavier_uniform", math.sqrt(6 / 1024) / math.sqrt(3), math.sqrt(6 / 1024)),
        ("he_uniform", math.sqrt(6 / 512) / math.sqrt(3), math.sqrt(6 / 512)),
    ],
)
def test_initializer_statistics(init, std, bound):
    W, b = weights(init)
    assert W.shape == (512, 512) and b.shape == (512,)
    assert W.std() == pytest.approx(std, rel=0.05)
    assert abs(W.mean()) < 0.05 * std
    if bound is not None:
        assert W.min() >= -bound and W.max() < bound
        assert W.min() < -0.99 * bound and W.max() > 0.99 * bound  # the whole range is used


def test_scaled_uniform_and_normal_std_and_bias():
    W, _ = weights("scaled_uniform")
    assert W.min() >= 0.0 and W.max() < 0.001
    assert W.mean() == pytest.approx(0.0005, rel=0.05)
    W, b = weights("normal", std=0.2, bias=0.25)
    assert W.std() == pytest.approx(0.2, rel=0.05)
    np.testing.assert_array_equal(b, 0.25)


@pytest.mark.parametrize("init", L.INITS)
def test_initializers_give_the_build_dtype(init):
    W, b = weights(init, 6, 4, dtype=np.float32)
    assert W.shape == (6, 4) and W.dtype == np.float32 and b.dtype == np.float32


def test_original_initializers_draw_the_same_weights_as_before():
    """Configs and recorded runs from before the table still give the very same weights."""
    rng = np.random.default_rng(7)
    expected = {
        "normal": 0.01 * rng.standard_normal((9, 4)),
        "he_normal": np.sqrt(2.0 / 9) * np.random.default_rng(7).standard_normal((9, 4)),
        "xavier_uniform": np.random.default_rng(7).uniform(-np.sqrt(6.0 / 13), np.sqrt(6.0 / 13), (9, 4)),
        "uniform_centered": np.random.default_rng(7).uniform(-0.5, 0.5, (9, 4)),
    }
    for init, W in expected.items():
        np.testing.assert_array_equal(weights(init, 9, 4)[0], W)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: L.Linear(3, init="glorot"),
            "init: expected one of normal, uniform_centered, scaled_uniform, xavier_uniform, xavier_normal, he_uniform, "
            "he_normal, got 'glorot'",
        ),
        (lambda: L.Linear(True), "out: expected a positive integer number of features, got True"),
        (lambda: L.Linear(2.0), "out: expected a positive integer number of features, got 2.0"),
        (lambda: L.Linear(3, std=0), "std: expected a positive number, got 0"),
        (lambda: L.Linear(3, bias="zero"), "bias: expected a number, got 'zero'"),
        (lambda: L.LeakyReLU(alpha="0.1"), "alpha: expected a number, got '0.1'"),
        (lambda: L.ELU(alpha=-1.0), "alpha: expected a non-negative number, got -1.0"),
        (lambda: L.GELU(approximate="erf"), "approximate: expected 'none' (exact, with erf) or 'tanh', got 'erf'"),
        (lambda: L.Softplus(beta=0), "beta: expected a positive number, got 0"),
        (lambda: L.Softplus(threshold=float("inf")), "threshold: expected a positive number, got inf"),
        (lambda: L.Swish(beta=True), "beta: expected a positive number, got True"),
        (lambda: L.Dropout(p=1.0), "p: expected a drop probability in [0, 1), got 1.0"),
        (lambda: L.Dropout(p=-0.1), "p: expected a drop probability in [0, 1), got -0.1"),
        (lambda: L.BatchNorm(momentum=1.5), "momentum: expected a number in [0, 1], got 1.5"),
        (lambda: L.BatchNorm(eps=0.0), "eps: expected a positive number, got 0.0"),
        (lambda: L.LayerNorm(eps=None), "eps: expected a positive number, got None"),
    ],
)
def test_bad_options_name_the_option_the_value_and_what_was_expected(make, message):
    with pytest.raises(RunnerError) as e:
        make()
    assert str(e.value).startswith(message)


# --------------------------------------------------------------------------- accuracy at the edges


@pytest.mark.parametrize("make", [L.BatchNorm, L.LayerNorm], ids=["batchnorm", "layernorm"])
def test_normalization_of_badly_scaled_inputs_is_accurate(make):
    """Inputs of mean 1e5, std 1: the compensated mean keeps x̂ within 2e-11 of an 80-bit reference
    (a plain mean: ~5e-11; PyTorch 2.13: ~3e-11)."""
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(10):
        x = 1e5 + rng.standard_normal((64, 16))
        layer = make()
        layer.build((16,), rng, np.dtype(np.float64))
        y = layer.forward(x, training=True)
        axis = 0 if isinstance(layer, L.BatchNorm) else -1
        xl = x.astype(np.longdouble)
        mean = xl.mean(axis=axis, keepdims=True)
        exact = (xl - mean) / np.sqrt(((xl - mean) ** 2).mean(axis=axis, keepdims=True) + 1e-5)
        errors.append(float(np.max(np.abs(y - exact))))
    assert np.median(errors) < 2e-11, errors


def test_elu_gradient_keeps_its_relative_accuracy_far_below_zero():
    layer = L.ELU()
    layer.build((4,), np.random.default_rng(0), np.dtype(np.float64))
    x = np.array([[-1.0, -25.0, -40.0, -700.0]])
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), np.exp(x), rtol=1e-15)
