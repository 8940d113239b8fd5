"""Built-in optimizers. They update parameters in place, by their stable names."""
from __future__ import annotations

from runner.api import Optimizer, PluginSpec, RunnerError, hookimpl


class SGD(Optimizer):
    """theta <- theta - lr * grad."""

    def __init__(self, lr: float = 0.1):
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise RunnerError(f"lr: expected a positive number, got {lr!r}")
        self.lr = float(lr)

    def step(self, params, grads):
        for name, theta in params.items():
            theta -= self.lr * grads[name]

    def state_dict(self):
        return {"lr": self.lr}

    def load_state_dict(self, state):
        self.lr = float(state["lr"])


@hookimpl
def runner_optimizers():
    return [PluginSpec("sgd", SGD, "plain stochastic gradient descent")]
