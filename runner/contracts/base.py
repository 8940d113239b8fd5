"""What the four contracts share."""

from __future__ import annotations

import math
import numbers
import types
from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np


class Tolerance(TypedDict):
    rtol: float
    atol: float


#: Two computations of the same float64 value (another memory layout, a batch of one) may differ by this much.
SAME: Tolerance = {"rtol": 1e-9, "atol": 1e-12}


class _Contract:
    """What the four contracts share: pytest collects their subclasses, not them; ``make()`` builds the plugin."""

    __test__ = False
    #: the plugin class, or a function returning the plugin: called as ``factory(**options)``
    factory: Callable[..., Any] | None = None
    options: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True  # a subclass is a test class, unless it says otherwise
        factory = cls.__dict__.get("factory")
        if isinstance(factory, types.FunctionType):
            cls.factory = staticmethod(factory)  # a function or lambda is called as it is, not bound to the test

    def make(self):
        """A new plugin object: ``factory(**options)``."""
        if self.factory is None:
            raise TypeError(
                f"{type(self).__name__}: set the class attribute factory (your plugin class, or a function returning one)"
            )
        return self.factory(**self.options)


def _mode(training: bool) -> str:
    return "training" if training else "eval"


def _assert_close(actual, expected, what: str) -> None:
    """``actual`` equals ``expected`` to within SAME, or an AssertionError with the largest difference."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    if not np.allclose(actual, expected, **SAME):
        raise AssertionError(f"{what}: differs by up to {np.max(np.abs(actual - expected)):.3g} (allowed: rtol {SAME['rtol']:g})")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
