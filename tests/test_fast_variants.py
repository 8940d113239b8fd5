"""The fast variants the built-ins register (runner.builtins.layers.FAST, runner.builtins.optimizers.FAST)
give the numbers of their reference classes bit for bit: forward, backward and the gradients of each
layer, in place or not; the parameters and state after several optimizer steps, over float32 and
float64, small and large parameters (above the optimizers' CHUNK, and not contiguous); a model trained
with them and one trained with the references.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from runner.api import Meta
from runner.builtins import layers, optimizers, optimizers_fast
from runner.builtins.layers import runner_layers
from runner.builtins.optimizers import runner_optimizers
from runner.testing import build_model, plugin_registry

DTYPES = [np.float32, np.float64]
LAYER_PAIRS = list(layers.FAST.items())
OPTIMIZER_PAIRS = list(optimizers.FAST.items())

# reference class -> (options, input shapes of one sample); several shapes per layer
LAYER_CASES = {
    layers.Linear: ({"out": 7, "init": "he_normal", "bias": 0.1}, [(5,), (300,)]),
    layers.ReLU: ({}, [(7,), (3, 40), (70000,)]),
    layers.Dropout: ({"p": 0.3}, [(7,), (3, 40), (70000,)]),
    layers.Conv2D: ({"out": 4, "kernel": 3, "padding": 1}, [(1, 8, 8), (3, 7, 5)]),
    layers.MaxPool2D: ({}, [(2, 8, 8), (3, 7, 5)]),
}
#: more options of the layers whose fast variant walks kernel offsets (strides, paddings, overlaps)
MORE_CASES = [
    (layers.Conv2D, {"out": 3, "kernel": [2, 3], "stride": [2, 1], "padding": [1, 0], "bias": False}, (2, 7, 6)),
    (layers.Conv2D, {"out": 2, "kernel": 5, "stride": 3, "padding": 2}, (3, 9, 9)),
    (layers.Conv2D, {"out": 5, "kernel": 1}, (4, 3, 3)),
    (layers.MaxPool2D, {"kernel": 3, "stride": 2, "padding": 1}, (2, 7, 7)),
    (layers.MaxPool2D, {"kernel": [2, 3], "stride": 1}, (1, 5, 6)),
    (layers.MaxPool2D, {"kernel": 4}, (2, 4, 4)),
]


def same(a, b) -> bool:
    """Equal bit for bit: values, dtype and shape (None is None)."""
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def test_every_fast_variant_is_what_its_name_registers_and_a_subclass_of_its_reference():
    registered = {spec.name: spec.factory for spec in (*runner_layers(), *runner_optimizers())}
    names = {cls: name for name, cls, _ in (*layers.LAYERS, *optimizers.OPTIMIZERS)}
    for reference, fast in (*LAYER_PAIRS, *OPTIMIZER_PAIRS):
        assert issubclass(fast, reference), fast
        assert registered[names[reference]] is fast
    assert set(LAYER_CASES) == set(layers.FAST), "every fast layer has a case here"


def pair(reference, fast, options, input_shape, dtype):
    """The reference layer and its fast variant, built from the same seed."""
    ours, theirs = reference(**options), fast(**options)
    for layer in (ours, theirs):
        layer.build(input_shape, np.random.default_rng(3), np.dtype(dtype))
    return ours, theirs


@pytest.mark.parametrize("in_place", [False, True], ids=["copies", "in_place"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("reference, fast", LAYER_PAIRS, ids=[f.__name__ for _, f in LAYER_PAIRS])
def test_fast_layers_equal_their_reference_bit_for_bit(reference, fast, dtype, training, in_place):
    options, shapes = LAYER_CASES[reference]
    rng = np.random.default_rng(0)
    for shape in shapes:
        ours, theirs = pair(reference, fast, options, shape, dtype)
        if in_place:  # as Sequential grants it between unshared neighbours
            for flag in ("overwrite_input", "overwrite_dout"):
                if hasattr(type(theirs), flag):
                    setattr(theirs, flag, True)
        for batch in (4, 1, 4):  # several calls: dropout's generator moves on, buffers are reused
            x = rng.standard_normal((batch, *shape)).astype(dtype)
            x[0, 0] = 0.0  # relu's kink
            y = ours.forward(x.copy(), training)
            y_fast = theirs.forward(x.copy(), training)
            assert same(y, y_fast), f"{fast.__name__}.forward, batch {batch}, {shape}"
            dout = rng.standard_normal(y.shape).astype(dtype)
            dx = ours.backward(dout.copy())
            dx_fast = theirs.backward(dout.copy())
            assert same(dx, dx_fast), f"{fast.__name__}.backward, batch {batch}, {shape}"
            for key in ours.grads:
                assert same(ours.grads[key], theirs.grads[key]), f"{fast.__name__}: grads[{key!r}]"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("reference, options, shape", MORE_CASES, ids=[f"{r.__name__}-{o}" for r, o, _ in MORE_CASES])
def test_fast_conv_and_pool_equal_their_reference_over_strides_and_paddings(reference, options, shape, dtype):
    fast = layers.FAST[reference]
    rng = np.random.default_rng(5)
    ours, theirs = pair(reference, fast, options, shape, dtype)
    for batch in (3, 1):
        x = rng.standard_normal((batch, *shape)).astype(dtype)
        x[:, :, :2, :2] = np.maximum(x[:, :, :2, :2], 0.0)  # ties at 0, as after a ReLU: the first one wins
        y, y_fast = ours.forward(x.copy(), True), theirs.forward(x.copy(), True)
        assert same(y, y_fast), f"{fast.__name__}.forward, batch {batch}"
        dout = rng.standard_normal(y.shape).astype(dtype)
        assert same(ours.backward(dout.copy()), theirs.backward(dout.copy())), f"{fast.__name__}.backward, batch {batch}"
        for key in ours.grads:
            assert same(ours.grads[key], theirs.grads[key]), f"{fast.__name__}: grads[{key!r}]"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_fast_linear_skips_d_input_as_its_reference_does(dtype):
    ours, theirs = pair(layers.Linear, layers.FAST[layers.Linear], {"out": 3}, (4,), dtype)
    ours.needs_input_grad = theirs.needs_input_grad = False
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(dtype)
    dout = np.random.default_rng(2).standard_normal((5, 3)).astype(dtype)
    ours.forward(x, True)
    theirs.forward(x, True)
    assert ours.backward(dout) is None and theirs.backward(dout) is None
    for key in ours.grads:
        assert same(ours.grads[key], theirs.grads[key])


# name -> (shape, layout) of the parameters stepped: small, above CHUNK (65 536) and not a multiple of
# it, and non-contiguous (updated as a whole)
PARAM_SHAPES = {"0.linear.W": (300, 300), "0.linear.b": (300,), "1.linear.W": (65_536 + 5,), "2.prelu.alpha": (1,)}
FORTRAN = "3.linear.W"


def problem(dtype, steps, seed=0):
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape).astype(dtype) for name, shape in PARAM_SHAPES.items()}
    params[FORTRAN] = np.asfortranarray(rng.standard_normal((40, 30)).astype(dtype))
    grads = [{name: rng.standard_normal(p.shape).astype(dtype) for name, p in params.items()} for _ in range(steps)]
    return params, grads


def optimizer_cases():
    for reference, fast in OPTIMIZER_PAIRS:
        for weight_decay in (None, 0.0, 0.1):  # None: the class's default (0.01 for AdamW)
            yield pytest.param(reference, fast, weight_decay, id=f"{fast.__name__}-wd{weight_decay}")


@pytest.mark.parametrize("chunk", [optimizers_fast.CHUNK, 1000], ids=["CHUNK", "chunk1000"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("reference, fast, weight_decay", list(optimizer_cases()))
def test_fast_optimizers_equal_their_reference_bit_for_bit(reference, fast, weight_decay, dtype, chunk, monkeypatch):
    """Parameters and state after several steps (the learning rate changed between some, as schedules
    do), and after a state_dict round trip into a fresh optimizer (new plans over new buffers)."""
    monkeypatch.setattr(optimizers_fast, "CHUNK", chunk)
    options = {} if weight_decay is None else {"weight_decay": weight_decay}
    ours, theirs = reference(**options), fast(**options)
    params, grads = problem(dtype, steps=6)
    params_fast = copy.deepcopy(params)
    grads_saved = copy.deepcopy(grads)
    for i, g in enumerate(grads):
        if i == 2:
            ours.lr = theirs.lr = ours.lr * 0.5
        if i == 4:  # resume each from its state, in a fresh instance
            ours, state = reference(**options), ours.state_dict()
            ours.load_state_dict(state)
            theirs, state = fast(**options), theirs.state_dict()
            theirs.load_state_dict(state)
        ours.step(params, g)
        theirs.step(params_fast, g)
        for name in params:
            assert same(params[name], params_fast[name]), f"{fast.__name__}: {name} after step {i + 1}"
        assert params_fast[FORTRAN].flags.f_contiguous  # updated in place, layout kept
    for name, g in grads[0].items():
        assert same(g, grads_saved[0][name]), "the gradients are left alone"
    state, state_fast = ours.state_dict(), theirs.state_dict()
    assert state.keys() == state_fast.keys()
    for key, value in state.items():
        if isinstance(value, dict):
            assert value.keys() == state_fast[key].keys()
            assert all(same(value[name], state_fast[key][name]) for name in value), f"{fast.__name__}: state[{key!r}]"
        else:
            assert value == state_fast[key]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_a_model_trained_with_the_fast_variants_equals_one_trained_with_the_references(dtype):
    """An MLP with dropout, built from the registry (fast variants), against a copy whose layers and
    optimizer are the reference classes: the same parameters after a few Adam steps."""
    meta = Meta("toy", (20,), 3, "classification")
    config = [
        {"type": "linear", "out": 32},
        {"type": "relu"},
        {"type": "dropout", "p": 0.25},
        {"type": "linear", "out": "auto"},
        {"type": "relu"},
    ]
    fast = build_model(config, plugin_registry(), meta, np.random.default_rng(0), np.dtype(dtype))
    reference = copy.deepcopy(fast)
    slow = {fast_cls: reference_cls for reference_cls, fast_cls in layers.FAST.items()}
    for layer in reference.layers:
        layer.__class__ = slow.get(type(layer), type(layer))
    assert not any(type(layer) in slow for layer in reference.layers)
    fast_opt, reference_opt = optimizers.FAST[optimizers.Adam](lr=0.01), optimizers.Adam(lr=0.01)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((16, 20)).astype(dtype)
        dout = rng.standard_normal((16, 3)).astype(dtype)
        for model, opt in ((fast, fast_opt), (reference, reference_opt)):
            model.forward(x.copy(), training=True)
            model.backward(dout.copy())
            opt.step(model.params, model.grads)
        for name, p in reference.params.items():
            assert same(p, fast.params[name]), name
    x = rng.standard_normal((5, 20)).astype(dtype)
    assert same(fast.forward(x.copy(), training=False), reference.forward(x.copy(), training=False))
