"""One array's gradient against central differences: the primitives every check of the package is made of.

``f`` is any function of an array perturbed in place (it knows nothing of layers, losses or models):
``step_for`` chooses the array's step h, ``difference`` takes the central difference of ``f`` both ways
with Richardson's correction (and says when a step crosses a kink), ``compare`` measures the numerical
against the analytic gradient relative to their size or to the rounding floor (``floor_for``), and
``check_array`` does it entry by entry and along one random direction. The math and why the floor:
the package's docstring (runner.core.gradcheck) and docs/numerics.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

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
