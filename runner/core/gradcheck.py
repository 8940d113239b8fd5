"""Backpropagation checked against central differences, in float64.

    numerical df/dθ_i = (f(θ + h e_i) - f(θ - h e_i)) / 2h   (with Richardson's correction: ``difference``)
    rel_error         = ||numerical - analytic|| / max(||numerical|| + ||analytic||, floor)

Three levels, all on a float64 copy of the model at the run's own training samples (``check_run``):

- **each layer alone** (``check_layers``): at the input the layer really receives, f = <forward(x), g>
  for a random upstream gradient g, whose derivatives are exactly what ``backward(g)`` returns:
  d(input) (the array ``x``) and every parameter. A wrong d(input) is blamed on its own layer,
  the first layer's included;
- **the loss alone** (``check_loss_at``), at the model's predictions;
- **the whole model** (``check_model``): f = the loss, per parameter, as training sees it.

Each array gets its own step ``h = eps * max(1, rms(array))`` (a value of 1e5 moved by 1e-5 would
lose most of the step to rounding), taken exactly as the floats represent it. Large arrays are
checked on a random subset of entries, plus once along a random direction over all of them.

Rounding, not a bug, is all a correct backward can disagree by: f evaluated in float64 is off by
about ``ROUNDOFF * u * F`` (u = 2^-53, F the magnitude of what f adds up, including each input's
magnitude times its gradient), so each numerical entry is off by up to ``noise = ROUNDOFF u F / h``.
``floor = sqrt(n) noise / sqrt(u)``: an array whose gradients are that small (small init, saturated
units, classes that cancel) is measured against the floor, and rounding then reads as ~1e-8, not as
a failure (docs/numerics.md, "The run's gradient check").

Kinks only where there are kinks: an entry is skipped only when its perturbation changes the piece
a piecewise layer or loss is on (``Layer.branches``, ``Loss.branches``, from ``Layer.kinks``); the
skip looks at the forward pass alone, never at backward, so it cannot hide a wrong gradient.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np

from runner.api import Layer, Loss, input_count

#: unit round-off of float64
U = np.finfo(np.float64).eps / 2
#: how many unit round-offs of its magnitude a float64 evaluation of f may be off (measured: up to
#: ~4 over the built-in layers and losses; docs/numerics.md)
ROUNDOFF = 32.0


class Eval(NamedTuple):
    """One evaluation of the checked function: its value, the magnitude of what it adds up (for
    its rounding), and the branches of the piecewise parts it went through."""

    value: float
    magnitude: float
    branches: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Check:
    """How one array's backprop gradient compares with the numerical one."""

    max_abs_diff: float
    rel_error: float
    entries: int  # entries compared (skipped ones not counted)
    kinks: int = 0  # entries skipped because their perturbation crossed a kink
    step: float = 0.0  # the central-difference step h
    floor: float = 0.0  # gradient norms below this are measured against it (rounding, not signal)
    direction: bool = False  # whether all entries were also compared at once, along a random direction


def step_for(array: np.ndarray, eps: float) -> float:
    """h = eps max(1, rms(array)): relative for large values, eps for the rest."""
    rms = math.sqrt(float(np.mean(np.square(array)))) if array.size else 0.0
    return eps * max(1.0, rms)


def floor_for(noise: float, entries: int) -> float:
    """The gradient norm that ``entries`` entries of numerical ``noise`` each amount to, over sqrt(u)."""
    return math.sqrt(max(entries, 1)) * noise / math.sqrt(U)


def compare(numerical: np.ndarray, analytic: np.ndarray, kinks: int = 0, noise: float = 0.0, step: float = 0.0) -> Check:
    """The two gradients' distance, relative to their size or to the rounding floor, whichever is larger."""
    numerical, analytic = np.asarray(numerical, np.float64), np.asarray(analytic, np.float64)
    diff = numerical - analytic
    floor = floor_for(noise, numerical.size) if noise else 0.0
    scale = max(float(np.linalg.norm(numerical) + np.linalg.norm(analytic)), floor)
    rel = float(np.linalg.norm(diff) / scale) if scale > 0 else 0.0
    return Check(float(np.abs(diff).max(initial=0.0)), rel, int(numerical.size), kinks, step, floor)


def same_branches(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def as_eval(result) -> Eval:
    """A bare float from ``f`` is a smooth function whose magnitude is its value."""
    if isinstance(result, Eval):
        return result
    value = float(result)
    return Eval(value, abs(value))


def difference(f: Callable[[], Eval | float], flat: np.ndarray, where, delta, at: Eval):
    """How f changes when ``flat[where]`` moves by ``delta``, both ways, with Richardson's extrapolation:

        D(s) = f(θ + s) - f(θ - s)  =  2 <∇f, s> + c(s) + (terms in s^5),  c(2s) = 8 c(s)
        rise = (8 D(δ) - D(2δ)) / 6  =  2 <∇f, δ> + (terms in δ^5)

    so the step's own error (curvature, as in a layer norm of tiny inputs) all but vanishes.
    Returns (rise, run), run the matching combination of the steps the floats really took, or None
    when one of the four points puts a piecewise part on another branch than at θ (a kink in reach).
    """
    old = np.array(flat[where])
    rises, runs = [], []
    for k in (1.0, 2.0):
        flat[where] = old + k * delta
        plus, up = as_eval(f()), flat[where] - old
        flat[where] = old - k * delta
        minus, down = as_eval(f()), flat[where] - old
        flat[where] = old
        if not (same_branches(plus.branches, at.branches) and same_branches(minus.branches, at.branches)):
            return None
        rises.append(plus.value - minus.value)
        runs.append(up - down)
    return (8 * rises[0] - rises[1]) / 6, (8 * runs[0] - runs[1]) / 6


def check_array(
    f: Callable[[], Eval | float],
    array: np.ndarray,
    analytic: np.ndarray,
    eps: float,
    max_entries: int | None,
    rng: np.random.Generator,
    magnitude: float = 0.0,
) -> Check:
    """Perturb ``array`` in place (restoring it) and compare df/d(array) with ``analytic``.

    Entries one by one (a random subset of ``max_entries`` when larger), then, for a larger array,
    all entries at once along a random direction d: the change of f over ±h d against <analytic, d>.
    ``magnitude``: what rounding of f scales with, beyond what ``f`` reports (inputs times gradients).
    """
    flat, flat_grad = array.reshape(-1), np.asarray(analytic, np.float64).reshape(-1)
    if flat.size and not np.shares_memory(flat, array):
        raise ValueError("check_array needs an array it can perturb in place (a contiguous one)")
    h = step_for(array, eps)
    index = (
        np.arange(flat.size)
        if max_entries is None or flat.size <= max_entries
        else rng.choice(flat.size, size=max_entries, replace=False)
    )
    at = as_eval(f())
    noise = ROUNDOFF * U * (at.magnitude + magnitude) / h
    numerical, smooth = np.zeros(len(index)), np.ones(len(index), dtype=bool)
    for j, i in enumerate(index):
        found = difference(f, flat, i, h, at)
        if found is None:
            smooth[j] = False
        else:
            numerical[j] = found[0] / found[1]
    kinks = int(np.sum(~smooth))
    entrywise = compare(numerical[smooth], flat_grad[index][smooth], kinks, noise, h)
    if len(index) < 2:
        return entrywise
    # all entries at once: an error in entries the subset left out shows here
    found = difference(f, flat, slice(None), h * rng.standard_normal(flat.size), at)
    if found is None:
        return entrywise  # the direction crosses a kink somewhere: the entries alone tell
    rise, run = found
    whole = compare(np.array([rise / (2 * h)]), np.array([float(np.dot(flat_grad, run)) / (2 * h)]), 0, noise, h)
    return Check(
        max(entrywise.max_abs_diff, whole.max_abs_diff),
        max(entrywise.rel_error, whole.rel_error),
        entrywise.entries,
        kinks,
        h,
        entrywise.floor,
        direction=True,
    )


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


@dataclass(frozen=True)
class Row:
    """One array's check in a run: layer ``layer`` (its ``type``), array ``array`` ("x" for d(input),
    else the parameter key), at ``level`` "layer" (the layer alone) or "model" (the loss, end to end)."""

    layer: int | str | None  # a chain's layer index, a graph's node name; None: the loss
    type: str
    array: str
    level: str
    check: Check

    @property
    def name(self) -> str:
        return f"loss.{self.type}.{self.array}" if self.layer is None else f"{self.layer}.{self.type}.{self.array}"

    @property
    def metric(self) -> str:
        """``gradcheck/1.softsign.x`` for a layer alone, ``gradcheck/model/0.linear.W`` end to end."""
        return f"gradcheck/model/{self.name}" if self.level == "model" else f"gradcheck/{self.name}"


def check_run(
    model,
    loss: Loss,
    x: np.ndarray,
    target: np.ndarray,
    eps: float = 1e-5,
    max_entries: int | None = 64,
    seed: int = 0,
    loss_name: str = "loss",
) -> list[Row]:
    """What a run checks before it trains: each layer alone, the loss alone (its row's ``layer`` is
    None), then every parameter through the loss.

    Layers whose d(input) nobody uses are checked all the same: a wrong one would go unnoticed
    until the layer is used elsewhere.
    """
    rows = []
    labels: list[int | str] = list(model.names) if is_graph(model) else list(range(len(model.layers)))
    for label, layer_type, checks in zip(labels, model.types, check_layers(model, x, eps, max_entries, seed)):
        rows += [Row(label, layer_type, key, "layer", c) for key, c in checks.items()]
    rows.append(Row(None, loss_name, "pred", "layer", check_loss_at(model, loss, x, target, eps, max_entries, seed)))
    for name, c in check_model(model, loss, x, target, eps, max_entries, seed).items():
        index, layer_type, key = name.split(".", 2)
        rows.append(Row(int(index) if index.isdigit() else index, layer_type, key, "model", c))
    return rows


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


# --------------------------------------------------------------------------- what a run records and says


def metrics_of(rows: list[Row]) -> dict[str, float]:
    """``gradcheck/<layer>.<type>.<array>/rel_error`` and ``/max_abs_diff`` per row, and the summary:
    ``gradcheck/max_rel_error`` (all rows), ``gradcheck/model/max_rel_error``, ``gradcheck/kinks_skipped``."""
    metrics = {}
    for row in rows:
        metrics[f"{row.metric}/rel_error"] = row.check.rel_error
        metrics[f"{row.metric}/max_abs_diff"] = row.check.max_abs_diff
    metrics["gradcheck/max_rel_error"] = max((r.check.rel_error for r in rows), default=0.0)
    metrics["gradcheck/model/max_rel_error"] = max((r.check.rel_error for r in rows if r.level == "model"), default=0.0)
    metrics["gradcheck/kinks_skipped"] = sum(r.check.kinks for r in rows)
    return metrics


def describe(row: Row, origins: dict) -> str:
    """``layer 1 (softsign, from runner-softsign 0.1.0 (runner_softsign)) d(input) x``, and the like
    (a graph's ``node h1 (linear, ...)``, its merge inputs ``d(input 0) x0``)."""
    origin = f", from {origins[row.layer]}" if origins.get(row.layer) else ""
    if row.layer is None:
        return f"loss {row.type}{origin} d(loss)/d(pred)"
    merged = row.array[1:].isdigit() and row.array.startswith("x")
    what = "d(input) x" if row.array == "x" else f"d(input {row.array[1:]}) {row.array}" if merged else f"parameter {row.array}"
    where = "end to end, through the loss: " if row.level == "model" else ""
    kind = "node" if isinstance(row.layer, str) else "layer"
    return f"{where}{kind} {row.layer} ({row.type}{origin}) {what}"


def failure_message(rows: list[Row], threshold: float, origins: dict) -> str | None:
    """None when every row passes; else one line that names the culprit first.

    A layer or loss that fails alone is the culprit (its own backward is wrong); end-to-end failures
    then follow from it. When only end-to-end rows fail, each part passed alone: the parts compose
    wrongly (a layer reading parameters it does not own, state kept between calls).
    """
    failed = [r for r in rows if r.check.rel_error > threshold]
    if not failed:
        return None
    alone = [r for r in failed if r.level == "layer"]
    first = (alone or failed)[0]
    line = (
        f"gradient check failed: {describe(first, origins)}: relative error {first.check.rel_error:.2e} "
        f"> gradcheck.threshold {threshold:.0e} (metric {first.metric}/rel_error)"
    )
    others = [r for r in failed if r is not first]
    if others:
        shown = ", ".join(f"{r.metric.removeprefix('gradcheck/')} {r.check.rel_error:.1e}" for r in others[:4])
        line += f"; also {shown}" + (f" and {len(others) - 4} more" if len(others) > 4 else "")
    if not alone:
        line += "; every layer and the loss pass alone, so look at how they work together (state shared between calls)"
    return line
