"""Plugin discovery through the installed entry points, and model assembly from layer configs."""

import inspect

import numpy as np
import pytest

from runner.api import Meta, PluginSpec, RunnerError, hookimpl, option
from runner.core.model import build_model, mlp_layers
from runner.plugins.discovery import load_registry
from runner.testing import plugin_registry

IRIS = Meta("iris", (4,), 3, "classification")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_builtins_come_from_the_projects_own_entry_points(registry):
    assert {"linear", "relu", "sigmoid", "tanh"} <= set(registry.names("layer"))
    assert {"mse", "sum_squared", "softmax_cross_entropy", "l1"} <= set(registry.names("loss"))
    assert "sgd" in registry.names("optimizer")
    assert {"mnist", "fashion_mnist", "iris", "iris_binary", "linear", "regression"} <= set(registry.names("dataset"))
    relu = registry.get("layer", "relu", "model")
    assert (relu.provider.distribution, relu.provider.module) == ("runner", "runner.builtins.layers")


def test_unknown_name_lists_the_available_ones(registry):
    with pytest.raises(RunnerError) as e:
        registry.get("layer", "rleu", "model.activation")
    message = str(e.value)
    assert "model.activation: unknown layer 'rleu'" in message
    assert "did you mean 'relu'" in message
    assert (
        "available: add, avgpool2d, batchnorm, batchnorm2d, bias, concat, conv2d, dropout, elu, flatten" in message
        and "relu, scale, sigmoid" in message
    )


def test_a_name_provided_twice_names_both_providers():
    class Shadow:
        __name__ = "shadow_plugin"

        @hookimpl
        def runner_layers(self):
            return [PluginSpec("relu", object, "a second relu")]

    with pytest.raises(RunnerError) as e:
        plugin_registry(Shadow())
    assert "layer 'relu' is provided twice" in str(e.value)
    assert "runner 0.1.0 (runner.builtins.layers)" in str(e.value)
    assert "shadow_plugin" in str(e.value)


def test_mlp_shapes_and_stable_parameter_names(registry):
    model = build_model(mlp_layers([5, 6], "relu", None, {}), registry, IRIS, np.random.default_rng(0), np.float32)
    assert model.summary() == "4-5-6-3"
    assert list(model.params) == ["0.linear.W", "0.linear.b", "2.linear.W", "2.linear.b", "4.linear.W", "4.linear.b"]
    assert model.params["2.linear.W"].shape == (5, 6)
    assert model.params["0.linear.W"].dtype == np.float32
    assert model.parameter_count() == 4 * 5 + 5 + 5 * 6 + 6 + 6 * 3 + 3
    assert model.forward(np.zeros((2, 4), np.float32), training=False).shape == (2, 3)


def test_single_linear_unit(registry):
    model = build_model(
        mlp_layers([], "relu", None, {}), registry, Meta("linear", (1,), 1, "regression"), np.random.default_rng(0), np.float64
    )
    assert model.summary() == "1-1" and model.types == ["linear"]


def test_declared_input_width_that_does_not_fit_names_the_layer(registry):
    layers = [{"type": "linear", "out": 50}, {"type": "relu"}, {"type": "linear", "in": 784, "out": 3}]
    with pytest.raises(RunnerError, match=r"model.layers\[2\] \(linear\): expected input of 784 features, got 50"):
        build_model(layers, registry, IRIS, np.random.default_rng(0), np.float32)


def test_output_width_that_does_not_fit_the_data(registry):
    layers = [{"type": "linear", "out": 5}]
    with pytest.raises(
        RunnerError,
        match=r"model.layers\[0\] \(linear\): the model gives 5 outputs, but dataset 'iris' \(classification\) needs 3",
    ):
        build_model(layers, registry, IRIS, np.random.default_rng(0), np.float32)


def test_unknown_option_lists_accepted_ones(registry):
    with pytest.raises(RunnerError) as e:
        build_model([{"type": "linear", "outt": 3}], registry, IRIS, np.random.default_rng(0), np.float32)
    assert "model.layers[0] (linear): unknown option 'outt' for layer 'linear'" in str(e.value)
    assert "accepted options: out, init, std, bias" in str(e.value)


@pytest.mark.parametrize("hidden", [[0], [-3], [2.5]])
def test_bad_hidden_width(hidden):
    with pytest.raises(RunnerError, match=r"model.hidden\[0\]: expected a positive integer width"):
        mlp_layers(hidden, "relu", None, {})


def test_astype_makes_an_independent_float64_copy(registry):
    model = build_model(mlp_layers([3], "tanh", None, {}), registry, IRIS, np.random.default_rng(0), np.float32)
    twin = model.astype(np.float64)
    assert twin.params["0.linear.W"].dtype == np.float64
    twin.params["0.linear.W"][...] = 0
    assert np.any(model.params["0.linear.W"] != 0)


IN_PLACE_MODELS = {
    "mlp": mlp_layers([6, 5], "relu", "sigmoid", {}, dropout=0.3),
    # relu first (on the caller's input) and last (on the caller's gradient)
    "ends": [
        {"type": "relu"},
        {"type": "dropout", "p": 0.3},
        {"type": "linear", "out": "auto"},
        {"type": "dropout", "p": 0.5},
        {"type": "relu"},
    ],
}


@pytest.mark.parametrize("name", IN_PLACE_MODELS)
def test_in_place_layers_give_the_same_numbers_and_spare_arrays_others_hold(registry, name):
    """relu and dropout overwrite only arrays nobody else holds: the caller's input and gradient
    stay as they were, and the results are those of the same layers working on copies."""
    meta = Meta("binary", (4,), 1, "binary")
    model, copies = (build_model(IN_PLACE_MODELS[name], registry, meta, np.random.default_rng(0), np.float64) for _ in range(2))
    copies._grant_in_place = lambda: None  # its layers keep overwrite_input = overwrite_dout = False
    rng = np.random.default_rng(1)
    for _ in range(2):
        x, dout = rng.standard_normal((8, 4)), rng.standard_normal((8, 1))
        x_saved, dout_saved = x.copy(), dout.copy()
        np.testing.assert_array_equal(model.forward(x, training=True), copies.forward(x, training=True))
        np.testing.assert_array_equal(model.backward(dout), copies.backward(dout))
        for key, g in model.grads.items():
            np.testing.assert_array_equal(g, copies.grads[key])
        np.testing.assert_array_equal(x, x_saved)
        np.testing.assert_array_equal(dout, dout_saved)
    granted = [
        (type(layer).__name__, layer.overwrite_input, layer.overwrite_dout)
        for layer in model.layers
        if hasattr(layer, "overwrite_input")
    ]
    if name == "mlp":
        assert granted == [("InPlaceReLU", True, True), ("InPlaceDropout", True, True)] * 2
    else:
        assert granted == [
            ("InPlaceReLU", False, True),
            ("InPlaceDropout", True, True),
            ("InPlaceDropout", True, True),
            ("InPlaceReLU", True, False),
        ]
    assert not any(layer.overwrite_input or layer.overwrite_dout for layer in copies.layers if hasattr(layer, "overwrite_input"))


def test_a_replaced_layer_is_seen_and_an_array_it_keeps_is_not_overwritten(registry):
    model = build_model(mlp_layers([6], "relu", None, {}), registry, IRIS, np.random.default_rng(0), np.float64)
    x = np.random.default_rng(1).standard_normal((8, 4))
    model.forward(x, training=True)
    assert model.layers[1].overwrite_input  # after a linear layer

    class Holds:  # gives out an array it keeps
        params, grads = {}, {}

        def __init__(self):
            self.y = np.random.default_rng(2).standard_normal((8, 6))

        def forward(self, x, training):
            return self.y

    held = model.layers[0] = Holds()
    y_saved = held.y.copy()
    model.forward(x, training=True)
    np.testing.assert_array_equal(held.y, y_saved)
    assert not model.layers[1].overwrite_input


def test_the_summary_gives_the_widths_of_the_layers_that_map_to_new_features(registry):
    from runner.api import Layer

    class Scaled(Layer):  # an activation with a parameter, as prelu: it keeps the width
        def build(self, input_shape, rng, dtype):
            self.params, self.grads = {"alpha": np.ones((1,), dtype)}, {"alpha": np.zeros((1,), dtype)}
            return input_shape

    class Provider:
        __name__ = "scaled_plugin"

        @hookimpl
        def runner_layers(self):
            return [PluginSpec("scaled", Scaled)]

    with_objects = plugin_registry(Provider())
    for layers, reg in [
        (mlp_layers([32, 32], "relu", None, {}), registry),
        (mlp_layers([32, 32], "relu", None, {}, norm="batchnorm"), registry),
        (mlp_layers([32, 32], "tanh", None, {}, dropout=0.5, norm="layernorm"), registry),
        (mlp_layers([32, 32], "scaled", None, {}), with_objects),
    ]:
        model = build_model(layers, reg, IRIS, np.random.default_rng(0), np.float32)
        assert model.summary() == "4-32-32-3", layers


def test_the_run_names_and_logs_the_model_by_its_widths(runner_cli):
    result = runner_cli(
        "+experiment=iris", "model.hidden=[32,32]", "model.norm=batchnorm", "trainer.epochs=1", "report.enabled=false"
    )
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert "model 4-32-32-3 (" in result.proc.stdout + result.proc.stderr
    assert result.only_run("iris").info.run_name == "iris-4-32-32-3-sgd"


# --------------------------------------------------------------------------- runner.api.option, the options checker


@pytest.mark.parametrize(
    "args, kwargs, result",
    [
        (("lr", 0.5), {}, 0.5),
        (("lr", 2), {}, 2.0),  # an int is a number, returned as a float
        (("lr", np.float32(0.25)), {}, 0.25),
        (("n", 3, int), {}, 3),
        (("n", np.int64(3), int), {}, 3),
        (("flag", False, bool), {}, False),
        (("path", "data", str), {}, "data"),
        (("init", "he_normal"), {"choices": ("normal", "he_normal")}, "he_normal"),
        (("seed", None, int), {"or_none": True}, None),
    ],
)
def test_option_returns_the_value_as_its_kind(args, kwargs, result):
    value = option(*args, **kwargs)
    assert value == result and type(value) is type(result)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("lr", "abc", float, lambda v: v > 0, "a positive number"), {}, "lr: expected a positive number, got 'abc'"),
        (("lr", 0, float, lambda v: v > 0, "a positive number"), {}, "lr: expected a positive number, got 0"),
        (("lr", True), {}, "lr: expected a number, got True"),  # a bool is not a number
        (("lr", np.True_), {}, "lr: expected a number, got np.True_"),
        (("lr", float("nan")), {}, "lr: expected a number, got nan"),
        (("lr", float("inf")), {}, "lr: expected a number, got inf"),
        (("lr", None), {}, "lr: expected a number, got None"),
        (("n", 2.0, int), {}, "n: expected a whole number, got 2.0"),
        (("n", True, int), {}, "n: expected a whole number, got True"),
        (("n", 1, int, lambda v: v >= 2, "a whole number >= 2"), {}, "n: expected a whole number >= 2, got 1"),
        (("flag", "yes", bool), {}, "flag: expected true or false, got 'yes'"),
        (("flag", 1, bool), {}, "flag: expected true or false, got 1"),
        (("path", 3, str), {}, "path: expected a string, got 3"),
        (("init", "x"), {"choices": ("normal", "he_normal")}, "init: expected one of normal, he_normal, got 'x'"),
        (("init", ["normal"]), {"choices": ("normal",)}, "init: expected one of normal, got ['normal']"),
        (("seed", None, int), {}, "seed: expected a whole number, got None"),
    ],
)
def test_option_errors_are_one_line_naming_the_option_the_value_and_what_was_expected(args, kwargs, message):
    with pytest.raises(RunnerError) as e:
        option(*args, **kwargs)
    assert str(e.value) == message


def builtin_specs():
    from runner.builtins.datasets import runner_datasets
    from runner.builtins.layers import runner_layers
    from runner.builtins.losses import runner_losses
    from runner.builtins.optimizers import runner_optimizers

    for hook in (runner_layers, runner_losses, runner_optimizers, runner_datasets):
        for spec in hook():
            yield pytest.param(spec, id=f"{hook.__name__.removeprefix('runner_')}-{spec.name}")


@pytest.mark.parametrize("spec", list(builtin_specs()))
def test_every_builtin_refuses_a_bool_where_it_takes_a_number(spec):
    """Each numeric option (an int or float default) of a built-in, given true: a RunnerError naming it."""
    parameters = inspect.signature(spec.factory).parameters
    required = {name: 3 for name, p in parameters.items() if p.default is inspect.Parameter.empty}  # linear's out
    for name, parameter in parameters.items():
        default = parameter.default
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            continue
        with pytest.raises(RunnerError, match=f"^{name}: expected .*, got True$"):
            spec.factory(**{**required, name: True})
