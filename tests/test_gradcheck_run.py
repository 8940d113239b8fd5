"""The run's gradient check (runner.gradcheck.check_run, as app.gradient_check calls it): each layer
alone at the activations it really receives, the loss alone, every parameter end to end.

- a wrong d(input) is caught on its own layer, in the middle of a model and as its first layer;
- a wrong parameter gradient is caught on its layer;
- correct layers never fail: every built-in layer and loss, under every initializer, trained in
  float32 and float64, on MNIST, iris and the 2-feature spirals, with the run's settings;
- smooth layers skip nothing; only declared kinks are skipped.
"""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from runner.api import DataContext, Layer, Meta, PluginSpec, Splits, hookimpl
from runner.builtins.layers import INITS
from runner.core.gradcheck import check_run, failure_message, metrics_of
from runner.core.model import build_model
from runner.core.train import targets_for
from runner.testing import plugin_registry

THRESHOLD = 1e-6  # gradcheck.threshold's default
RUN = {"eps": 1e-5, "max_entries": 64}  # the run's defaults (conf/config.yaml)
SAMPLES = 4


class LearnedSoftsign(Layer):
    """y = x / (1 + |a x|), a learned per-feature scale a (a plugin author's layer, correct).

    dy/dx = 1 / (1 + |a x|)^2,  dy/da = -x |x| sign(a) / (1 + |a x|)^2
    """

    kinks = (0.0,)  # |a x| changes formula at x = 0 (the curvature jumps)

    def build(self, input_shape, rng, dtype):
        self.params = {"a": np.full(input_shape, 1.5, dtype)}
        self.grads = {"a": np.zeros(input_shape, dtype)}
        return input_shape

    def forward(self, x, training):
        self.x = x
        self.d = 1.0 + np.abs(self.params["a"] * x)
        return x / self.d

    def backward(self, dout):
        a, x, d2 = self.params["a"], self.x, self.d**2
        self.grads["a"][...] = np.sum(-dout * x * np.abs(x) * np.sign(a) / d2, axis=0)
        return dout / d2


class DoubledInputGrad(LearnedSoftsign):
    def backward(self, dout):
        return 2.0 * super().backward(dout)


class DoubledParamGrad(LearnedSoftsign):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["a"] *= 2.0
        return dx


class SoftsignPlugin:
    """The three layers as a plugin object, registered for these tests only."""

    @hookimpl
    def runner_layers(self):
        return [
            PluginSpec("softsign", LearnedSoftsign, "learned softsign"),
            PluginSpec("softsign_bad_x", DoubledInputGrad, "d(input) doubled"),
            PluginSpec("softsign_bad_a", DoubledParamGrad, "d(a) doubled"),
        ]


@cache
def registry():
    return plugin_registry(SoftsignPlugin())


@cache
def dataset(name: str, dtype: str) -> Splits:
    options = {"spirals": {"classes": 2}, "spirals_binary": {"classes": 2}}.get(name, {})
    kind = "spirals" if name == "spirals_binary" else name
    splits = (
        registry().get("dataset", kind, "test").create(options, "test").load(DataContext(Path(SHARED_DATA), 0, np.dtype(dtype)))
    )
    if name == "spirals_binary":  # arm 1 vs arm 0 as a binary task of 2 features
        meta = Meta("spirals_binary", (2,), 1, "binary", ("arm 0", "arm 1"))
        splits = Splits(splits.train, splits.val, splits.test, meta)
    return splits


def run_check(layers: list[dict], data: str, loss_name: str, dtype: str = "float32", seed: int = 0, loss_options=None):
    splits = dataset(data, dtype)
    model = build_model(layers, registry(), splits.meta, np.random.default_rng(seed), np.dtype(dtype))
    loss = registry().get("loss", loss_name, "test").create(loss_options or {}, "test")
    x = splits.train.x[:SAMPLES]
    target = targets_for(splits.train.y[:SAMPLES], splits.meta, loss, x.dtype)
    return check_run(model, loss, x, target, seed=seed, loss_name=loss_name, **RUN)


def failing(rows, threshold=THRESHOLD) -> set[str]:
    return {r.metric.removeprefix("gradcheck/") for r in rows if r.check.rel_error > threshold}


# --------------------------------------------------------------------------- the three cases

MIDDLE = [{"type": "linear", "out": 32}, {"type": "SOFTSIGN"}, {"type": "linear", "out": "auto"}]
FIRST = [{"type": "SOFTSIGN"}, {"type": "linear", "out": 32}, {"type": "tanh"}, {"type": "linear", "out": "auto"}]


def with_layer(layers, name):
    return [{**layer, "type": name} if layer["type"] == "SOFTSIGN" else layer for layer in layers]


def test_a_doubled_input_gradient_is_caught_on_its_own_layer_in_the_middle():
    rows = run_check(with_layer(MIDDLE, "softsign_bad_x"), "spirals", "softmax_cross_entropy")
    alone = {name for name in failing(rows) if not name.startswith("model/")}
    assert alone == {"1.softsign_bad_x.x"}  # its parameter and every other layer pass alone
    x_row = next(r for r in rows if r.metric == "gradcheck/1.softsign_bad_x.x")
    assert x_row.check.rel_error == pytest.approx(1 / 3, rel=1e-3)  # |2g - g| / (|2g| + |g|)
    message = failure_message(rows, THRESHOLD, {1: "runner-softsign 0.1.0 (softsign)"})
    assert message.startswith(
        "gradient check failed: layer 1 (softsign_bad_x, from runner-softsign 0.1.0 (softsign)) d(input) x: "
        "relative error 3.33e-01 > gradcheck.threshold 1e-06 (metric gradcheck/1.softsign_bad_x.x/rel_error)"
    )
    assert "model/0.linear.W" in message  # what follows from it end to end, named after the culprit


def test_a_doubled_input_gradient_is_caught_when_the_layer_comes_first():
    rows = run_check(with_layer(FIRST, "softsign_bad_x"), "spirals", "softmax_cross_entropy")
    assert failing(rows) == {"0.softsign_bad_x.x"}  # end to end nobody uses the first layer's d(input)


def test_a_doubled_parameter_gradient_is_caught_alone_and_end_to_end():
    rows = run_check(with_layer(MIDDLE, "softsign_bad_a"), "spirals", "softmax_cross_entropy")
    assert failing(rows) == {"1.softsign_bad_a.a", "model/1.softsign_bad_a.a"}
    assert failure_message(rows, THRESHOLD, {}).startswith("gradient check failed: layer 1 (softsign_bad_a) parameter a:")


@pytest.mark.parametrize("layer", ["tanh", "softsign"])
@pytest.mark.parametrize("init", ["normal", "he_normal"])
def test_correct_layers_pass_with_the_default_init_on_two_features(layer, init):
    """The issue's false alarm: linear(32) -> tanh -> linear on 2 features, init normal(0.01), failed at 5.9e-6."""
    layers = [{"type": "linear", "out": 32, "init": init}, {"type": layer}, {"type": "linear", "out": "auto", "init": init}]
    worst = {}
    for seed in range(10):
        rows = run_check(layers, "spirals", "softmax_cross_entropy", seed=seed)
        assert failing(rows) == set(), seed
        for row in rows:
            worst[row.metric] = max(worst.get(row.metric, 0.0), row.check.rel_error)
        if layer == "tanh":
            assert metrics_of(rows)["gradcheck/kinks_skipped"] == 0  # smooth: nothing skipped
    assert max(worst.values()) < 1e-8, max(worst.items(), key=lambda kv: kv[1])


def test_only_declared_kinks_are_skipped():
    """relu declares its kink at 0: inputs right at it are skipped there and only there."""
    splits = dataset("spirals", "float64")
    model = build_model(
        [{"type": "linear", "out": 8, "init": "normal"}, {"type": "relu"}, {"type": "linear", "out": "auto"}],
        registry(),
        splits.meta,
        np.random.default_rng(0),
        np.float64,
    )
    model.layers[0].params["b"][:] = (
        -model.layers[0].forward(splits.train.x[:1].astype(np.float64), True)[0] + model.layers[0].params["b"]
    )
    # the first sample now puts every relu input at exactly 0: each perturbation there crosses the kink
    loss = registry().get("loss", "softmax_cross_entropy", "test").create({}, "test")
    rows = check_run(model, loss, splits.train.x[:SAMPLES].astype(np.float64), splits.train.y[:SAMPLES], loss_name="ce", **RUN)
    kinks = {r.metric: r.check.kinks for r in rows if r.check.kinks}
    assert kinks.get("gradcheck/1.relu.x", 0) == 8  # the 8 inputs of sample 0, at the kink
    assert all(name in ("gradcheck/1.relu.x", "gradcheck/model/0.linear.W", "gradcheck/model/0.linear.b") for name in kinks), (
        kinks
    )
    assert failing(rows) == set()


# --------------------------------------------------------------------------- every built-in, every init, both dtypes

HIDDEN = {  # layer configs placed between two linear layers (softmax as a hidden layer is fine)
    "relu": {},
    "leaky_relu": {"alpha": 0.1},
    "elu": {},
    "gelu": {},
    "gelu_tanh": {"type": "gelu", "approximate": "tanh"},
    "sigmoid": {},
    "tanh": {},
    "softplus": {},
    "swish": {},
    "silu": {},
    "identity": {},
    "softmax": {},
    "dropout": {"p": 0.3},
    "flatten": {},
    "batchnorm": {},
    "layernorm": {},
    "scale": {"init": 0.5},
    "bias": {"init": 0.1},
}
DATASETS = ["mnist", "iris", "spirals"]


def test_every_built_in_layer_is_in_the_matrix():
    built_in = {
        name for name in registry().names("layer") if registry().get("layer", name, "test").provider.distribution == "runner"
    }
    covered = {options.get("type", name) for name, options in HIDDEN.items()} | {"linear"}
    covered |= {"add", "concat", "multiply"}  # merges, a graph's nodes: tests/test_graph.py and test_graph_layers.py
    # layers of images, in ConvNets on image data: tests/test_conv.py (chains and a graph), test_cnn_end_to_end.py
    covered |= {"conv2d", "maxpool2d", "avgpool2d", "global_avg_pool", "batchnorm2d"}
    assert built_in == covered


@pytest.mark.parametrize("data", DATASETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("init", list(INITS))
def test_every_built_in_layer_passes_the_runs_check(data, dtype, init):
    failures = []
    for name, options in HIDDEN.items():
        layer = {"type": name, **options}
        layers = [{"type": "linear", "out": 16, "init": init}, layer, {"type": "linear", "out": "auto", "init": init}]
        rows = run_check(layers, data, "softmax_cross_entropy", dtype)
        failures += [(name, r.metric, f"{r.check.rel_error:.1e}") for r in rows if r.check.rel_error > THRESHOLD]
        if layer["type"] not in ("relu", "leaky_relu", "elu", "softplus"):  # smooth: nothing skipped
            assert metrics_of(rows)["gradcheck/kinks_skipped"] == 0, (
                name,
                [(r.metric, r.check.kinks) for r in rows if r.check.kinks],
            )
    assert failures == []


LOSSES = {  # loss -> (datasets, output layers after the last linear, options)
    "softmax_cross_entropy": (DATASETS, [], {}),
    "nll": (DATASETS, [{"type": "softmax"}], {}),
    "binary_cross_entropy": (["iris_binary", "spirals_binary"], [{"type": "sigmoid"}], {}),
    "bce_with_logits": (["iris_binary", "spirals_binary"], [], {}),
    "hinge": (["iris_binary", "spirals_binary"], [], {}),
    "mse": (["regression", "linear"], [], {}),
    "sum_squared": (["regression", "linear"], [], {}),
    "l1": (["regression", "linear"], [], {}),
    "huber": (["regression", "linear"], [], {"delta": 0.5}),
}


def test_every_built_in_loss_is_in_the_matrix():
    built_in = {
        name for name in registry().names("loss") if registry().get("loss", name, "test").provider.distribution == "runner"
    }
    assert built_in == set(LOSSES)


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_every_built_in_loss_passes_the_runs_check(loss_name):
    datasets, tail, options = LOSSES[loss_name]
    failures = []
    for data, dtype, init in itertools.product(datasets, ["float32", "float64"], INITS):
        layers = [
            {"type": "linear", "out": 16, "init": init},
            {"type": "tanh"},
            {"type": "linear", "out": "auto", "init": init},
            *tail,
        ]
        rows = run_check(layers, data, loss_name, dtype, loss_options=options)
        failures += [(data, dtype, init, r.metric, f"{r.check.rel_error:.1e}") for r in rows if r.check.rel_error > THRESHOLD]
    assert failures == []
