"""Lion (EvoLved Sign Momentum; Chen et al. 2023, "Symbolic discovery of optimization algorithms")."""

from __future__ import annotations

import numpy as np

from runner.api import Optimizer, option


def _positive(name: str, value) -> float:
    return option(name, value, float, lambda v: v > 0, "a positive number")


def _fraction(name: str, value) -> float:
    return option(name, value, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


class Lion(Optimizer):
    """Per parameter theta with gradient g and momentum m (zeros at first):

        c = beta1 m + (1 - beta1) g
        theta <- theta - lr (sign(c) + weight_decay theta)
        m <- beta2 m + (1 - beta2) g

    Every entry moves by exactly lr (plus the decay): use a learning rate 3-10x smaller than Adam's.
    ``lr`` is read at every step (runner's schedules set it).
    """

    def __init__(self, lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99, weight_decay: float = 0.0):
        self.lr = _positive("lr", lr)
        self.beta1 = _fraction("beta1", beta1)
        self.beta2 = _fraction("beta2", beta2)
        self.weight_decay = option("weight_decay", weight_decay, float, lambda v: v >= 0, "a non-negative number")
        self.m: dict[str, np.ndarray] = {}

    def step(self, params, grads):
        for name, theta in params.items():
            g = grads[name]
            m = self.m.setdefault(name, np.zeros_like(theta))
            c = self.beta1 * m + (1 - self.beta1) * g
            if self.weight_decay:
                theta -= self.lr * self.weight_decay * theta
            theta -= self.lr * np.sign(c)  # in place: the model holds these arrays
            m *= self.beta2
            m += (1 - self.beta2) * g

    def state_dict(self):
        return {"lr": self.lr, "m": {name: m.copy() for name, m in self.m.items()}}

    def load_state_dict(self, state):
        self.lr = _positive("lr", state["lr"])
        self.m = {name: np.array(m, copy=True) for name, m in state["m"].items()}
