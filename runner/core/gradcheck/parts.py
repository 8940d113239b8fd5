"""Each part of a model checked on its own, or through the loss: the checks built on ``check_array``.

- a layer at the input it really receives (``check_layer_at``; a merge layer's inputs each on their own,
  ``check_node_at``), every layer of a model at once (``check_layers``);
- the loss at the model's predictions (``check_loss_at``, ``check_loss``);
- every parameter end to end, f = the loss (``check_model``);
- a freshly built layer on random inputs (``check_layer``), what plugin tests use (runner.testing).

All on a float64 copy of the model (``float64_twin``), its randomness replayed so every evaluation
sees the same dropout masks (``replaying_randomness``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from runner.api import Layer, Loss, input_count
from runner.core.gradcheck.differences import Check, Eval, check_array


def replaying_randomness(layers) -> Callable[[], None]:
    """A function that rewinds every layer's ``rng`` (dropout masks...) to its state now.

    Layers keep their randomness in ``self.rng`` (a numpy Generator); rewinding it before each
    evaluation makes every forward pass of the check see the same masks.
    """
    saved = [
        (layer.rng, copy.deepcopy(layer.rng.bit_generator.state))
        for layer in layers
        if isinstance(getattr(layer, "rng", None), np.random.Generator)
    ]

    def rewind() -> None:
        for rng, state in saved:
            rng.bit_generator.state = copy.deepcopy(state)

    return rewind


def float64_twin(model):
    """A float64 copy of ``model`` whose layers work out of place and all return d(input)."""
    twin = model.astype(np.float64)
    for layer in twin.layers:
        layer.needs_input_grad = True
        for flag in ("overwrite_input", "overwrite_dout"):
            if hasattr(type(layer), flag):
                setattr(layer, flag, False)
    twin._granted = list(twin.layers)  # Sequential must not grant in-place work again
    return twin


def branches_of(part, *inputs) -> tuple[np.ndarray, ...]:
    found = part.branches(*inputs) if hasattr(part, "branches") else None
    return () if found is None else (np.asarray(found),)


def sensitivity(values: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> float:
    """sum |value * gradient| over arrays: how much f moves when each input is rounded (times 1/u)."""
    return float(sum(np.sum(np.abs(values[k] * grads[k])) for k in values if grads.get(k) is not None))


def check_layer_at(
    layer: Layer, x: np.ndarray, training: bool, eps: float, max_entries: int | None, rng: np.random.Generator
) -> dict[str, Check]:
    """One layer at the input ``x`` it receives: {"x": d(input) Check, param key: Check, ...}.

    f = <forward(x), g> for a random g: its gradient in x is backward(g), in each parameter that
    parameter's grad. Randomness in ``layer.rng`` is replayed; ``x`` is a float64 array of our own.
    """
    rewind = replaying_randomness([layer])
    rewind()
    y = layer.forward(x, training)
    g = rng.standard_normal(np.shape(y))

    def f() -> Eval:
        rewind()
        out = layer.forward(x, training)
        terms = out * g
        return Eval(float(np.sum(terms)), float(np.sum(np.abs(terms))), branches_of(layer, x))

    f()
    dx = layer.backward(g.copy())
    analytic = {key: grad.copy() for key, grad in layer.grads.items()}
    if dx is None:
        raise AssertionError(f"{type(layer).__name__}.backward returned None with needs_input_grad = True")
    analytic["x"] = np.asarray(dx, np.float64)
    if analytic["x"].shape != x.shape:
        raise AssertionError(
            f"{type(layer).__name__}.backward returned d(input) of shape {analytic['x'].shape}; its input is {x.shape}"
        )
    around = sensitivity({"x": x, **layer.params}, analytic)
    checks = {"x": check_array(f, x, analytic["x"], eps, max_entries, rng, around)}
    for key, p in layer.params.items():
        checks[key] = check_array(f, p, analytic[key], eps, max_entries, rng, around)
    return checks


def check_node_at(
    layer: Layer, xs: tuple[np.ndarray, ...], training: bool, eps: float, max_entries: int | None, rng: np.random.Generator
) -> dict[str, Check]:
    """``check_layer_at`` for a layer of one input (its d(input) is ``x``) or of several (a merge layer,
    ``runner.api.MergeLayer``): then d(input k) is the array ``x<k>`` (``x0``, ``x1``, ...), each input
    perturbed on its own, also when two are the same node's output. ``xs``: float64 arrays of our own."""
    if input_count(layer) == 1:
        return check_layer_at(layer, xs[0], training, eps, max_entries, rng)
    rewind = replaying_randomness([layer])
    rewind()
    y = cast(Any, layer).forward(*xs, training=training)
    g = rng.standard_normal(np.shape(y))

    def f() -> Eval:
        rewind()
        terms = cast(Any, layer).forward(*xs, training=training) * g
        return Eval(float(np.sum(terms)), float(np.sum(np.abs(terms))), branches_of(layer, *xs))

    f()
    found = layer.backward(g.copy())
    analytic = {key: grad.copy() for key, grad in layer.grads.items()}
    if not isinstance(found, (tuple, list)) or len(found) != len(xs):
        raise AssertionError(f"{type(layer).__name__}.backward must return a tuple of {len(xs)} gradients, one per input")
    for k, (x, dx) in enumerate(zip(xs, found)):
        analytic[f"x{k}"] = np.asarray(dx, np.float64)
        if analytic[f"x{k}"].shape != x.shape:
            raise AssertionError(
                f"{type(layer).__name__}.backward returned d(input {k}) of shape {analytic[f'x{k}'].shape}; "
                f"the input is {x.shape}"
            )
    values = {**{f"x{k}": x for k, x in enumerate(xs)}, **layer.params}
    around = sensitivity(values, analytic)
    checks = {f"x{k}": check_array(f, x, analytic[f"x{k}"], eps, max_entries, rng, around) for k, x in enumerate(xs)}
    for key, p in layer.params.items():
        checks[key] = check_array(f, p, analytic[key], eps, max_entries, rng, around)
    return checks


def is_graph(model) -> bool:
    """A ``runner.core.graph.Graph`` (nodes with named inputs), not a chain."""
    return hasattr(model, "node_inputs")


def node_labels(model) -> list[str]:
    """A model's nodes as parameter and metric keys name them: a graph's node names, a chain's indices."""
    names = getattr(model, "names", None)
    return list(names) if names is not None else [str(i) for i in range(len(model.layers))]


def layer_inputs(model, x: np.ndarray, training: bool) -> list[np.ndarray]:
    """The input each layer of ``model`` receives for ``x`` (copies), randomness as in one pass."""
    inputs = []
    for layer in model.layers:
        inputs.append(np.array(x, dtype=np.float64))
        x = layer.forward(x, training)
    return inputs


def check_layers(
    model, x: np.ndarray, eps: float = 1e-6, max_entries: int | None = 64, seed: int = 0, training: bool = True
) -> list[dict[str, Check]]:
    """Every layer of ``model`` (a float64 copy) alone, at the inputs it receives for the samples ``x``.

    Item i holds layer i's checks: ``x`` (d(input)) and each parameter key; a graph's merge node has
    ``x0``, ``x1``, ... for its inputs (``check_node_at``).
    """
    model = float64_twin(model)
    rewind = replaying_randomness(model.layers)
    rewind()
    if is_graph(model):
        inputs = model.node_inputs(x.astype(np.float64), training)
    else:
        inputs = [(a,) for a in layer_inputs(model, x.astype(np.float64), training)]
    rewind()  # each layer's masks: the ones it drew in that pass
    rng = np.random.default_rng(seed)
    checks = []
    for layer, xs in zip(model.layers, inputs):
        checks.append(check_node_at(layer, xs, training, eps, max_entries, rng))
        if input_count(layer) == 1:  # leave the next layer's randomness where that pass left it
            layer.forward(xs[0], training)
        else:
            cast(Any, layer).forward(*xs, training=training)
    return checks


def check_model(
    model,
    loss: Loss,
    x: np.ndarray,
    target: np.ndarray,
    eps: float = 1e-6,
    max_entries: int | None = 64,
    seed: int = 0,
    training: bool = True,
) -> dict[str, Check]:
    """Every parameter of ``model`` (a float64 copy) against the loss, on the samples ``x``: {param name: Check}.

    Runs the layers in training mode by default (batch statistics, dropout with replayed masks).
    A parameter of layer i moves nothing before it: its evaluations start from layer i's input.
    """
    model = float64_twin(model)
    x = x.astype(np.float64)
    if np.issubdtype(target.dtype, np.floating):
        target = target.astype(np.float64)
    rewind = replaying_randomness(model.layers)
    rewind()
    graph = is_graph(model)
    inputs = model.outputs(x, training) if graph else layer_inputs(model, x, training)

    def loss_from(i: int) -> Callable[[], Eval]:
        def f() -> Eval:
            rewind()
            found: list[np.ndarray] = []
            if graph:  # node i and what depends on it again, the other nodes' outputs as they were
                h = model.rerun(x, inputs, i, training, lambda layer, xs: found.extend(branches_of(layer, *xs)))
            else:
                h = inputs[i]
                for layer in model.layers[i:]:
                    found += branches_of(layer, h)
                    h = layer.forward(h, training)
            value = float(loss.forward(h, target))
            found += branches_of(loss, h, target)
            return Eval(value, abs(value) + float(np.mean(np.abs(h))), tuple(found))

        return f

    loss_from(0)()
    dx = model.backward(loss.backward())
    analytic = {name: g.copy() for name, g in model.grads.items()}
    around = sensitivity(model.params, analytic) + (float(np.sum(np.abs(x * dx))) if dx is not None else 0.0)
    rng = np.random.default_rng(seed)
    checks = {}
    for i, (label, layer, layer_type) in enumerate(zip(node_labels(model), model.layers, model.types)):
        for key, p in layer.params.items():
            name = f"{label}.{layer_type}.{key}"
            checks[name] = check_array(loss_from(i), p, analytic[name], eps, max_entries, rng, around)
    return checks


def check_layer(
    layer: Layer,
    input_shape: tuple[int, ...],
    batch: int = 4,
    eps: float = 1e-6,
    seed: int = 0,
    away_from: float = 1e-2,
    training: bool = True,
) -> dict[str, Check]:
    """A layer's backward against central differences: {"x": Check, param key: Check, ...}.

    The layer is built in float64 on inputs of ``input_shape`` (one sample); inputs keep at least
    ``away_from`` from 0, where ReLU-like functions have their kink; the upstream gradient is
    random (not ones). Randomness in ``layer.rng`` is replayed, so dropout is checked with a fixed
    mask. Every entry is checked.
    """
    rng = np.random.default_rng(seed)
    layer.build(tuple(input_shape), rng, np.dtype(np.float64))
    layer.needs_input_grad = True
    x = rng.standard_normal((batch, *input_shape))
    x += np.sign(x) * away_from
    return check_layer_at(layer, x, training, eps, None, rng)


def max_rel_error(checks: dict[str, Check]) -> float:
    return max((c.rel_error for c in checks.values()), default=0.0)


def check_loss_at(
    model, loss: Loss, x: np.ndarray, target: np.ndarray, eps: float = 1e-5, max_entries: int | None = 64, seed: int = 0
) -> Check:
    """The loss alone, at the predictions ``model`` (a float64 copy, in training mode) makes for ``x``."""
    twin = float64_twin(model)  # its masks are its own: ``model`` keeps its state
    pred = np.array(twin.forward(x.astype(np.float64), training=True), dtype=np.float64)
    return check_loss(loss, pred, target, eps, seed, max_entries)


def check_loss(
    loss: Loss, pred: np.ndarray, target: np.ndarray, eps: float = 1e-6, seed: int = 0, max_entries: int | None = None
) -> Check:
    """``loss.backward()`` against central differences of ``loss.forward`` in ``pred``, in float64
    (every entry, unless ``max_entries``); entries whose perturbation changes ``loss.branches`` are skipped."""
    pred = np.array(pred, dtype=np.float64)
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.floating):
        target = target.astype(np.float64)
    loss.forward(pred, target)
    analytic = np.array(loss.backward(), dtype=np.float64)
    if analytic.shape != pred.shape:
        raise AssertionError(f"backward() gave shape {analytic.shape}; expected the shape of pred, {pred.shape}")

    def f() -> Eval:
        value = float(loss.forward(pred, target))
        return Eval(value, abs(value) + float(np.mean(np.abs(pred))), branches_of(loss, pred, target))

    return check_array(f, pred, analytic, eps, max_entries, np.random.default_rng(seed), float(np.sum(np.abs(pred * analytic))))
