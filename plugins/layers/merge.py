"""Nodes of a computation graph (``model=graph``): merges of several inputs, and learned scalars.

Merges (``runner.api.MergeLayer``: ``forward(*xs, training)``, ``backward(dout) -> tuple``) take two or
more inputs, listed by the node's ``inputs``; no broadcasting: shapes must fit exactly, checked by
``build`` before training. ``scale`` and ``bias`` are ordinary single-input layers with one learned
scalar each (the adaptive linear unit as a graph: ``+experiment=adaline_graph``).
"""

from __future__ import annotations

import numpy as np

from runner.api import Layer, MergeLayer, RunnerError, option


def _shapes(input_shapes) -> str:
    return ", ".join("x".join(map(str, shape)) or "scalar" for shape in input_shapes)


class Add(MergeLayer):
    """y = x_1 + x_2 + ... (a skip connection); dx_k = dout for every input. Shapes: all equal -> the same."""

    n_inputs = None  # two or more
    output_unshared = True  # a new array, kept by nobody

    def build(self, input_shapes, rng, dtype):
        if len({tuple(s) for s in input_shapes}) != 1:
            raise RunnerError(f"add: inputs of shapes {_shapes(input_shapes)}; add needs equal shapes")
        return tuple(input_shapes[0])

    def forward(self, *xs, training):  # type: ignore[override]  # a merge takes several inputs (runner.api.MergeLayer)
        self.count = len(xs)
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        return y

    def backward(self, dout):
        return (dout,) * self.count


class Concat(MergeLayer):
    """y = [x_1, x_2, ...] along the feature (last) axis; dx_k = dout's slice of x_k's features.

    Shapes: (..., f_1), (..., f_2), ... with equal leading axes -> (..., f_1 + f_2 + ...).
    """

    n_inputs = None
    output_unshared = True

    def build(self, input_shapes, rng, dtype):
        shapes = [tuple(s) for s in input_shapes]
        if any(len(s) == 0 for s in shapes) or len({s[:-1] for s in shapes}) != 1:
            raise RunnerError(
                f"concat: inputs of shapes {_shapes(shapes)}; concat needs equal shapes but for the last (feature) axis"
            )
        self.widths = [s[-1] for s in shapes]
        return (*shapes[0][:-1], sum(self.widths))

    def forward(self, *xs, training):  # type: ignore[override]  # a merge takes several inputs (runner.api.MergeLayer)
        self.widths = [x.shape[-1] for x in xs]
        return np.concatenate(xs, axis=-1)

    def backward(self, dout):
        ends = np.cumsum(self.widths)
        return tuple(dout[..., end - width : end] for end, width in zip(ends, self.widths))


class Multiply(MergeLayer):
    """y = x_1 x_2 ... elementwise (a gate); dx_k = dout times the product of the other inputs.

    Shapes: all equal -> the same.
    """

    n_inputs = None
    output_unshared = True

    def build(self, input_shapes, rng, dtype):
        if len({tuple(s) for s in input_shapes}) != 1:
            raise RunnerError(f"multiply: inputs of shapes {_shapes(input_shapes)}; multiply needs equal shapes")
        return tuple(input_shapes[0])

    def forward(self, *xs, training):  # type: ignore[override]  # a merge takes several inputs (runner.api.MergeLayer)
        self.xs = xs
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y *= x
        return y

    def backward(self, dout):
        xs = self.xs
        grads = []
        for k in range(len(xs)):
            g = dout
            for j, x in enumerate(xs):
                if j != k:
                    g = g * x
            grads.append(g)
        return tuple(grads)


class Scale(Layer):
    """y = w x with one learned scalar w (``init``); dw = sum(dout x), dx = dout w. Shapes: any -> the same."""

    output_unshared = input_grad_unshared = True

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.init = option("init", init)

    def build(self, input_shape, rng, dtype):
        self.params = {"w": np.full((1,), self.init, dtype=dtype)}
        self.grads = {"w": np.zeros((1,), dtype=dtype)}
        return tuple(input_shape)

    def forward(self, x, training):
        self.x = x
        return x * self.params["w"]

    def backward(self, dout):
        self.grads["w"][...] = np.sum(dout * self.x)
        return dout * self.params["w"]


class Bias(Layer):
    """y = x + b with one learned scalar b (``init``); db = sum(dout), dx = dout. Shapes: any -> the same."""

    output_unshared = True

    def __init__(self, init: float = 0.0):
        super().__init__()
        self.init = option("init", init)

    def build(self, input_shape, rng, dtype):
        self.params = {"b": np.full((1,), self.init, dtype=dtype)}
        self.grads = {"b": np.zeros((1,), dtype=dtype)}
        return tuple(input_shape)

    def forward(self, x, training):
        return x + self.params["b"]

    def backward(self, dout):
        self.grads["b"][...] = np.sum(dout)
        return dout
