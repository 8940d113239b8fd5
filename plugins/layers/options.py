"""Validation of layer options and input shapes, with errors that name the option."""

from __future__ import annotations

import math

from runner.api import RunnerError


def number_option(option: str, value, expected: str = "a number", ok=lambda v: True) -> float:
    """``value`` as a float, or a RunnerError naming the option, what was given and what was expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise RunnerError(f"{option}: expected {expected}, got {value!r}")
    return float(value)


def flat_features(layer: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 1:
        shape = "x".join(map(str, input_shape))
        raise RunnerError(f"{layer}: expected flat inputs of (features,), got {shape}; put a flatten layer before it")
    return input_shape[0]
