"""Built-in layers. Each keeps what its backward needs; inputs are (batch, *shape), float32 stays float32.

Scalars in the math below are Python floats on purpose: a NumPy float64 scalar would upcast float32 arrays.
"""
from __future__ import annotations

import math

import numpy as np

from runner.api import Layer, PluginSpec, RunnerError, hookimpl


def _number(option: str, value, expected: str = "a number", ok=lambda v: True) -> float:
    """``value`` as a float, or a RunnerError naming the option, what was given and what was expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise RunnerError(f"{option}: expected {expected}, got {value!r}")
    return float(value)


def _flat_features(layer: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 1:
        shape = "x".join(map(str, input_shape))
        raise RunnerError(f"{layer}: expected flat inputs of (features,), got {shape}; put a flatten layer before it")
    return input_shape[0]


#: erf per element with the C library's math.erf (NumPy has none); gives an object array
_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # exp of a non-positive number only: no overflow for large |x|
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------- linear

# name -> f(rng, fan_in, fan_out, std): a float64 (fan_in, fan_out) matrix
INITS = {
    "normal": lambda rng, n_in, n_out, std: std * rng.standard_normal((n_in, n_out)),
    "uniform_centered": lambda rng, n_in, n_out, std: rng.uniform(-0.5, 0.5, (n_in, n_out)),
    "scaled_uniform": lambda rng, n_in, n_out, std: 0.001 * rng.uniform(0.0, 1.0, (n_in, n_out)),
    "xavier_uniform": lambda rng, n_in, n_out, std: rng.uniform(-math.sqrt(6.0 / (n_in + n_out)), math.sqrt(6.0 / (n_in + n_out)), (n_in, n_out)),
    "xavier_normal": lambda rng, n_in, n_out, std: math.sqrt(2.0 / (n_in + n_out)) * rng.standard_normal((n_in, n_out)),
    "he_uniform": lambda rng, n_in, n_out, std: rng.uniform(-math.sqrt(6.0 / n_in), math.sqrt(6.0 / n_in), (n_in, n_out)),
    "he_normal": lambda rng, n_in, n_out, std: math.sqrt(2.0 / n_in) * rng.standard_normal((n_in, n_out)),
}


class Linear(Layer):
    """y = x W + b, with W of shape (in, out) drawn by ``init`` and b filled with ``bias``.

    Backward: dW = x^T dout, db = sum_batch dout, dx = dout W^T. Shapes: (batch, in) -> (batch, out).
    ``std`` is used by ``init=normal`` only.
    """

    def __init__(self, out: int, init: str = "normal", std: float = 0.01, bias: float = 0.0):
        super().__init__()
        if not isinstance(out, int) or isinstance(out, bool) or out <= 0:
            raise RunnerError(f"out: expected a positive integer number of features, got {out!r}")
        if init not in INITS:
            raise RunnerError(f"init: unknown initializer {init!r}; expected one of {', '.join(INITS)}")
        self.out, self.init = out, init
        self.std = _number("std", std, "a positive number", lambda v: v > 0)
        self.bias = _number("bias", bias)

    def build(self, input_shape, rng, dtype):
        n_in = _flat_features("linear", input_shape)
        W = INITS[self.init](rng, n_in, self.out, self.std)
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


# --------------------------------------------------------------------------- activations (elementwise: any shape -> same shape)


class ReLU(Layer):
    """y = max(0, x); dx = dout where x > 0, else 0."""

    def forward(self, x, training):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class LeakyReLU(Layer):
    """y = x if x > 0 else alpha x; dx = dout where x > 0, else alpha dout."""

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        self.alpha = _number("alpha", alpha)

    def forward(self, x, training):
        self.slope = np.where(x > 0, 1.0, self.alpha).astype(x.dtype)
        return x * self.slope

    def backward(self, dout):
        return dout * self.slope


class ELU(Layer):
    """y = x if x > 0 else alpha (exp(x) - 1); dx = dout where x > 0, else dout alpha exp(x) (= dout (y + alpha))."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = _number("alpha", alpha, "a non-negative number", lambda v: v >= 0)

    def forward(self, x, training):
        self.positive = x > 0
        negative = self.alpha * np.expm1(np.minimum(x, 0.0))  # min: no overflow in the discarded branch
        self.y = np.where(self.positive, x, negative)
        return self.y

    def backward(self, dout):
        return dout * np.where(self.positive, 1.0, self.y + self.alpha).astype(dout.dtype)


class GELU(Layer):
    """y = x Phi(x), Phi the standard normal CDF; dx = dout (Phi(x) + x phi(x)), phi its density.

    ``approximate="none"``: Phi(x) = (1 + erf(x / sqrt 2)) / 2, exact (math.erf per element, ~70 ns each).
    ``approximate="tanh"``: Phi(x) ~ (1 + tanh(u)) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3), and
    dx = dout ((1 + t) / 2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2), t = tanh(u).
    """

    K, C = math.sqrt(2.0 / math.pi), 0.044715

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise RunnerError(f"approximate: expected 'none' (exact, with erf) or 'tanh', got {approximate!r}")
        self.approximate = approximate

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
        self.y = _sigmoid(x)
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
        self.beta = _number("beta", beta, "a positive number", lambda v: v > 0)
        self.threshold = _number("threshold", threshold, "a positive number", lambda v: v > 0)

    def forward(self, x, training):
        bx = self.beta * x
        self.linear = bx > self.threshold
        self.s = _sigmoid(bx)
        return np.where(self.linear, x, np.logaddexp(0.0, bx) / self.beta)  # logaddexp(0, z) = log(1 + e^z), stably

    def backward(self, dout):
        return dout * np.where(self.linear, 1.0, self.s).astype(dout.dtype)


class Swish(Layer):
    """y = x s with s = sigmoid(beta x); dx = dout (s + beta x s (1 - s))."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = _number("beta", beta, "a positive number", lambda v: v > 0)

    def forward(self, x, training):
        self.x, self.s = x, _sigmoid(self.beta * x)
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


# --------------------------------------------------------------------------- softmax, dropout, flatten


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


class Dropout(Layer):
    """Inverted dropout. Training: y = x m / (1 - p), m_i ~ Bernoulli(1 - p) from ``self.rng``; eval: y = x.

    Backward: dx = dout m / (1 - p) in training (the mask of the last forward), dout in eval. Shapes: any -> same.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _number("p", p, "a drop probability in [0, 1)", lambda v: 0 <= v < 1)

    def build(self, input_shape, rng, dtype):
        self.rng = np.random.default_rng(rng.integers(2**63))
        return input_shape

    def forward(self, x, training):
        self.scale = None
        if not training:
            return x
        keep = self.rng.random(x.shape) >= self.p  # uniforms in float64: the same mask whatever the dtype
        self.scale = keep.astype(x.dtype) / (1.0 - self.p)
        return x * self.scale

    def backward(self, dout):
        return dout if self.scale is None else dout * self.scale


class Flatten(Layer):
    """y = x.reshape(batch, prod(shape)); dx = dout.reshape(batch, *shape). Shapes: (batch, *shape) -> (batch, prod(shape))."""

    def build(self, input_shape, rng, dtype):
        return (math.prod(input_shape),)

    def forward(self, x, training):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dout):
        return dout.reshape(self.shape)


# --------------------------------------------------------------------------- normalisation


def _normalize_backward(dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axis: int) -> np.ndarray:
    """dx for xhat = (x - mean) inv_std, mean and biased variance over ``axis`` of n entries:

    dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over ``axis``.
    """
    mean_d = dxhat.mean(axis=axis, keepdims=True)
    mean_dx = (dxhat * xhat).mean(axis=axis, keepdims=True)
    return inv_std * (dxhat - mean_d - xhat * mean_dx)


class BatchNorm(Layer):
    """Batch normalisation of (batch, features) over the batch axis (torch's BatchNorm1d).

    Training: mu, var = mean and biased variance over the batch; xhat = (x - mu) / sqrt(var + eps);
    y = gamma xhat + beta; running = (1 - momentum) running + momentum batch_stat, with the unbiased
    variance var n / (n - 1) for running_var. Eval: mu, var = running_mean, running_var.
    Backward: dgamma = sum_batch dout xhat, dbeta = sum_batch dout, dxhat = dout gamma;
    training: dx = (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) / sqrt(var + eps); eval: dx = dxhat / sqrt(var + eps).
    Shapes: (batch, features) -> same; gamma, beta, running_mean, running_var: (features,).
    """

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum = _number("momentum", momentum, "a number in [0, 1]", lambda v: 0 <= v <= 1)
        self.eps = _number("eps", eps, "a positive number", lambda v: v > 0)

    def build(self, input_shape, rng, dtype):
        n = _flat_features("batchnorm", input_shape)
        self.params = {"gamma": np.ones(n, dtype), "beta": np.zeros(n, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(n, dtype), "running_var": np.ones(n, dtype)}
        return input_shape

    def forward(self, x, training):
        self.training = training
        if training:
            n = len(x)
            if n < 2:
                raise RunnerError(f"batchnorm: training needs batches of at least 2 samples, got {n}")
            mean, var = x.mean(axis=0), x.var(axis=0)
            m, running = self.momentum, self.buffers
            running["running_mean"][...] = (1.0 - m) * running["running_mean"] + m * mean
            running["running_var"][...] = (1.0 - m) * running["running_var"] + m * var * (n / (n - 1))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        self.inv_std = 1.0 / np.sqrt(var + self.eps)  # (features,)
        self.xhat = (x - mean) * self.inv_std
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, dout):
        self.grads["gamma"][...] = np.sum(dout * self.xhat, axis=0)
        self.grads["beta"][...] = np.sum(dout, axis=0)
        dxhat = dout * self.params["gamma"]
        if not self.training:  # the statistics are constants
            return dxhat * self.inv_std
        return _normalize_backward(dxhat, self.xhat, self.inv_std, axis=0)


class LayerNorm(Layer):
    """Layer normalisation over the last axis (torch's LayerNorm(features)), the same in training and eval.

    mu, var = mean and biased variance over the last axis; xhat = (x - mu) / sqrt(var + eps); y = gamma xhat + beta.
    Backward: dgamma = sum_(all but last) dout xhat, dbeta = sum dout, dxhat = dout gamma,
    dx = (dxhat - mean_last(dxhat) - xhat mean_last(dxhat xhat)) / sqrt(var + eps).
    Shapes: (batch, ..., features) -> same; gamma, beta: (features,).
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = _number("eps", eps, "a positive number", lambda v: v > 0)

    def build(self, input_shape, rng, dtype):
        n = input_shape[-1]
        self.params = {"gamma": np.ones(n, dtype), "beta": np.zeros(n, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return input_shape

    def forward(self, x, training):
        mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
        self.inv_std = 1.0 / np.sqrt(var + self.eps)  # (batch, ..., 1)
        self.xhat = (x - mean) * self.inv_std
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, dout):
        features = dout.shape[-1]
        self.grads["gamma"][...] = np.sum((dout * self.xhat).reshape(-1, features), axis=0)
        self.grads["beta"][...] = np.sum(dout.reshape(-1, features), axis=0)
        return _normalize_backward(dout * self.params["gamma"], self.xhat, self.inv_std, axis=-1)


@hookimpl
def runner_layers():
    return [
        PluginSpec("linear", Linear, "fully connected: y = x W + b"),
        PluginSpec("relu", ReLU, "rectified linear unit: max(0, x)"),
        PluginSpec("leaky_relu", LeakyReLU, "x for x > 0, alpha x otherwise"),
        PluginSpec("elu", ELU, "exponential linear unit: x for x > 0, alpha (exp(x) - 1) otherwise"),
        PluginSpec("gelu", GELU, "Gaussian error linear unit x Phi(x), exact or tanh approximation"),
        PluginSpec("sigmoid", Sigmoid, "logistic function 1 / (1 + exp(-x))"),
        PluginSpec("tanh", Tanh, "hyperbolic tangent"),
        PluginSpec("softplus", Softplus, "smooth ReLU: log(1 + exp(beta x)) / beta"),
        PluginSpec("swish", Swish, "x sigmoid(beta x)"),
        PluginSpec("silu", SiLU, "sigmoid linear unit: x sigmoid(x)"),
        PluginSpec("identity", Identity, "passes its input through"),
        PluginSpec("softmax", Softmax, "softmax over the last axis (pair it with the nll loss)"),
        PluginSpec("dropout", Dropout, "inverted dropout: zeroes inputs with probability p while training"),
        PluginSpec("flatten", Flatten, "(batch, *shape) -> (batch, prod(shape))"),
        PluginSpec("batchnorm", BatchNorm, "batch normalisation of (batch, features) over the batch, with running statistics"),
        PluginSpec("layernorm", LayerNorm, "layer normalisation over the last axis"),
    ]
