"""Squared hinge loss for a binary task's scores."""

from __future__ import annotations

import numpy as np

from runner.api import Loss, RunnerError


class SquaredHinge(Loss):
    """On scores z (batch, 1) and targets t in {0, 1} (or {-1, +1}), averaged over every element:

        s = +1 where t is 1, -1 where t is 0 or -1
        m = max(0, 1 - s z)
        L = mean(m^2)
        dL/dz = -2 s m / size

    Smooth where the hinge has a kink; the class is the sign of z (``binary_threshold`` 0).
    """

    binary_threshold = 0.0

    def forward(self, pred, target):
        t = np.asarray(target)
        bad = ~((t == 0) | (t == 1) | (t == -1))
        if bad.any():
            raise RunnerError(f"squared_hinge: targets must be 0/1 (or -1/+1), got {t[bad].flat[0]!r}")
        self.s = np.where(t > 0, 1, -1).astype(pred.dtype)
        self.margin = np.maximum(1 - self.s * pred, 0)
        return float(np.mean(self.margin**2))

    def backward(self):
        return -2 * self.s * self.margin / self.margin.size
