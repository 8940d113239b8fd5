"""Elementwise activations (any shape -> same shape) and softmax over the last axis.

Scalars in the math are Python floats on purpose: a NumPy float64 scalar would upcast float32 arrays.
"""

from __future__ import annotations

import math

import numpy as np

from runner.api import Layer, option

#: erf per element with the C library's math.erf (NumPy has none); gives an object array
_erf = np.frompyfunc(math.erf, 1, 1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), written as exp(min(x, 0)) / (1 + exp(-|x|)): exp only ever sees numbers <= 0,
    so it never overflows for large |x| (1 / (1 + exp(1000)) would), and nothing cancels."""
    return np.exp(np.minimum(x, 0.0)) / (1.0 + np.exp(-np.abs(x)))


class ReLU(Layer):
    """y = max(0, x); dx = dout where x > 0, else 0.

    The registered relu is layers.fast.InPlaceReLU: these numbers, in place where the model allows.
    """

    kinks = (0.0,)

    def forward(self, x, training):
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * self.mask


class LeakyReLU(Layer):
    """y = x if x > 0 else alpha x; dx = dout where x > 0, else alpha dout."""

    kinks = (0.0,)

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        self.alpha = option("alpha", alpha)

    def forward(self, x, training):
        self.slope = np.where(x > 0, 1.0, self.alpha).astype(x.dtype)
        return x * self.slope

    def backward(self, dout):
        return dout * self.slope


class ELU(Layer):
    """y = x if x > 0 else alpha (exp(x) - 1); dx = dout where x > 0, else dout alpha exp(x).

    alpha exp(x), not y + alpha: the sum loses the small exp(x) below x of about -20 and is 0 below -37.
    """

    kinks = (0.0,)  # the formula changes there (a kink unless alpha = 1; even then the curvature jumps)

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = option("alpha", alpha, float, lambda v: v >= 0, "a non-negative number")

    def forward(self, x, training):
        self.positive = x > 0
        self.x_neg = np.minimum(x, 0.0)  # min: no overflow in the discarded branch
        return np.where(self.positive, x, self.alpha * np.expm1(self.x_neg))

    def backward(self, dout):
        return dout * np.where(self.positive, 1.0, self.alpha * np.exp(self.x_neg)).astype(dout.dtype)


class GELU(Layer):
    """y = x Phi(x), Phi the standard normal CDF; dx = dout (Phi(x) + x phi(x)), phi its density.

    ``approximate="none"``: Phi(x) = (1 + erf(x / sqrt 2)) / 2, exact (math.erf per element, ~70 ns each).
    ``approximate="tanh"``: Phi(x) ~ (1 + tanh(u)) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3), and
    dx = dout ((1 + t) / 2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2), t = tanh(u).
    """

    K, C = math.sqrt(2.0 / math.pi), 0.044715

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = option(
            "approximate", approximate, choices=("none", "tanh"), expected="'none' (exact, with erf) or 'tanh'"
        )

    def forward(self, x, training):
        self.x = x
        if self.approximate == "tanh":
            self.t = np.tanh(self.K * (x + self.C * x**3))
            return 0.5 * x * (1.0 + self.t)
        self.Phi = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))
        return x * self.Phi

    def backward(self, dout):
        x = self.x
        if self.approximate == "tanh":
            du = self.K * (1.0 + 3.0 * self.C * x**2)
            return dout * (0.5 * (1.0 + self.t) + 0.5 * x * (1.0 - self.t**2) * du)
        phi = np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
        return dout * (self.Phi + x * phi)


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)); dx = dout y (1 - y)."""

    def forward(self, x, training):
        self.y = sigmoid(x)
        return self.y

    def backward(self, dout):
        return dout * self.y * (1.0 - self.y)


class Tanh(Layer):
    """y = tanh(x); dx = dout (1 - y^2)."""

    def forward(self, x, training):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout):
        return dout * (1.0 - self.y**2)


class Softplus(Layer):
    """y = log(1 + exp(beta x)) / beta, or x where beta x > threshold (as torch); dx = dout sigmoid(beta x), or dout there."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = option("beta", beta, float, lambda v: v > 0, "a positive number")
        self.threshold = option("threshold", threshold, float, lambda v: v > 0, "a positive number")
        self.kinks = (self.threshold / self.beta,)  # where it switches to y = x (a tiny jump, as torch)

    def forward(self, x, training):
        bx = self.beta * x
        self.linear = bx > self.threshold
        self.s = sigmoid(bx)
        return np.where(self.linear, x, np.logaddexp(0.0, bx) / self.beta)  # logaddexp(0, z) = log(1 + e^z), stably

    def backward(self, dout):
        return dout * np.where(self.linear, 1.0, self.s).astype(dout.dtype)


class Swish(Layer):
    """y = x s with s = sigmoid(beta x); dx = dout (s + beta x s (1 - s))."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = option("beta", beta, float, lambda v: v > 0, "a positive number")

    def forward(self, x, training):
        self.x, self.s = x, sigmoid(self.beta * x)
        return x * self.s

    def backward(self, dout):
        return dout * (self.s + self.beta * self.x * self.s * (1.0 - self.s))


class SiLU(Swish):
    """y = x sigmoid(x): swish with beta = 1; dx = dout (s + x s (1 - s))."""

    def __init__(self):
        super().__init__(beta=1.0)


class Identity(Layer):
    """y = x; dx = dout."""

    def forward(self, x, training):
        return x

    def backward(self, dout):
        return dout


class Softmax(Layer):
    """y = exp(x - max x) / sum exp(x - max x) over the last axis (the max makes it stable).

    Backward: dx = y (dout - sum_last(dout y)). Shapes: (batch, ..., classes) -> same.
    """

    def forward(self, x, training):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        self.y = e / e.sum(axis=-1, keepdims=True)
        return self.y

    def backward(self, dout):
        return self.y * (dout - np.sum(dout * self.y, axis=-1, keepdims=True))
