"""The config section ``watch``, checked: whether the watch runs, and how often and how finely it looks."""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner.api import option


@dataclass(frozen=True)
class WatchConfig:
    """``enabled``: watch at all (false: the loop runs exactly as without a watch, at no cost).
    ``every``: steps between watched steps; null: about ``points`` per run (``interval``).
    ``sample``: at most this many entries of an array are binned per watched step.
    ``bins``: histogram bins per array (plus an underflow and an overflow bin), a multiple of 4: a range that
    doubles sums its bins pairwise (runner.core.watch.histograms)."""

    enabled: bool = True
    every: int | None = None
    points: int = 50
    sample: int = 4096
    bins: int = 40

    def validate(self) -> None:
        option("watch.enabled", self.enabled, bool)
        option(
            "watch.every",
            self.every,
            int,
            lambda v: v > 0,
            "a positive number of steps or null (about watch.points)",
            or_none=True,
        )
        for key in ("points", "sample"):
            option(f"watch.{key}", getattr(self, key), int, lambda v: v > 0, "a positive integer")
        option("watch.bins", self.bins, int, lambda v: v > 0 and v % 4 == 0, "a positive multiple of 4")

    def interval(self, total_steps: int) -> int:
        """Steps between watched steps: ``every``, or ceil(total / points) so that a run has about ``points``."""
        return self.every if self.every is not None else max(1, math.ceil(total_steps / self.points))

    def due(self, step: int, interval: int, total_steps: int) -> bool:
        """Watched: the first step (the network as initialised), every ``interval``-th, and the last."""
        return step == 1 or step % interval == 0 or step == total_steps
