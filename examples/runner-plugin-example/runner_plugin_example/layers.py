"""PReLU: a ReLU with a learned negative slope (He et al. 2015, "Delving deep into rectifiers")."""

from __future__ import annotations

import numpy as np

from runner.api import Layer, option


class PReLU(Layer):
    """y = x where x > 0, a x elsewhere; the slope ``a`` (parameter ``alpha``) is learned.

        dL/dx = dout where x > 0, a dout elsewhere
        dL/da = sum of dout x over the entries where x <= 0 (over the batch; and over the features
                when the slope is shared)

    ``init``: the starting slope (0.25, as torch.nn.PReLU). ``shared``: one slope for every
    feature (torch's default), else one per feature of the last axis.
    """

    kinks = (0.0,)  # the formula changes at x = 0: the gradient check skips perturbations that cross it

    def __init__(self, init: float = 0.25, shared: bool = True):
        super().__init__()
        self.init = option("init", init, float, expected="a number (the starting slope)")
        self.shared = option("shared", shared, bool)

    def build(self, input_shape, rng, dtype):
        shape = (1,) if self.shared else (input_shape[-1],)
        self.params = {"alpha": np.full(shape, self.init, dtype=dtype)}
        self.grads = {"alpha": np.zeros(shape, dtype=dtype)}  # filled in place by backward
        return input_shape

    def forward(self, x, training):
        self.x = x
        self.negative = x <= 0
        return np.where(self.negative, self.params["alpha"] * x, x)

    def backward(self, dout):
        alpha = self.params["alpha"]
        per_entry = np.where(self.negative, dout * self.x, 0)
        axes = tuple(range(per_entry.ndim)) if self.shared else tuple(range(per_entry.ndim - 1))
        self.grads["alpha"][...] = per_entry.sum(axis=axes).reshape(alpha.shape)
        return np.where(self.negative, alpha * dout, dout)
