"""Backpropagation checked against central differences, in float64.

    numerical dL/dθ_i = (L(θ + ε e_i) - L(θ - ε e_i)) / 2ε
    rel_error        = ||numerical - analytic|| / (||numerical|| + ||analytic||)

Large arrays are checked on a random subset of their entries, so the cost stays bounded.
An entry whose one-sided slopes (f(θ+ε) - f(θ))/ε and (f(θ) - f(θ-ε))/ε disagree sits within ε
of a kink (ReLU at 0, |x| at 0), where no finite difference is the derivative: it is skipped
and counted. The skip looks at f alone, never at backward, so it cannot hide a wrong gradient.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

from runner.api import Layer, Loss


@dataclass(frozen=True)
class Check:
    """How one array's backprop gradient compares with the numerical one."""

    max_abs_diff: float
    rel_error: float
    entries: int
    kinks: int = 0  # entries skipped because they sit within eps of a kink


def compare(numerical: np.ndarray, analytic: np.ndarray, kinks: int = 0) -> Check:
    diff = np.abs(numerical - analytic)
    scale = np.linalg.norm(numerical) + np.linalg.norm(analytic)
    rel = float(np.linalg.norm(numerical - analytic) / scale) if scale > 0 else 0.0
    return Check(float(diff.max(initial=0.0)), rel, int(numerical.size), kinks)


def at_kink(f_plus: float, f_0: float, f_minus: float, eps: float) -> bool:
    """True when the slopes on either side differ by more than a smooth function's can."""
    right, left = (f_plus - f_0) / eps, (f_0 - f_minus) / eps
    return abs(right - left) > max(1e-2 * max(abs(right), abs(left)), 1e-7)


def check_array(
    f: Callable[[], float], array: np.ndarray, analytic: np.ndarray, eps: float, max_entries: int | None, rng: np.random.Generator
) -> Check:
    """Perturb entries of ``array`` in place (restoring each) and compare df/d(array) with ``analytic``."""
    flat, flat_grad = array.reshape(-1), analytic.reshape(-1)
    if max_entries is None or flat.size <= max_entries:
        index = np.arange(flat.size)
    else:
        index = rng.choice(flat.size, size=max_entries, replace=False)
    f_0 = f()
    numerical = np.empty(len(index))
    smooth = np.ones(len(index), dtype=bool)
    for j, i in enumerate(index):
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old
        numerical[j] = (f_plus - f_minus) / (2 * eps)
        smooth[j] = not at_kink(f_plus, f_0, f_minus, eps)
    return compare(numerical[smooth], flat_grad[index][smooth], kinks=int(np.sum(~smooth)))


def replaying_randomness(layers) -> Callable[[], None]:
    """A function that rewinds every layer's ``rng`` (dropout masks...) to its state now.

    Layers keep their randomness in ``self.rng`` (a numpy Generator); rewinding it before each
    evaluation makes every forward pass of the check see the same masks.
    """
    saved = [(layer.rng, copy.deepcopy(layer.rng.bit_generator.state)) for layer in layers if isinstance(getattr(layer, "rng", None), np.random.Generator)]

    def rewind() -> None:
        for rng, state in saved:
            rng.bit_generator.state = copy.deepcopy(state)

    return rewind


def check_model(
    model, loss: Loss, x: np.ndarray, target: np.ndarray, eps: float = 1e-6, max_entries: int | None = 64, seed: int = 0, training: bool = True
) -> dict[str, Check]:
    """Every parameter of ``model`` (a float64 copy), on the samples ``x``: {param name: Check}.

    Runs the layers in training mode by default (batch statistics, dropout with replayed masks).
    """
    model = model.astype(np.float64)
    x = x.astype(np.float64)
    if np.issubdtype(target.dtype, np.floating):
        target = target.astype(np.float64)
    rewind = replaying_randomness(model.layers)

    def f() -> float:
        rewind()
        return loss.forward(model.forward(x, training=training), target)

    f()
    model.backward(loss.backward())
    analytic = {name: g.copy() for name, g in model.grads.items()}
    rng = np.random.default_rng(seed)
    return {name: check_array(f, p, analytic[name], eps, max_entries, rng) for name, p in model.params.items()}


def check_layer(
    layer: Layer, input_shape: tuple[int, ...], batch: int = 4, eps: float = 1e-6, seed: int = 0,
    away_from: float = 1e-2, training: bool = True,
) -> dict[str, Check]:
    """A layer's backward against central differences: {"x": Check, param key: Check, ...}.

    The layer is built in float64 on inputs of ``input_shape`` (one sample); inputs keep at least
    ``away_from`` from 0, where ReLU-like functions have their kink; the upstream gradient is
    random (not ones). Randomness in ``layer.rng`` is replayed, so dropout is checked with a fixed mask.
    """
    rng = np.random.default_rng(seed)
    layer.build(tuple(input_shape), rng, np.dtype(np.float64))
    x = rng.standard_normal((batch, *input_shape))
    x += np.sign(x) * away_from
    rewind = replaying_randomness([layer])
    dout = rng.standard_normal(layer.forward(x, training=training).shape)

    def f() -> float:
        rewind()
        return float(np.sum(dout * layer.forward(x, training=training)))

    f()
    dx = layer.backward(dout)
    analytic = {key: g.copy() for key, g in layer.grads.items()}
    checks = {"x": check_array(f, x, dx, eps, None, rng)}
    for key, p in layer.params.items():
        checks[key] = check_array(f, p, analytic[key], eps, None, rng)
    return checks


def max_rel_error(checks: dict[str, Check]) -> float:
    return max((c.rel_error for c in checks.values()), default=0.0)
