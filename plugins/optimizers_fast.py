"""The built-in optimizers' fast step: their update in place, over L2-sized pieces of each parameter.

The reference classes (optimizers.py) write each update as its formula, one temporary array per
operation. The mixins here give the same numbers bit for bit (tests/test_fast_variants.py), the same
operations in the same order, but written into the parameter, the state and one scratch array, a
piece of at most CHUNK entries at a time while it sits in the L2 cache. Each is combined with its
reference class in optimizers.py (``FastAdam(InPlaceAdam, Adam)``), which registers those (``FAST``).

What it gains, measured on the 784-512-512-10 MLP, is in docs/benchmarks.md ("Where the time went").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: Entries per piece of an update: every in-place pass over one piece of each array it touches
#: (theta, g, state, scratch: about 5 x 256 KB in float32) stays in the L2 cache.
CHUNK = 1 << 16


class InPlaceSteps:
    """``step`` of a reference optimizer, done by ``update_in_place(theta, g, s, *state)`` per piece.

    ``update_in_place`` computes the reference ``update`` in place on ``theta`` and the state, with
    ``s`` scratch of ``theta``'s shape and dtype; ``g`` (the L2 term added) must not be written to.
    The pieces are flat views of at most CHUNK entries of a large contiguous parameter (the whole
    arrays otherwise), made once per parameter ("plans", not state).
    """

    # from the reference optimizer this is combined with (annotations only: nothing here overrides it)
    lr: float
    weight_decay: float
    steps: int
    l2_in_gradient: bool
    begin_step: Callable[[], None]
    state_of: Callable[[str, np.ndarray], tuple[np.ndarray, ...]]
    update_in_place: Callable[..., None]  # update_in_place(theta, g, s, *state), in each mixin

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)  # the reference optimizer's options
        self._plans: dict[str, tuple] = {}  # name -> (theta, g, pieces, L2 scratch per piece)
        self._scratch: dict[np.dtype, np.ndarray] = {}  # dtype -> (2, CHUNK) array shared by large parameters' pieces

    def step(self, params, grads):
        self.steps += 1
        self.begin_step()
        wd = self.weight_decay if self.l2_in_gradient else 0.0
        update = self.update_in_place
        for name, theta in params.items():
            g = grads[name]
            plan = self._plans.get(name)
            if plan is None or plan[0] is not theta or plan[1] is not g:  # the first step, or new arrays
                plan = self._plans[name] = self.plan(name, theta, g)
            if not wd:
                for theta_p, g_p, s, state in plan[2]:
                    update(theta_p, g_p, s, *state)
                continue
            for (theta_p, g_p, s, state), l2 in zip(plan[2], plan[3]):
                np.multiply(theta_p, wd, out=l2)  # g + weight_decay theta
                update(theta_p, np.add(g_p, l2, out=l2), s, *state)

    def plan(self, name: str, theta: np.ndarray, g: np.ndarray) -> tuple:
        """``(theta, g, pieces, L2 scratch per piece)``, a piece being ``(theta, g, s, state)``: the whole
        arrays, or flat views of at most CHUNK entries when the parameter is larger."""
        state = self.state_of(name, theta)
        arrays = (theta, g, *state)
        if theta.size <= CHUNK or not all(a.flags.c_contiguous for a in arrays):  # the whole arrays at once
            return theta, g, [(theta, g, np.empty_like(theta), state)], [np.empty_like(theta)]
        scratch = self._scratch.get(theta.dtype)
        if scratch is None:
            scratch = self._scratch[theta.dtype] = np.empty((2, CHUNK), theta.dtype)
        flat = [a.reshape(-1) for a in arrays]
        pieces, l2 = [], []
        for start in range(0, theta.size, CHUNK):
            theta_p, g_p, *state_p = (a[start : start + CHUNK] for a in flat)
            pieces.append((theta_p, g_p, scratch[1][: theta_p.size], tuple(state_p)))
            l2.append(scratch[0][: theta_p.size])
        return theta, g, pieces, l2

    def load_state_dict(self, state):
        super().load_state_dict(state)  # type: ignore[misc]
        self._plans = {}  # their views are of the old buffers


class InPlaceSGD(InPlaceSteps):
    def step(self, params, grads):
        if self.weight_decay:
            return super().step(params, grads)
        self.steps += 1
        lr = self.lr
        for name, theta in params.items():  # theta -= lr g: the reference as it is, without a plan
            theta -= lr * grads[name]  # a temporary measured as fast as scratch here (malloc hands back cache-hot memory)

    def update_in_place(self, theta, g, s):
        theta -= np.multiply(g, self.lr, out=s)


class InPlaceMomentum(InPlaceSteps):
    momentum: float

    def update_in_place(self, theta, g, s, v):
        v *= self.momentum  # v = mu v + g
        v += g
        theta -= np.multiply(v, self.lr, out=s)  # theta = theta - lr v


class InPlaceNesterov(InPlaceMomentum):
    def update_in_place(self, theta, g, s, v):
        v *= self.momentum  # v = mu v + g
        v += g
        np.multiply(v, self.momentum, out=s)  # theta = theta - lr (g + mu v)
        s += g
        s *= self.lr
        theta -= s


class InPlaceAdagrad(InPlaceSteps):
    eps: float

    def update_in_place(self, theta, g, s, total):
        total += np.multiply(g, g, out=s)  # sum = sum + g^2
        np.sqrt(total, out=s)  # theta = theta - lr (g / (sqrt(sum) + eps))
        s += self.eps
        np.divide(g, s, out=s)
        s *= self.lr
        theta -= s


class InPlaceRMSprop(InPlaceSteps):
    alpha: float
    eps: float

    def update_in_place(self, theta, g, s, a):
        a *= self.alpha  # a = alpha a + (1 - alpha) g^2
        np.multiply(g, 1 - self.alpha, out=s)
        s *= g
        a += s
        np.sqrt(a, out=s)  # theta = theta - lr (g / (sqrt(a) + eps))
        s += self.eps
        np.divide(g, s, out=s)
        s *= self.lr
        theta -= s


class InPlaceAdam(InPlaceSteps):
    beta1: float
    beta2: float
    eps: float
    step_size: float
    inv_c2: float

    def update_in_place(self, theta, g, s, m, v):
        m *= self.beta1  # m = beta1 m + (1 - beta1) g
        m += np.multiply(g, 1 - self.beta1, out=s)
        v *= self.beta2  # v = beta2 v + (1 - beta2) g^2
        np.multiply(g, 1 - self.beta2, out=s)
        s *= g
        v += s
        np.sqrt(v, out=s)  # theta = theta - step_size (m / (sqrt(v) inv_c2 + eps))
        s *= self.inv_c2
        s += self.eps
        np.divide(m, s, out=s)
        s *= self.step_size
        theta -= s


class InPlaceAdamW(InPlaceAdam):
    def update_in_place(self, theta, g, s, m, v):
        theta *= 1 - self.lr * self.weight_decay  # theta = theta (1 - lr wd)
        super().update_in_place(theta, g, s, m, v)
