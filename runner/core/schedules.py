"""Learning-rate schedules: the learning rate for optimizer step t = 1 .. T, from the base rate lr0.

    constant       lr(t) = lr0
    step           lr(t) = lr0 * gamma ** floor((t - 1) / step_size)
    cosine         lr(t) = min_lr + (lr0 - min_lr) * (1 + cos(pi * (t - w - 1) / (T - w - 1))) / 2  after w warm-up
                   steps: lr0 at step w + 1, min_lr at the last step T
    linear_warmup  lr(t) = lr0 * min(1, t / w)

Warm-up (``warmup`` = w steps, also available in cosine) ramps linearly: lr0 / w at step 1, lr0 at step w.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from runner.api import RunnerError, option

Schedule = Callable[[int], float]


def _steps(key: str, value: Any, minimum: int = 0) -> int:
    return option(f"schedule.{key}", value, int, lambda v: v >= minimum, f"a whole number of steps >= {minimum}")


def constant(lr0: float, total: int) -> Schedule:
    return lambda t: lr0


def step(lr0: float, total: int, step_size: int = 1000, gamma: float = 0.5) -> Schedule:
    step_size = _steps("step_size", step_size, 1)
    gamma = option("schedule.gamma", gamma, float, lambda v: 0 < v <= 1, "a factor in (0, 1]")
    return lambda t: lr0 * gamma ** ((t - 1) // step_size)


def cosine(lr0: float, total: int, min_lr: float = 0.0, warmup: int = 0) -> Schedule:
    warmup = _steps("warmup", warmup)
    min_lr = option("schedule.min_lr", min_lr, float, lambda v: 0 <= v <= lr0, f"a number in [0, optimizer.lr={lr0}]")
    span = max(total - warmup - 1, 1)

    def lr(t: int) -> float:
        if t <= warmup:
            return lr0 * t / warmup
        return min_lr + (lr0 - min_lr) * (1 + math.cos(math.pi * min(t - warmup - 1, span) / span)) / 2

    return lr


def linear_warmup(lr0: float, total: int, warmup: int = 500) -> Schedule:
    warmup = _steps("warmup", warmup, 1)
    return lambda t: lr0 * min(1.0, t / warmup)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "step": step,
    "cosine": cosine,
    "linear_warmup": linear_warmup,
}


def make_schedule(name: str, lr0: float, total: int, options: dict[str, Any]) -> Schedule:
    """The schedule ``name`` for a base rate ``lr0`` over ``total`` steps; bad options name the key."""
    if name not in SCHEDULES:
        raise RunnerError(f"schedule.name: unknown schedule {name!r}; available: {', '.join(SCHEDULES)}")
    try:
        return SCHEDULES[name](lr0, total, **options)
    except TypeError as e:
        raise RunnerError(f"schedule ({name}): {e}") from None
