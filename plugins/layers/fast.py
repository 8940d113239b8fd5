"""Fast variants of built-in layers: the numbers of the reference classes, bit for bit, with fewer
temporary arrays (tests/test_fast_variants.py checks each against its reference).

They are registered in the references' place by ``runner_layers`` (``FAST`` in layers/__init__.py,
the one place the choice is made). Read the reference classes for the math; these only change
where the results are written.

relu and dropout use the model's in-place protocol (docs/plugins.md, "Layer"): ``Sequential`` sets
``overwrite_input`` / ``overwrite_dout`` per layer, True only when the neighbouring layer declared
the array unshared (``output_unshared`` / ``input_grad_unshared``); the layer may then write into it.
"""

from __future__ import annotations

import numpy as np

from .activations import ReLU
from .dropout import Dropout
from .linear import Linear


class InPlaceReLU(ReLU):
    """ReLU, writing y into x and dx into dout where the model allows it."""

    overwrite_input = overwrite_dout = False  # set by Sequential
    output_unshared = input_grad_unshared = True  # it keeps only its mask

    def forward(self, x, training):
        self.mask = x > 0
        return np.maximum(x, 0, out=x if self.overwrite_input else None)

    def backward(self, dout):
        return np.multiply(dout, self.mask, out=dout if self.overwrite_dout else None)


class InPlaceDropout(Dropout):
    """Dropout, writing y into x and dx into dout where the model allows it; m / (1 - p) made in one pass."""

    overwrite_input = overwrite_dout = False  # set by Sequential
    # what it returns is unshared when it worked in place on an unshared array (eval passes x itself on)
    output_unshared = property(lambda self: self.overwrite_input)
    input_grad_unshared = property(lambda self: self.overwrite_dout)

    def forward(self, x, training):
        self.scale = None
        if not training:
            return x
        self.scale = np.multiply(self.keep(x.shape), 1.0 / (1.0 - self.p), dtype=x.dtype)  # m / (1 - p)
        return np.multiply(x, self.scale, out=x if self.overwrite_input else None)

    def backward(self, dout):
        if self.scale is None:
            return dout
        return np.multiply(dout, self.scale, out=dout if self.overwrite_dout else None)


class FastLinear(Linear):
    """Linear, adding the bias in place and writing dW and db straight into the gradients' arrays."""

    def forward(self, x, training):
        self.x = x
        y = x @ self.params["W"]
        y += self.params["b"]
        return y

    def backward(self, dout):
        np.matmul(self.x.T, dout, out=self.grads["W"])  # (in, batch) @ (batch, out), no temporary
        dout.sum(axis=0, out=self.grads["b"])  # the method: np.sum's Python wrapper costs a call (docs/benchmarks.md)
        if not self.needs_input_grad:
            return None
        return dout @ self.params["W"].T
