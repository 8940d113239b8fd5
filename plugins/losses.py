"""Built-in losses. ``pred`` is (batch, outputs); each returns a float and d(loss)/d(pred)."""
from __future__ import annotations

import numpy as np

from runner.api import Loss, PluginSpec, hookimpl


class MSE(Loss):
    """L = mean((pred - target)^2) over every element; dL/dpred = 2 (pred - target) / size."""

    def forward(self, pred, target):
        self.diff = pred - target
        return float(np.mean(self.diff**2))

    def backward(self):
        return 2.0 * self.diff / self.diff.size


class SumSquared(Loss):
    """Seed-style L2: L = 1/2 sum((pred - target)^2) over the batch; dL/dpred = pred - target."""

    def forward(self, pred, target):
        self.diff = pred - target
        return float(0.5 * np.sum(self.diff**2))

    def backward(self):
        return self.diff


class L1(Loss):
    """L = mean(|pred - target|); dL/dpred = sign(pred - target) / size."""

    def forward(self, pred, target):
        self.diff = pred - target
        return float(np.mean(np.abs(self.diff)))

    def backward(self):
        return np.sign(self.diff) / self.diff.size


class SoftmaxCrossEntropy(Loss):
    """p = softmax(z); L = -mean(log p[target]); dL/dz = (p - onehot) / batch.

    ``target``: integer class indices (batch,) or one-hot / soft labels (batch, classes).
    """

    accepts_class_indices = True

    def forward(self, pred, target):
        z = pred - pred.max(axis=1, keepdims=True)  # stable: exp never overflows
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        self.p = np.exp(log_p)
        n = len(pred)
        if target.ndim == 1:
            self.onehot = np.zeros_like(pred)
            self.onehot[np.arange(n), target] = 1.0
        else:
            self.onehot = target.astype(pred.dtype, copy=False)
        return float(-np.sum(self.onehot * log_p) / n)

    def backward(self):
        return (self.p - self.onehot) / len(self.p)


@hookimpl
def runner_losses():
    return [
        PluginSpec("mse", MSE, "mean squared error"),
        PluginSpec("sum_squared", SumSquared, "1/2 sum of squared errors (seed-style L2)"),
        PluginSpec("l1", L1, "mean absolute error"),
        PluginSpec("softmax_cross_entropy", SoftmaxCrossEntropy, "softmax + cross-entropy on logits"),
    ]
