"""The fully connected layer and its initializers."""

from __future__ import annotations

import math

import numpy as np

from runner.api import Layer, option

from .shape import flat_features

# name -> f(rng, fan_in, fan_out, std): a float64 (fan_in, fan_out) matrix
INITS = {
    "normal": lambda rng, n_in, n_out, std: std * rng.standard_normal((n_in, n_out)),
    "uniform_centered": lambda rng, n_in, n_out, std: rng.uniform(-0.5, 0.5, (n_in, n_out)),
    "scaled_uniform": lambda rng, n_in, n_out, std: 0.001 * rng.uniform(0.0, 1.0, (n_in, n_out)),
    "xavier_uniform": lambda rng, n_in, n_out, std: rng.uniform(
        -math.sqrt(6.0 / (n_in + n_out)), math.sqrt(6.0 / (n_in + n_out)), (n_in, n_out)
    ),
    "xavier_normal": lambda rng, n_in, n_out, std: math.sqrt(2.0 / (n_in + n_out)) * rng.standard_normal((n_in, n_out)),
    "he_uniform": lambda rng, n_in, n_out, std: rng.uniform(-math.sqrt(6.0 / n_in), math.sqrt(6.0 / n_in), (n_in, n_out)),
    "he_normal": lambda rng, n_in, n_out, std: math.sqrt(2.0 / n_in) * rng.standard_normal((n_in, n_out)),
}


class Linear(Layer):
    """y = x W + b, with W of shape (in, out) drawn by ``init`` and b filled with ``bias``.

    Backward: dW = x^T dout, db = sum_batch dout, dx = dout W^T. Shapes: (batch, in) -> (batch, out).
    ``std`` is used by ``init=normal`` only. The registered linear is layers.fast.FastLinear: these
    numbers, with fewer temporary arrays.
    """

    output_unshared = input_grad_unshared = True  # forward and backward return new arrays (it keeps x, not y)

    def __init__(self, out: int, init: str = "normal", std: float = 0.01, bias: float = 0.0):
        super().__init__()
        self.out = option("out", out, int, lambda v: v > 0, "a positive integer number of features")
        self.init = option("init", init, choices=INITS)
        self.std = option("std", std, float, lambda v: v > 0, "a positive number")
        self.bias = option("bias", bias)

    def build(self, input_shape, rng, dtype):
        n_in = flat_features("linear", input_shape)
        W = INITS[self.init](rng, n_in, self.out, self.std)
        self.params = {"W": W.astype(dtype), "b": np.full(self.out, self.bias, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return (self.out,)

    def forward(self, x, training):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads["W"][...] = self.x.T @ dout
        self.grads["b"][...] = dout.sum(axis=0)
        if not self.needs_input_grad:  # the model's first layer: nobody uses d(input) of the data
            return None
        return dout @ self.params["W"].T
