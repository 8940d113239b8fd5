"""Built-in optimizers. They update parameters in place, by their stable names.

Each follows torch.optim's update (CPU, default flags), so the same gradients give the same
parameters. Common options: ``lr`` (> 0) and ``weight_decay`` (>= 0): an L2 penalty added to the
gradient, g <- g + weight_decay * theta, except in ``adamw``, which decays the weights directly.

``self.lr`` is a plain attribute, read at every step: the runner changes it for learning-rate
schedules. State buffers (momentum, moment estimates...) are allocated on the first step as zeros
like each parameter, so they keep its dtype; ``state_dict()`` is plain data
(``{"lr": 0.1, "step": 3, "v": {"0.linear.W": array, ...}}``) and ``load_state_dict`` restores it
so that training continues bit-identically.

Each ``update`` is its docstring's formula, line for line. The optimizers registered under these names
are the fast variants at the end of this file (``FAST``, the one place the choice is made): the same
numbers bit for bit, computed in place over L2-sized pieces (optimizers_fast.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.api import Optimizer, PluginSpec, RunnerError, hookimpl, option

from . import optimizers_fast as fast


def positive(name: str, value: Any) -> float:
    return option(name, value, float, lambda v: v > 0, "a positive number")


def in_unit_interval(name: str, value: Any) -> float:
    return option(name, value, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


class BaseOptimizer(Optimizer):
    """What every built-in optimizer shares: ``lr`` and ``weight_decay``, the step count, state buffers.

    A subclass names its state buffers in ``buffer_names`` and implements ``update(theta, g, *state)``:
    one step of its formula for one parameter, ``theta`` and the state buffers (in ``buffer_names``
    order) updated in place, ``g`` the gradient with the L2 term already added (not to be written to).
    ``begin_step`` computes what a step's updates share (bias corrections).
    """

    buffer_names: tuple[str, ...] = ()
    l2_in_gradient = True  # False: the subclass applies weight_decay itself (AdamW)
    update: Callable[..., None]  # update(theta, g, *state), in each subclass

    def __init__(self, lr: float, weight_decay: float = 0.0):
        self.lr = positive("lr", lr)
        self.weight_decay = option("weight_decay", weight_decay, float, lambda v: v >= 0, "a non-negative number")
        self.steps = 0  # steps taken, for bias corrections
        self.buffers: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in self.buffer_names}

    def step(self, params, grads):
        self.steps += 1
        self.begin_step()
        for name, theta in params.items():
            g = grads[name]
            if self.l2_in_gradient and self.weight_decay:
                g = g + self.weight_decay * theta  # the L2 penalty's gradient
            self.update(theta, g, *self.state_of(name, theta))

    def begin_step(self) -> None:
        """Per-step constants, after ``self.steps`` is incremented."""

    def state_of(self, name: str, theta: np.ndarray) -> tuple[np.ndarray, ...]:
        """The state buffers of parameter ``name``, in ``buffer_names`` order."""
        return tuple(self.buffer(kind, name, theta) for kind in self.buffer_names)

    def buffer(self, kind: str, name: str, theta: np.ndarray) -> np.ndarray:
        """State buffer ``kind`` of parameter ``name``: zeros like ``theta`` the first time."""
        buffers = self.buffers[kind]
        if name not in buffers:
            buffers[name] = np.zeros_like(theta)
        return buffers[name]

    def state_dict(self):
        state: dict[str, Any] = {"lr": self.lr, "step": self.steps}
        for kind, buffers in self.buffers.items():
            state[kind] = {name: array.copy() for name, array in buffers.items()}
        return state

    def load_state_dict(self, state):
        missing = [key for key in ("lr", "step", *self.buffer_names) if key not in state]
        if missing:
            raise RunnerError(f"optimizer state: missing {', '.join(map(repr, missing))} for {type(self).__name__}")
        self.lr = positive("lr", state["lr"])
        self.steps = int(state["step"])
        self.buffers = {
            kind: {name: np.array(array, copy=True) for name, array in state[kind].items()} for kind in self.buffer_names
        }


class SGD(BaseOptimizer):
    """Stochastic gradient descent, as torch.optim.SGD:

    g <- g + weight_decay * theta
    theta <- theta - lr * g
    """

    def __init__(self, lr: float = 0.1, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)

    def update(self, theta, g):
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
        self.momentum = in_unit_interval("momentum", momentum)

    def update(self, theta, g, v):
        v[...] = self.momentum * v + g
        theta -= self.lr * v


class Nesterov(Momentum):
    """SGD with Nesterov momentum, as torch.optim.SGD(momentum=mu, nesterov=True):

    g <- g + weight_decay * theta
    v <- mu * v + g
    theta <- theta - lr * (g + mu * v)
    """

    def update(self, theta, g, v):
        v[...] = self.momentum * v + g
        theta -= self.lr * (g + self.momentum * v)


class Adagrad(BaseOptimizer):
    """Adagrad, as torch.optim.Adagrad (lr_decay 0, initial accumulator 0):

    g <- g + weight_decay * theta
    s <- s + g^2
    theta <- theta - lr * (g / (sqrt(s) + eps))
    """

    buffer_names = ("sum",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.eps = positive("eps", eps)

    def update(self, theta, g, s):
        s[...] = s + g * g
        theta -= self.lr * (g / (np.sqrt(s) + self.eps))


class RMSprop(BaseOptimizer):
    """RMSprop, as torch.optim.RMSprop (no momentum, not centered):

    g <- g + weight_decay * theta
    a <- alpha * a + (1 - alpha) * g^2
    theta <- theta - lr * (g / (sqrt(a) + eps))
    """

    buffer_names = ("square_avg",)

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.alpha = in_unit_interval("alpha", alpha)
        self.eps = positive("eps", eps)

    def update(self, theta, g, a):
        a[...] = self.alpha * a + (1 - self.alpha) * g * g
        theta -= self.lr * (g / (np.sqrt(a) + self.eps))


class Adam(BaseOptimizer):
    """Adam, as torch.optim.Adam (amsgrad off), with t the step count from 1:

    g <- g + weight_decay * theta
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    theta <- theta - step_size * (m / (sqrt(v) * inv_c2 + eps))

    with step_size = lr / (1 - beta1^t) and inv_c2 = 1 / sqrt(1 - beta2^t): the bias corrections
    of m and v (m / (1 - beta1^t) and sqrt(v / (1 - beta2^t)) in the paper), one number each per step.
    """

    buffer_names = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = in_unit_interval("beta1", beta1)
        self.beta2 = in_unit_interval("beta2", beta2)
        self.eps = positive("eps", eps)

    def begin_step(self):
        t = self.steps
        self.step_size = self.lr / (1 - self.beta1**t)
        self.inv_c2 = 1 / math.sqrt(1 - self.beta2**t)

    def update(self, theta, g, m, v):
        m[...] = self.beta1 * m + (1 - self.beta1) * g
        v[...] = self.beta2 * v + (1 - self.beta2) * g * g
        theta -= self.step_size * (m / (np.sqrt(v) * self.inv_c2 + self.eps))


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam with decoupled weight decay (default 0.01):

    theta <- theta * (1 - lr * weight_decay)
    then Adam's update with the plain gradient g (no L2 term)
    """

    l2_in_gradient = False

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01
    ):
        super().__init__(lr, beta1, beta2, eps, weight_decay)

    def update(self, theta, g, m, v):
        theta *= 1 - self.lr * self.weight_decay
        super().update(theta, g, m, v)


# --------------------------------------------------------------------------- the fast variants
# Each is its reference class above with optimizers_fast's step: in place over L2-sized pieces, the
# same numbers bit for bit (tests/test_fast_variants.py). Read the classes above for the math.


class FastSGD(fast.InPlaceSGD, SGD):
    """SGD, updated in place (optimizers_fast.InPlaceSGD)."""


class FastMomentum(fast.InPlaceMomentum, Momentum):
    """Momentum, updated in place (optimizers_fast.InPlaceMomentum)."""


class FastNesterov(fast.InPlaceNesterov, Nesterov):
    """Nesterov, updated in place (optimizers_fast.InPlaceNesterov)."""


class FastAdagrad(fast.InPlaceAdagrad, Adagrad):
    """Adagrad, updated in place (optimizers_fast.InPlaceAdagrad)."""


class FastRMSprop(fast.InPlaceRMSprop, RMSprop):
    """RMSprop, updated in place (optimizers_fast.InPlaceRMSprop)."""


class FastAdam(fast.InPlaceAdam, Adam):
    """Adam, updated in place (optimizers_fast.InPlaceAdam)."""


class FastAdamW(fast.InPlaceAdamW, AdamW):
    """AdamW, updated in place (optimizers_fast.InPlaceAdamW)."""


#: name -> the reference class (the math, read these) and a description
OPTIMIZERS = [
    ("sgd", SGD, "plain stochastic gradient descent"),
    ("momentum", Momentum, "SGD with momentum (torch convention, dampening 0)"),
    ("nesterov", Nesterov, "SGD with Nesterov momentum (torch convention)"),
    ("adagrad", Adagrad, "Adagrad: per-entry steps shrinking with the sum of squared gradients"),
    ("rmsprop", RMSprop, "RMSprop: steps scaled by a running mean of squared gradients"),
    ("adam", Adam, "Adam with bias correction; weight_decay as L2 in the gradient"),
    ("adamw", AdamW, "Adam with decoupled weight decay (default 0.01)"),
]

#: The one place the built-in optimizers choose speed: each reference class is registered as its fast
#: variant. ``FAST.clear()`` before runner loads its plugins trains with the reference code.
FAST: dict[type, type] = {
    SGD: FastSGD,
    Momentum: FastMomentum,
    Nesterov: FastNesterov,
    Adagrad: FastAdagrad,
    RMSprop: FastRMSprop,
    Adam: FastAdam,
    AdamW: FastAdamW,
}


@hookimpl
def runner_optimizers():
    return [PluginSpec(name, FAST.get(cls, cls), description) for name, cls, description in OPTIMIZERS]
