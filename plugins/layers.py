"""Built-in layers. Each keeps what its backward needs; shapes are (batch, features)."""
from __future__ import annotations

import numpy as np

from runner.api import Layer, PluginSpec, RunnerError, hookimpl

INITS = ("normal", "he_normal", "xavier_uniform", "uniform_centered")


class Linear(Layer):
    """y = x W + b, with W of shape (in, out)."""

    def __init__(self, out: int, init: str = "normal", std: float = 0.01, bias: float = 0.0):
        super().__init__()
        if not isinstance(out, int) or isinstance(out, bool) or out <= 0:
            raise RunnerError(f"out: expected a positive integer number of features, got {out!r}")
        if init not in INITS:
            raise RunnerError(f"init: unknown initializer {init!r}; expected one of {', '.join(INITS)}")
        self.out, self.init, self.std, self.bias = out, init, std, bias

    def build(self, input_shape, rng, dtype):
        (n_in,) = input_shape
        shape = (n_in, self.out)
        if self.init == "normal":
            W = self.std * rng.standard_normal(shape)
        elif self.init == "he_normal":
            W = np.sqrt(2.0 / n_in) * rng.standard_normal(shape)
        elif self.init == "xavier_uniform":
            limit = np.sqrt(6.0 / (n_in + self.out))
            W = rng.uniform(-limit, limit, shape)
        else:  # uniform_centered
            W = rng.uniform(-0.5, 0.5, shape)
        self.params = {"W": W.astype(dtype), "b": np.full(self.out, self.bias, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return (self.out,)

    def forward(self, x, training):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads["W"][...] = self.x.T @ dout  # (in, batch) @ (batch, out)
        self.grads["b"][...] = dout.sum(axis=0)
        return dout @ self.params["W"].T


class ReLU(Layer):
    """y = max(0, x); dy/dx = 1 where x > 0."""

    def forward(self, x, training):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)); dy/dx = y (1 - y)."""

    def forward(self, x, training):
        # exp of a non-positive number only: no overflow for large |x|
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
        return self.y

    def backward(self, dout):
        return dout * self.y * (1.0 - self.y)


class Tanh(Layer):
    """y = tanh(x); dy/dx = 1 - y^2."""

    def forward(self, x, training):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout):
        return dout * (1.0 - self.y**2)


@hookimpl
def runner_layers():
    return [
        PluginSpec("linear", Linear, "fully connected: y = x W + b"),
        PluginSpec("relu", ReLU, "rectified linear unit: max(0, x)"),
        PluginSpec("sigmoid", Sigmoid, "logistic function 1 / (1 + exp(-x))"),
        PluginSpec("tanh", Tanh, "hyperbolic tangent"),
    ]
