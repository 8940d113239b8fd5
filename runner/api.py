"""The contracts every plugin implements, the records plugins register, and ``option``, the
checker of a plugin's options.

This module imports nothing of runner's own: it is exactly what a third-party
plugin may import (plus `runner.testing` in its tests).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pluggy

#: The entry-point group every plugin distribution registers in.
ENTRY_POINT_GROUP = "runner.plugins"

#: Decorator for a plugin's hook implementations: ``@hookimpl def runner_layers(): ...``
hookimpl = pluggy.HookimplMarker("runner")


class RunnerError(Exception):
    """A mistake a user can fix (config, data, plugin): shown as one clear line, no traceback."""


# --------------------------------------------------------------------------- options


def option(
    name: str,
    value: Any,
    kind: type | tuple[type, ...] = float,
    check: Callable[[Any], bool] | None = None,
    expected: str | None = None,
    *,
    choices: Iterable[Any] | None = None,
    or_none: bool = False,
) -> Any:
    """One option of a plugin, checked: ``value`` as ``kind``, or a RunnerError naming the option.

    The error is one line, ``<name>: expected <expected>, got <value>`` (runner prefixes the config
    key): ``option("lr", lr, float, lambda v: v > 0, "a positive number")``.

    - ``kind``: ``float`` takes a finite real number (an int too) and returns a float; ``int`` a whole
      number, returned as an int; ``bool`` true or false; any other type (or tuple of types) is
      checked with ``isinstance``. A bool is never a number here (``True`` is not ``1``).
    - ``check``: a predicate the value (after conversion) must pass, e.g. ``lambda v: 0 <= v < 1``.
    - ``expected``: what the message says was expected; by default ``a number``, ``a whole
      number``, ``true or false``, or ``one of a, b`` for ``choices``.
    - ``choices``: the values allowed (``kind`` is then not checked).
    - ``or_none``: None is allowed too, and returned as it is (say so in ``expected``).
    """
    if value is None and or_none:
        return None
    if choices is not None:
        allowed = tuple(choices)
        if isinstance(value, Hashable) and value in allowed and (check is None or check(value)):
            return value
        raise RunnerError(f"{name}: expected {expected or 'one of ' + ', '.join(map(str, allowed))}, got {value!r}")
    converted = _as_kind(value, kind)
    if converted is _WRONG or (check is not None and not check(converted)):
        raise RunnerError(f"{name}: expected {expected or _EXPECTED.get(kind, 'a ' + _type_names(kind))}, got {value!r}")
    return converted


_WRONG = object()
_EXPECTED: dict[Any, str] = {float: "a number", int: "a whole number", bool: "true or false", str: "a string"}


def _as_kind(value: Any, kind: type | tuple[type, ...]) -> Any:
    """``value`` converted to ``kind`` (see ``option``), or _WRONG."""
    if kind is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return _WRONG
        return float(value)
    if kind is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            return _WRONG
        return int(value)
    if kind is bool:
        return bool(value) if isinstance(value, (bool, np.bool_)) else _WRONG
    return value if isinstance(value, kind) else _WRONG


def _type_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


# --------------------------------------------------------------------------- contracts


class Layer:
    """One differentiable step of a model.

    ``params`` and ``grads`` share keys (``{"W": ..., "b": ...}``; empty for activations).
    ``forward`` keeps what ``backward`` needs; ``backward`` fills ``grads`` in place
    (``self.grads["W"][...] = ...``: the runner holds these arrays) and returns d(loss)/d(input).
    Layers never update their own parameters: optimizers do; layers read
    them from ``self.params`` on every call (the runner may swap the arrays, e.g. to float64).
    ``buffers``: state that is not trained (batchnorm's running statistics), saved with the weights.
    A layer that needs randomness (dropout) draws it from ``self.rng``, a Generator it makes in
    ``build`` from the ``rng`` it is given; the gradient check rewinds ``self.rng`` between passes.
    """

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    #: False on a model's first layer: ``backward`` may then skip d(input) and return None
    needs_input_grad: bool = True
    #: Where a piecewise elementwise layer changes formula, as input values (relu: ``(0.0,)``);
    #: empty for a smooth layer. The gradient check skips an entry only when its perturbation moves
    #: an input of this layer across one of them (no finite difference is the derivative there).
    kinks: tuple[float, ...] = ()
    #: True for a layer that takes images (batch, channels, height, width): conv2d, pools, batchnorm2d.
    #: As a model's first layer it gets a dataset's flat samples viewed as ``Meta.image_shape``.
    image_input: bool = False
    #: The in-place protocol (docs/plugins.md), annotated only: a layer class that defines
    #: ``overwrite_input = overwrite_dout = False`` gets them set by the model; one that defines
    #: ``output_unshared`` / ``input_grad_unshared`` says its returned arrays are its callers' alone.
    overwrite_input: bool
    overwrite_dout: bool
    output_unshared: bool
    input_grad_unshared: bool

    def __init__(self) -> None:
        self.params = {}
        self.grads = {}
        self.buffers = {}

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype) -> tuple[int, ...]:
        """Allocate parameters for inputs of ``input_shape`` (one sample, no batch axis); return the output shape."""
        return input_shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def branches(self, x: np.ndarray) -> np.ndarray | None:
        """Which piece of a piecewise formula each element uses for the input ``x``; None when smooth.

        The gradient check compares these before and after a perturbation. By default they come
        from ``kinks``; a layer that is piecewise but not elementwise (max pooling) overrides this.
        """
        if not self.kinks:
            return None
        return np.searchsorted(np.asarray(self.kinks, dtype=np.float64), x)  # kink k < x: piece k + 1


class Loss:
    """A scalar objective of predictions and targets.

    ``accepts_class_indices``: True when ``target`` may be a vector of integer class
    indices; otherwise the runner passes targets shaped like ``pred`` (one-hot for classes).
    ``binary_threshold``: how accuracy reads a binary task's one output (probability or logit).
    """

    accepts_class_indices: bool = False
    #: "mean" when the value is an average over the batch, "sum" when it adds up over the batch
    #: (then evaluation reports it per batch of the training size)
    reduction: str = "mean"
    #: where the single output of a binary task splits the classes: 0.5 for probabilities, 0 for logits
    binary_threshold: float = 0.5

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        """d(loss)/d(pred) for the last ``forward``."""
        raise NotImplementedError

    def branches(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray | None:
        """Which piece of a piecewise loss (l1, hinge, huber, a clip) each element of ``pred`` is on;
        None when smooth. The gradient check skips an entry whose perturbation changes one."""
        return None


class Optimizer:
    """Updates parameters in place from their gradients, keyed by stable names like ``0.linear.W``."""

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class Meta:
    """What the model needs to know about a dataset.

    ``task``: ``classification`` (integer labels, argmax of the outputs), ``binary``
    (labels 0/1, one output read as a probability, threshold 0.5) or ``regression``
    (real-valued targets of ``output_size`` columns).
    """

    name: str
    input_shape: tuple[int, ...]
    output_size: int
    task: str
    classes: tuple[str, ...] = ()
    #: (channels, height, width) when the samples are images stored flat (MNIST: (1, 28, 28)); a model
    #: whose first layer takes images (``Layer.image_input``) gets each sample in this shape
    image_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split
    meta: Meta


@dataclass(frozen=True)
class DataContext:
    """What the runner hands a dataset: where data lives, and the run's seed for the splits."""

    data_dir: Path
    seed: int
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))


class Dataset:
    def load(self, context: DataContext) -> Splits:
        raise NotImplementedError


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class PluginSpec:
    """One named thing a plugin provides: ``factory(**options)`` builds it from config."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


LayerSpec = LossSpec = OptimizerSpec = DatasetSpec = PluginSpec


# --------------------------------------------------------------------------- layers of several inputs


class MergeLayer(Layer):
    """A layer of several inputs: a node of a ``model=graph`` that merges (add, concat, multiply).

    What differs from ``Layer`` (everything else -- params, grads, buffers, rng, kinks -- is the same):

    - ``n_inputs`` (class attribute): how many inputs, an int >= 2, or None for any number >= 2.
      runner reads ``getattr(layer, "n_inputs", 1)``: a class need not subclass ``MergeLayer`` to
      take several inputs, declaring ``n_inputs`` is enough; single-input layers declare nothing.
    - ``build(input_shapes, rng, dtype) -> output_shape``: ``input_shapes`` is a tuple of one shape per
      input (one sample each, no batch axis), in the order the node lists its inputs. Raise
      ``RunnerError`` when they do not fit together (runner prefixes the node's name).
    - ``forward(*xs, training) -> y``: ``xs`` in that order, each ``(batch, *its shape)``;
      ``training`` is passed by keyword.
    - ``backward(dout) -> tuple``: d(loss)/d(each input), a tuple in the order of ``xs``, each of its
      input's shape. The arrays may be one and the same (add returns ``dout`` for every input):
      runner never writes into them. An input used several times gets the sum of its gradients.
    - ``branches(*xs)``: as ``Layer.branches``, of the inputs; None (the default) when smooth.
    """

    #: how many inputs forward takes: an int >= 2, or None for any number >= 2
    n_inputs: int | None = 2

    def build(self, input_shapes: tuple[tuple[int, ...], ...], rng: np.random.Generator, dtype: np.dtype) -> tuple[int, ...]:  # type: ignore[override]
        """Allocate parameters for inputs of ``input_shapes`` (one shape per input); return the output shape."""
        return tuple(input_shapes[0])

    def forward(self, *xs: np.ndarray, training: bool) -> np.ndarray:  # type: ignore[override]
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, ...]:  # type: ignore[override]
        raise NotImplementedError

    def branches(self, *xs: np.ndarray) -> np.ndarray | None:
        return None


def input_count(layer: object) -> int | None:
    """How many inputs ``layer`` takes: 1 for a ``Layer``, its ``n_inputs`` for a merge layer (None: any number >= 2)."""
    return getattr(layer, "n_inputs", 1)
