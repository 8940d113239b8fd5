"""Batch and layer normalisation."""

from __future__ import annotations

import numpy as np

from runner.api import Layer, RunnerError, option

from .conv import image_shape
from .shape import flat_features


def _mean_var(x: np.ndarray, axis: int | tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance over ``axis``, the mean corrected by a second pass over x - mean:
    for inputs far from 0 (mean 1e5, std 1) the plain mean's rounding error would shift every xhat."""
    mean = x.mean(axis=axis, keepdims=True)
    centered = x - mean
    correction = centered.mean(axis=axis, keepdims=True)
    mean += correction
    centered -= correction
    return mean, np.mean(np.square(centered), axis=axis, keepdims=True)


def _normalize_backward(dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """dx for xhat = (x - mean) inv_std, mean and biased variance over ``axis`` of n entries:

    dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over ``axis``.
    """
    mean_d = dxhat.mean(axis=axis, keepdims=True)
    mean_dx = (dxhat * xhat).mean(axis=axis, keepdims=True)
    return inv_std * (dxhat - mean_d - xhat * mean_dx)


class BatchNorm(Layer):
    """Batch normalisation of (batch, features) over the batch axis (torch's BatchNorm1d).

    Training: mu, var = mean (compensated) and biased variance over the batch; xhat = (x - mu) / sqrt(var + eps);
    y = gamma xhat + beta; running = (1 - momentum) running + momentum batch_stat, with the unbiased
    variance var n / (n - 1) for running_var. Eval: mu, var = running_mean, running_var.
    Backward: dgamma = sum_batch dout xhat, dbeta = sum_batch dout, dxhat = dout gamma;
    training: dx = (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) / sqrt(var + eps); eval: dx = dxhat / sqrt(var + eps).
    Shapes: (batch, features) -> same; gamma, beta, running_mean, running_var: (features,).
    """

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum = option("momentum", momentum, float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        self.eps = option("eps", eps, float, lambda v: v > 0, "a positive number")

    def build(self, input_shape, rng, dtype):
        n = flat_features("batchnorm", input_shape)
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
            mean, var = (a[0] for a in _mean_var(x, axis=0))
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


class BatchNorm2D(Layer):
    """Batch normalisation of images (batch, channels, h, w) per channel, over batch, height and width
    (torch's BatchNorm2d): batchnorm's formulas with the means over (batch, h, w), n = batch h w entries
    per channel (n / (n - 1) for the running variance). gamma, beta, running_mean, running_var: (channels,).
    """

    image_input = True
    AXES = (0, 2, 3)

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum = option("momentum", momentum, float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        self.eps = option("eps", eps, float, lambda v: v > 0, "a positive number")

    def build(self, input_shape, rng, dtype):
        c, _, _ = image_shape("batchnorm2d", input_shape)
        self.params = {"gamma": np.ones(c, dtype), "beta": np.zeros(c, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype)}
        return input_shape

    def forward(self, x, training):
        self.training = training
        per_channel = (1, -1, 1, 1)
        if training:
            n = x.shape[0] * x.shape[2] * x.shape[3]
            if n < 2:
                raise RunnerError(f"batchnorm2d: training needs at least 2 values per channel, got {n}")
            mean, var = (a.reshape(-1) for a in _mean_var(x, axis=self.AXES))
            m, running = self.momentum, self.buffers
            running["running_mean"][...] = (1.0 - m) * running["running_mean"] + m * mean
            running["running_var"][...] = (1.0 - m) * running["running_var"] + m * var * (n / (n - 1))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        self.inv_std = (1.0 / np.sqrt(var + self.eps)).reshape(per_channel)
        self.xhat = (x - mean.reshape(per_channel)) * self.inv_std
        return self.params["gamma"].reshape(per_channel) * self.xhat + self.params["beta"].reshape(per_channel)

    def backward(self, dout):
        self.grads["gamma"][...] = np.sum(dout * self.xhat, axis=self.AXES)
        self.grads["beta"][...] = np.sum(dout, axis=self.AXES)
        dxhat = dout * self.params["gamma"].reshape(1, -1, 1, 1)
        if not self.training:
            return dxhat * self.inv_std
        return _normalize_backward(dxhat, self.xhat, self.inv_std, axis=self.AXES)


class LayerNorm(Layer):
    """Layer normalisation over the last axis (torch's LayerNorm(features)), the same in training and eval.

    mu, var = mean and biased variance over the last axis; xhat = (x - mu) / sqrt(var + eps); y = gamma xhat + beta.
    Backward: dgamma = sum_(all but last) dout xhat, dbeta = sum dout, dxhat = dout gamma,
    dx = (dxhat - mean_last(dxhat) - xhat mean_last(dxhat xhat)) / sqrt(var + eps).
    Shapes: (batch, ..., features) -> same; gamma, beta: (features,).
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = option("eps", eps, float, lambda v: v > 0, "a positive number")

    def build(self, input_shape, rng, dtype):
        n = input_shape[-1]
        self.params = {"gamma": np.ones(n, dtype), "beta": np.zeros(n, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return input_shape

    def forward(self, x, training):
        mean, var = _mean_var(x, axis=-1)
        self.inv_std = 1.0 / np.sqrt(var + self.eps)  # (batch, ..., 1)
        self.xhat = (x - mean) * self.inv_std
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, dout):
        features = dout.shape[-1]
        self.grads["gamma"][...] = np.sum((dout * self.xhat).reshape(-1, features), axis=0)
        self.grads["beta"][...] = np.sum(dout.reshape(-1, features), axis=0)
        return _normalize_backward(dout * self.params["gamma"], self.xhat, self.inv_std, axis=-1)
