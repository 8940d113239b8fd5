"""What a run checks before it trains, what it records and what it says when the check fails.

``check_run`` checks each layer alone, the loss alone and every parameter end to end (runner.core.gradcheck.parts)
and returns one ``Row`` per array; ``metrics_of`` turns the rows into the ``gradcheck/*`` metrics, and
``failure_message`` into the one line that names the culprit first (runner.run.record).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.api import Loss
from runner.core.gradcheck.differences import Check
from runner.core.gradcheck.parts import check_layers, check_loss_at, check_model, is_graph


@dataclass(frozen=True)
class Row:
    """One array's check in a run: layer ``layer`` (its ``type``), array ``array`` ("x" for d(input),
    else the parameter key), at ``level`` "layer" (the layer alone) or "model" (the loss, end to end)."""

    layer: int | str | None  # a chain's layer index, a graph's node name; None: the loss
    type: str
    array: str
    level: str
    check: Check

    @property
    def name(self) -> str:
        return f"loss.{self.type}.{self.array}" if self.layer is None else f"{self.layer}.{self.type}.{self.array}"

    @property
    def metric(self) -> str:
        """``gradcheck/1.softsign.x`` for a layer alone, ``gradcheck/model/0.linear.W`` end to end."""
        return f"gradcheck/model/{self.name}" if self.level == "model" else f"gradcheck/{self.name}"


def check_run(
    model,
    loss: Loss,
    x: np.ndarray,
    target: np.ndarray,
    eps: float = 1e-5,
    max_entries: int | None = 64,
    seed: int = 0,
    loss_name: str = "loss",
) -> list[Row]:
    """What a run checks before it trains: each layer alone, the loss alone (its row's ``layer`` is
    None), then every parameter through the loss.

    Layers whose d(input) nobody uses are checked all the same: a wrong one would go unnoticed
    until the layer is used elsewhere.
    """
    rows = []
    labels: list[int | str] = list(model.names) if is_graph(model) else list(range(len(model.layers)))
    for label, layer_type, checks in zip(labels, model.types, check_layers(model, x, eps, max_entries, seed)):
        rows += [Row(label, layer_type, key, "layer", c) for key, c in checks.items()]
    rows.append(Row(None, loss_name, "pred", "layer", check_loss_at(model, loss, x, target, eps, max_entries, seed)))
    for name, c in check_model(model, loss, x, target, eps, max_entries, seed).items():
        index, layer_type, key = name.split(".", 2)
        rows.append(Row(int(index) if index.isdigit() else index, layer_type, key, "model", c))
    return rows


# --------------------------------------------------------------------------- what a run records and says


def metrics_of(rows: list[Row]) -> dict[str, float]:
    """``gradcheck/<layer>.<type>.<array>/rel_error`` and ``/max_abs_diff`` per row, and the summary:
    ``gradcheck/max_rel_error`` (all rows), ``gradcheck/model/max_rel_error``, ``gradcheck/kinks_skipped``."""
    metrics = {}
    for row in rows:
        metrics[f"{row.metric}/rel_error"] = row.check.rel_error
        metrics[f"{row.metric}/max_abs_diff"] = row.check.max_abs_diff
    metrics["gradcheck/max_rel_error"] = max((r.check.rel_error for r in rows), default=0.0)
    metrics["gradcheck/model/max_rel_error"] = max((r.check.rel_error for r in rows if r.level == "model"), default=0.0)
    metrics["gradcheck/kinks_skipped"] = sum(r.check.kinks for r in rows)
    return metrics


def describe(row: Row, origins: dict) -> str:
    """``layer 1 (softsign, from runner-softsign 0.1.0 (runner_softsign)) d(input) x``, and the like
    (a graph's ``node h1 (linear, ...)``, its merge inputs ``d(input 0) x0``)."""
    origin = f", from {origins[row.layer]}" if origins.get(row.layer) else ""
    if row.layer is None:
        return f"loss {row.type}{origin} d(loss)/d(pred)"
    merged = row.array[1:].isdigit() and row.array.startswith("x")
    what = "d(input) x" if row.array == "x" else f"d(input {row.array[1:]}) {row.array}" if merged else f"parameter {row.array}"
    where = "end to end, through the loss: " if row.level == "model" else ""
    kind = "node" if isinstance(row.layer, str) else "layer"
    return f"{where}{kind} {row.layer} ({row.type}{origin}) {what}"


def failure_message(rows: list[Row], threshold: float, origins: dict) -> str | None:
    """None when every row passes; else one line that names the culprit first.

    A layer or loss that fails alone is the culprit (its own backward is wrong); end-to-end failures
    then follow from it. When only end-to-end rows fail, each part passed alone: the parts compose
    wrongly (a layer reading parameters it does not own, state kept between calls).
    """
    failed = [r for r in rows if r.check.rel_error > threshold]
    if not failed:
        return None
    alone = [r for r in failed if r.level == "layer"]
    first = (alone or failed)[0]
    line = (
        f"gradient check failed: {describe(first, origins)}: relative error {first.check.rel_error:.2e} "
        f"> gradcheck.threshold {threshold:.0e} (metric {first.metric}/rel_error)"
    )
    others = [r for r in failed if r is not first]
    if others:
        shown = ", ".join(f"{r.metric.removeprefix('gradcheck/')} {r.check.rel_error:.1e}" for r in others[:4])
        line += f"; also {shown}" + (f" and {len(others) - 4} more" if len(others) > 4 else "")
    if not alone:
        line += "; every layer and the loss pass alone, so look at how they work together (state shared between calls)"
    return line
