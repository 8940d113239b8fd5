"""Warnings a learner can act on, raised from the watched points: one line each, once per run and array.

A condition must hold at ``PATIENCE`` watched points in a row (a few noisy batches are not a trend):

    dead_relu       more than half of a ReLU layer's units dead (``dead_fraction`` > 0.5)
    update_ratio    a weight matrix's ``update_ratio`` more than 30x away from the often quoted 1e-3
                    (below 3e-5: it barely learns; above 3e-2: each step rewrites much of it)
    vanishing       the gradient norm of the first weight matrix (nearest the input) below 1/100 of the last's
    exploding       the first's above 100 times the last's, or a gradient that is not finite

Each warning is recorded with the step it was raised at: the run tags it (``runner.watch.warnings``) and the
pictures mark it there.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger("runner.watch")

PATIENCE = 5
DEAD = 0.5
RATIO_BAND = (3e-5, 3e-2)
FLOW_BAND = (1e-2, 1e2)

ADVICE = {
    "dead_relu": "try a smaller optimizer.lr, He init (model.linear.init=he_normal) or leaky_relu",
    "update_ratio": "the learning rate is {direction} for this layer (optimizer.lr), or its init scale is off",
    "vanishing": "gradients fade on their way back: try relu with He init, a normalisation layer or fewer layers",
    "exploding": "gradients grow on their way back: try a smaller optimizer.lr, trainer.clip_grad_norm or a normalisation layer",
}


class Alerts:
    """``check(step, point, rectifiers, matrices)`` after each watched step; ``raised`` holds the warnings,
    as ``{"kind", "name", "step", "message"}``, in the order they were raised."""

    def __init__(self) -> None:
        self.streaks: dict[str, int] = {}
        self.raised: list[dict] = []

    def check(self, step: int, point: dict[str, float], rectifiers: list[str], matrices: list[str]) -> None:
        for label in rectifiers:
            dead = point.get(f"watch/{label}/dead_fraction", 0.0)
            self._hold(step, "dead_relu", label, dead > DEAD, f"{dead:.0%} of its units are dead (0 for every sample of a batch)")
        for name in matrices:
            ratio = point.get(f"watch/{name}/update_ratio")
            if ratio is None:  # not measured at this step (weights that were all zero): the streak goes on
                continue
            far = not RATIO_BAND[0] <= ratio <= RATIO_BAND[1]
            direction = "too large" if ratio > RATIO_BAND[1] else "too small"
            self._hold(step, "update_ratio", name, far, f"update ratio {ratio:.1e}, far from 1e-3", direction=direction)
        if len(matrices) >= 2:
            first, last = (point[f"watch/{name}/grad_norm"] for name in (matrices[0], matrices[-1]))
            flow = first / last if last > 0 else math.inf
            where = f"{matrices[0]} vs {matrices[-1]}"
            self._hold(
                step,
                "vanishing",
                where,
                flow < FLOW_BAND[0],
                f"the gradient norm falls {flow:.1e}x from the last layer to the first",
            )
            exploding = flow > FLOW_BAND[1] or not math.isfinite(first)
            self._hold(
                step, "exploding", where, exploding, f"the gradient norm grows {flow:.1e}x from the last layer to the first"
            )

    def _hold(self, step: int, kind: str, name: str, holds: bool, what: str, direction: str = "") -> None:
        key = f"{kind}:{name}"
        self.streaks[key] = self.streaks.get(key, 0) + 1 if holds else 0
        if self.streaks[key] != PATIENCE:
            return
        if any(w["kind"] == kind and w["name"] == name for w in self.raised):
            return  # once per run and array
        advice = ADVICE[kind].format(direction=direction)
        message = f"watch: {name}: {what} for {PATIENCE} watched steps in a row (at step {step}); {advice}"
        self.raised.append({"kind": kind, "name": name, "step": step, "message": message})
        log.warning(message)

    def state_dict(self) -> dict:
        return {"streaks": dict(self.streaks), "raised": [dict(w) for w in self.raised]}

    def load_state_dict(self, state: dict) -> None:
        self.streaks = {str(k): int(v) for k, v in state.get("streaks", {}).items()}
        self.raised = [dict(w) for w in state.get("raised", [])]
