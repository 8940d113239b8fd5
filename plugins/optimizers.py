"""Built-in optimizers. They update parameters in place, by their stable names.

Each follows torch.optim's update (CPU, default flags), so the same gradients give the same
parameters. Common options: ``lr`` (> 0) and ``weight_decay`` (>= 0): an L2 penalty added to the
gradient, g <- g + weight_decay * theta, except in ``adamw``, which decays the weights directly.

``self.lr`` is a plain attribute, read at every step: the runner changes it for learning-rate
schedules. State buffers (momentum, moment estimates...) are allocated on the first step as zeros
like each parameter, so they keep its dtype; ``state_dict()`` is plain data
(``{"lr": 0.1, "step": 3, "v": {"0.linear.W": array, ...}}``) and ``load_state_dict`` restores it
so that training continues bit-identically.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from runner.api import Optimizer, PluginSpec, RunnerError, hookimpl


def check_number(name: str, value: Any, low: float, high: float = math.inf, low_inclusive: bool = False) -> float:
    """``value`` as a float in (low, high) -- [low, high) with ``low_inclusive`` -- or a RunnerError naming it."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and (low <= value if low_inclusive else low < value)
        and value < high
    )
    if not ok:
        if (low, high) == (0, math.inf):
            expected = "a non-negative number" if low_inclusive else "a positive number"
        else:
            expected = f"a number in {'[' if low_inclusive else '('}{low:g}, {high:g})"
        raise RunnerError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


class BaseOptimizer(Optimizer):
    """What every built-in optimizer shares: ``lr`` and ``weight_decay``, the step count, state buffers.

    A subclass names its buffers in ``buffer_names`` and implements ``update`` for one parameter.
    """

    buffer_names: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0):
        self.lr = check_number("lr", lr, 0)
        self.weight_decay = check_number("weight_decay", weight_decay, 0, low_inclusive=True)
        self.steps = 0  # steps taken, for bias corrections
        self.buffers: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in self.buffer_names}

    def step(self, params, grads):
        self.steps += 1
        for name, theta in params.items():
            self.update(name, theta, grads[name])

    def update(self, name: str, theta: np.ndarray, g: np.ndarray) -> None:
        """Update ``theta`` in place from its gradient ``g`` (never modify ``g``: it is the model's)."""
        raise NotImplementedError

    def buffer(self, kind: str, name: str, theta: np.ndarray) -> np.ndarray:
        """State buffer ``kind`` of parameter ``name``: zeros like ``theta`` the first time."""
        buffers = self.buffers[kind]
        if name not in buffers:
            buffers[name] = np.zeros_like(theta)
        return buffers[name]

    def with_l2(self, theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        """g + weight_decay * theta (a new array; ``g`` itself when there is no weight decay)."""
        return g + self.weight_decay * theta if self.weight_decay else g

    def state_dict(self):
        state: dict[str, Any] = {"lr": self.lr, "step": self.steps}
        for kind, buffers in self.buffers.items():
            state[kind] = {name: array.copy() for name, array in buffers.items()}
        return state

    def load_state_dict(self, state):
        missing = [key for key in ("lr", "step", *self.buffer_names) if key not in state]
        if missing:
            raise RunnerError(f"optimizer state: missing {', '.join(map(repr, missing))} for {type(self).__name__}")
        self.lr = check_number("lr", state["lr"], 0)
        self.steps = int(state["step"])
        self.buffers = {kind: {name: np.array(array, copy=True) for name, array in state[kind].items()} for kind in self.buffer_names}


class SGD(BaseOptimizer):
    """Stochastic gradient descent, as torch.optim.SGD:

        g <- g + weight_decay * theta
        theta <- theta - lr * g
    """

    def __init__(self, lr: float = 0.1, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)

    def update(self, name, theta, g):
        g = self.with_l2(theta, g)
        theta -= self.lr * g


class Momentum(BaseOptimizer):
    """SGD with (heavy-ball) momentum, as torch.optim.SGD(momentum=mu) with dampening 0:

        g <- g + weight_decay * theta
        v <- mu * v + g          (v starts at 0, so v = g after the first step)
        theta <- theta - lr * v
    """

    buffer_names = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.momentum = check_number("momentum", momentum, 0, 1, low_inclusive=True)

    def update(self, name, theta, g):
        g = self.with_l2(theta, g)
        v = self.buffer("v", name, theta)
        v *= self.momentum  # v = mu v + g
        v += g
        theta -= self.lr * v


class Nesterov(Momentum):
    """SGD with Nesterov momentum, as torch.optim.SGD(momentum=mu, nesterov=True):

        g <- g + weight_decay * theta
        v <- mu * v + g
        theta <- theta - lr * (g + mu * v)
    """

    def update(self, name, theta, g):
        g = self.with_l2(theta, g)
        v = self.buffer("v", name, theta)
        v *= self.momentum  # v = mu v + g
        v += g
        theta -= self.lr * (g + self.momentum * v)


class Adagrad(BaseOptimizer):
    """Adagrad, as torch.optim.Adagrad (lr_decay 0, initial accumulator 0):

        g <- g + weight_decay * theta
        s <- s + g^2
        theta <- theta - lr * g / (sqrt(s) + eps)
    """

    buffer_names = ("sum",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.eps = check_number("eps", eps, 0)

    def update(self, name, theta, g):
        g = self.with_l2(theta, g)
        s = self.buffer("sum", name, theta)
        s += g * g  # s = s + g^2
        theta -= self.lr * (g / (np.sqrt(s) + self.eps))


class RMSprop(BaseOptimizer):
    """RMSprop, as torch.optim.RMSprop (no momentum, not centered):

        g <- g + weight_decay * theta
        a <- alpha * a + (1 - alpha) * g^2
        theta <- theta - lr * g / (sqrt(a) + eps)
    """

    buffer_names = ("square_avg",)

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.alpha = check_number("alpha", alpha, 0, 1, low_inclusive=True)
        self.eps = check_number("eps", eps, 0)

    def update(self, name, theta, g):
        g = self.with_l2(theta, g)
        a = self.buffer("square_avg", name, theta)
        a *= self.alpha  # a = alpha a + (1 - alpha) g^2
        a += (1 - self.alpha) * g * g
        theta -= self.lr * (g / (np.sqrt(a) + self.eps))


class Adam(BaseOptimizer):
    """Adam, as torch.optim.Adam (amsgrad off), with t the step count from 1:

        g <- g + weight_decay * theta
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    buffer_names = ("m", "v")
    decoupled = False  # AdamW: decay the weights directly instead of adding L2 to the gradient

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = check_number("beta1", beta1, 0, 1, low_inclusive=True)
        self.beta2 = check_number("beta2", beta2, 0, 1, low_inclusive=True)
        self.eps = check_number("eps", eps, 0)

    def update(self, name, theta, g):
        if self.decoupled:
            theta *= 1 - self.lr * self.weight_decay  # theta = theta - lr wd theta
        else:
            g = self.with_l2(theta, g)
        m = self.buffer("m", name, theta)
        v = self.buffer("v", name, theta)
        m *= self.beta1  # m = beta1 m + (1 - beta1) g
        m += (1 - self.beta1) * g
        v *= self.beta2  # v = beta2 v + (1 - beta2) g^2
        v += (1 - self.beta2) * g * g
        t = self.steps
        step_size = self.lr / (1 - self.beta1**t)
        denom = np.sqrt(v) / math.sqrt(1 - self.beta2**t) + self.eps
        theta -= step_size * (m / denom)


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam with decoupled weight decay (default 0.01):

        theta <- theta - lr * weight_decay * theta
        then Adam's update with the plain gradient g (no L2 term)
    """

    decoupled = True

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay)


@hookimpl
def runner_optimizers():
    return [
        PluginSpec("sgd", SGD, "plain stochastic gradient descent"),
        PluginSpec("momentum", Momentum, "SGD with momentum (torch convention, dampening 0)"),
        PluginSpec("nesterov", Nesterov, "SGD with Nesterov momentum (torch convention)"),
        PluginSpec("adagrad", Adagrad, "Adagrad: per-entry steps shrinking with the sum of squared gradients"),
        PluginSpec("rmsprop", RMSprop, "RMSprop: steps scaled by a running mean of squared gradients"),
        PluginSpec("adam", Adam, "Adam with bias correction; weight_decay as L2 in the gradient"),
        PluginSpec("adamw", AdamW, "Adam with decoupled weight decay (default 0.01)"),
    ]
