"""Built-in losses. ``pred`` is (batch, outputs); each returns a float and d(loss)/d(pred).

Every loss is a mean over the batch (over every element for the element-wise ones), as torch's
default ``reduction='mean'``, except ``sum_squared``. Computations stay in ``pred``'s dtype:
float32 in, float32 value (returned as a Python float) and float32 gradient out.
"""

from __future__ import annotations

import numpy as np

from runner.api import Loss, PluginSpec, RunnerError, hookimpl, option


def _like(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``target`` in ``pred``'s dtype (no copy when it already is)."""
    return np.asarray(target).astype(pred.dtype, copy=False)


class MSE(Loss):
    """L = mean((pred - target)^2) over every element; dL/dpred = 2 (pred - target) / size."""

    def forward(self, pred, target):
        self.diff = pred - _like(target, pred)
        return float(np.mean(self.diff**2))

    def backward(self):
        return 2.0 * self.diff / self.diff.size


class SumSquared(Loss):
    """Seed-style L2: L = 1/2 sum((pred - target)^2) over the batch; dL/dpred = pred - target."""

    reduction = "sum"

    def forward(self, pred, target):
        self.diff = pred - _like(target, pred)
        return float(0.5 * (self.diff**2).sum())

    def backward(self):
        return self.diff


class L1(Loss):
    """L = mean(|pred - target|); dL/dpred = sign(pred - target) / size."""

    def forward(self, pred, target):
        self.diff = pred - _like(target, pred)
        return float(np.mean(np.abs(self.diff)))

    def backward(self):
        return np.sign(self.diff) / self.diff.size

    def branches(self, pred, target):  # the kink at pred = target
        return np.sign(pred - _like(target, pred))


def _targets_as_rows(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Class indices (batch,) as one-hot rows; one-hot or soft-label rows (batch, classes) as they are."""
    target = np.asarray(target)
    if target.ndim == 1:
        onehot = np.zeros_like(pred)
        onehot[np.arange(len(pred)), target] = 1.0
        return onehot
    return _like(target, pred)


class SoftmaxCrossEntropy(Loss):
    """Softmax and cross-entropy on logits ``pred`` (batch, classes).

        p = softmax(z);  L = -mean_n sum_k t[n,k] log p[n,k];  dL/dz = (p - t) / batch

    ``target``: integer class indices (batch,) or one-hot / soft labels (batch, classes), as torch's
    ``F.cross_entropy`` takes either. Stable for huge logits: log p = (z - max z) - log sum exp(z - max z).
    """

    accepts_class_indices = True

    def forward(self, pred, target):
        z = pred - pred.max(axis=1, keepdims=True)  # stable: exp never overflows
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        self.p = np.exp(log_p)
        self.onehot = _targets_as_rows(target, pred)
        return float(-(self.onehot * log_p).sum() / len(pred))

    def backward(self):
        return (self.p - self.onehot) / len(self.p)


class NLL(Loss):
    """Negative log-likelihood of probabilities ``pred`` (batch, classes), e.g. a softmax layer's output.

        L = -mean_n sum_k t[n,k] log p[n,k]   (= -mean log p[n, target[n]] for class indices)
        dL/dp = -t / p / batch

    ``target``: integer class indices (batch,) or one-hot rows (batch, classes).
    Unlike torch's ``F.nll_loss``, which takes log-probabilities, this takes probabilities:
    ``nll(p, y) == F.nll_loss(torch.log(p), y)``. A probability that underflowed below the dtype's
    smallest normal number (``np.finfo(dtype).tiny``) is read as that number, so the loss stays
    finite (-log tiny is 87.3 in float32, 708.4 in float64) and such entries get no gradient.
    Prefer ``softmax_cross_entropy`` on logits: it is exact where softmax saturates.
    """

    accepts_class_indices = True

    def forward(self, pred, target):
        self.onehot = _targets_as_rows(target, pred)
        self.tiny = np.finfo(pred.dtype).tiny
        self.p = pred
        log_p = np.log(np.maximum(pred, self.tiny))
        return float(-np.sum(self.onehot * log_p) / len(pred))

    def backward(self):
        p, n = self.p, len(self.p)
        return np.where(p >= self.tiny, -self.onehot / np.maximum(p, self.tiny), 0).astype(p.dtype, copy=False) / n

    def branches(self, pred, target):  # where the clip at tiny starts
        return pred >= np.finfo(pred.dtype).tiny


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on probabilities ``pred`` (e.g. a sigmoid's output), targets in [0, 1], same shape.

        q = clip(p, eps, 1 - eps)
        L = -mean(t log q + (1 - t) log(1 - q))      over every element
        dL/dp = (q - t) / (q (1 - q)) / size  where eps <= p <= 1 - eps, and 0 where p was clipped

    ``eps`` (default 1e-7) keeps the logs finite at p = 0 or 1. torch's ``F.binary_cross_entropy``
    does not clip p; it clamps each log at -100 instead. The two agree exactly for
    eps <= p <= 1 - eps; outside that range this loss is bounded by -log(eps) (16.1) per element
    and has zero gradient, where torch's reaches 100. For a sigmoid output, prefer
    ``bce_with_logits`` on the logits: it needs no clipping.
    """

    def __init__(self, eps: float = 1e-7):
        self.eps = option("eps", eps, float, lambda v: 0 < v < 0.5, "a number in (0, 0.5)")

    def forward(self, pred, target):
        t = _like(target, pred)
        self.inside = (pred >= self.eps) & (pred <= 1 - self.eps)
        q = np.clip(pred, self.eps, 1 - self.eps)
        self.q, self.t = q, t
        return float(-np.mean(t * np.log(q) + (1 - t) * np.log(1 - q)))

    def backward(self):
        q, t = self.q, self.t
        grad = (q - t) / (q * (1 - q)) / q.size
        grad[~self.inside] = 0
        return grad

    def branches(self, pred, target):  # below, inside or above [eps, 1 - eps]
        return np.searchsorted(np.array([self.eps, 1 - self.eps]), pred)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow: exp only ever sees -|z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class BCEWithLogits(Loss):
    """Sigmoid and binary cross-entropy on logits ``pred`` (any shape), targets in [0, 1], same shape.

        L = mean(max(z, 0) - z t + log(1 + exp(-|z|)))   (= BCE of sigmoid(z), written to never overflow)
        dL/dz = (sigmoid(z) - t) / size

    As torch's ``F.binary_cross_entropy_with_logits``; finite and exact for logits of any size.
    A binary task's accuracy reads the logit at 0.
    """

    binary_threshold = 0.0

    def forward(self, pred, target):
        t = _like(target, pred)
        self.z, self.t = pred, t
        return float(np.mean(np.maximum(pred, 0) - pred * t + np.log1p(np.exp(-np.abs(pred)))))

    def backward(self):
        return (_sigmoid(self.z) - self.t) / self.z.size


class Huber(Loss):
    """Huber loss, element-wise with r = pred - target, averaged over every element:

        l(r) = r^2 / 2                  if |r| <= delta
               delta (|r| - delta / 2)   otherwise
        dL/dpred = clip(r, -delta, delta) / size

    As torch's ``F.huber_loss(pred, target, delta=delta)`` (not ``smooth_l1_loss``, which divides by delta).
    """

    def __init__(self, delta: float = 1.0):
        self.delta = option("delta", delta, float, lambda v: v > 0, "a positive number")

    def forward(self, pred, target):
        r = pred - _like(target, pred)
        self.r = r
        a = np.abs(r)
        d = self.delta
        return float(np.mean(np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d))))

    def backward(self):
        return np.clip(self.r, -self.delta, self.delta) / self.r.size

    def branches(self, pred, target):  # quadratic inside [-delta, delta], linear outside
        return np.searchsorted(np.array([-self.delta, self.delta]), pred - _like(target, pred))


class Hinge(Loss):
    """Binary hinge loss on scores ``pred`` (batch, 1), averaged over every element:

        s = +1 where target is 1, -1 where target is 0 (targets already in {-1, +1} are taken as they are)
        L = mean(max(0, 1 - s pred))
        dL/dpred = -s / size where s pred < 1, else 0

    The runner's binary targets are 0/1, so they are mapped to -1/+1; any other target value is a
    RunnerError. Predict the class by the sign of ``pred`` (a linear output, no sigmoid).
    Equals torch's ``torch.clamp(1 - s * pred, min=0).mean()``. Binary only (no multi-class hinge).
    """

    binary_threshold = 0.0

    def forward(self, pred, target):
        t = np.asarray(target)
        if not np.all((t == 0) | (t == 1) | (t == -1)):
            bad = t[~((t == 0) | (t == 1) | (t == -1))].flat[0]
            raise RunnerError(f"hinge: targets must be 0/1 (or -1/+1), got {bad!r}")
        self.s = np.where(t > 0, 1, -1).astype(pred.dtype)
        self.margin = 1 - self.s * pred
        return float(np.mean(np.maximum(self.margin, 0)))

    def backward(self):
        return np.where(self.margin > 0, -self.s, 0).astype(self.s.dtype, copy=False) / self.s.size

    def branches(self, pred, target):  # the kink at margin 1 - s pred = 0
        return 1 - np.where(np.asarray(target) > 0, 1, -1) * pred > 0


@hookimpl
def runner_losses():
    return [
        PluginSpec("mse", MSE, "mean squared error"),
        PluginSpec("sum_squared", SumSquared, "1/2 sum of squared errors (seed-style L2)"),
        PluginSpec("l1", L1, "mean absolute error"),
        PluginSpec("softmax_cross_entropy", SoftmaxCrossEntropy, "softmax + cross-entropy on logits (class indices or one-hot)"),
        PluginSpec("nll", NLL, "negative log-likelihood of probabilities, e.g. after a softmax layer"),
        PluginSpec("binary_cross_entropy", BinaryCrossEntropy, "binary cross-entropy on probabilities, clipped to [eps, 1-eps]"),
        PluginSpec("bce_with_logits", BCEWithLogits, "sigmoid + binary cross-entropy on logits, stable"),
        PluginSpec("huber", Huber, "Huber loss: squared within delta, absolute beyond (mean)"),
        PluginSpec("hinge", Hinge, "binary hinge loss mean(max(0, 1 - s*pred)), 0/1 targets as -1/+1"),
    ]
