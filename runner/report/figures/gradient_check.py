"""The run's gradient check drawn and tabled from its ``gradcheck/*`` metrics (runner.core.gradcheck.run):
one row per checked array, grouped by layer (tables/gradcheck.*), and the relative errors as bars on a log
axis against the threshold (plots/gradcheck.png)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runner.report.figures.canvas import figure, log_scale, margins, save, text_width

#: the floor of the gradient check's log axis: a relative error of exactly 0 is drawn here
REL_ERROR_FLOOR = 1e-16

SUMMARY_METRICS = ("max_rel_error", "kinks_skipped")


def gradcheck_rows(metrics: Mapping[str, float], nodes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The run's gradcheck/* metrics as rows, grouped by layer (the loss after the layers), each
    layer's own checks before its parameters' end-to-end ones:

        gradcheck/1.softsign.x/rel_error        layer 1 alone, d(input)
        gradcheck/loss.mse.pred/rel_error       the loss alone
        gradcheck/model/0.linear.W/rel_error    parameter W of layer 0, through the loss

    ``nodes``: a graph's node names in run order (``gradcheck/h1.linear.W/...``), ordered so.
    """
    rank = {name: k for k, name in enumerate(nodes or ())}
    found: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if not key.startswith("gradcheck/"):
            continue
        name, _, stat = key.removeprefix("gradcheck/").rpartition("/")
        end_to_end = name.startswith("model/")
        array_name = name.removeprefix("model/")
        if stat not in ("rel_error", "max_abs_diff") or array_name in SUMMARY_METRICS or array_name.count(".") < 2:
            continue
        index, layer_type, array = array_name.split(".", 2)
        row = found.setdefault(
            name,
            {"metric": name, "layer": f"{index}.{layer_type}", "array": array, "check": "end to end" if end_to_end else "alone"},
        )
        row[stat] = float(value)

    def order(row: dict[str, Any]) -> tuple:
        index = row["layer"].split(".")[0]
        position = int(index) if index.isdigit() else rank.get(index, 1 << 30)
        array = row["array"]
        return (position, row["check"] != "alone", not (array == "x" or (array[:1] == "x" and array[1:].isdigit())))

    return sorted((r for r in found.values() if {"rel_error", "max_abs_diff"} <= set(r)), key=order)


def gradcheck_table(rows: Sequence[Mapping[str, Any]], threshold: float, shapes: Mapping[str, tuple[int, ...]] | None = None):
    """One row per checked array: layer, array (``x`` is d(input)), check (alone / end to end), shape,
    relative error, max |numerical - analytic|, passed; ``rows`` as from ``gradcheck_rows``.
    ``shapes``: metric name (``1.softsign.x``, ``model/0.linear.W``) -> shape, where known."""
    import pandas as pd

    table = []
    for row in rows:
        out: dict[str, Any] = {"metric": row["metric"], "layer": row["layer"], "array": row["array"], "check": row["check"]}
        if shapes is not None:
            out["shape"] = "x".join(map(str, shapes.get(row["metric"], ()))) or "-"
        out["rel_error"] = float(row["rel_error"])
        out["max_abs_diff"] = float(row["max_abs_diff"])
        out["passed"] = bool(out["rel_error"] <= threshold)
        table.append(out)
    columns = [
        "metric",
        "layer",
        "array",
        "check",
        *(["shape"] if shapes is not None else []),
        "rel_error",
        "max_abs_diff",
        "passed",
    ]
    return pd.DataFrame(table, columns=columns)


def plot_gradcheck(table, threshold: float, path: Path, title: str = "") -> Path:
    """Relative error per checked array as horizontal bars on a log axis, grouped by layer (bands),
    the threshold as a line: green passed, red failed; a layer's own checks solid, end-to-end ones
    lighter (a relative error of 0 is drawn at REL_ERROR_FLOOR)."""
    fig = figure("gradcheck")
    ax = fig.add_subplot(1, 1, 1)
    n = len(table)
    exact = np.asarray(table["rel_error"], dtype=float) if n else np.array([])
    errors = np.maximum(exact, REL_ERROR_FLOOR)
    alone = [c == "alone" for c in table["check"]] if n else []
    names = (
        [f"{layer} {array}" + ("" if a else " (end to end)") for layer, array, a in zip(table["layer"], table["array"], alone)]
        if n
        else []
    )
    colors = [("tab:green" if e <= threshold else "tab:red") for e in exact]
    positions = np.arange(n)[::-1]  # the first layer on top
    ax.barh(positions, errors, color=colors, alpha=None, left=REL_ERROR_FLOOR)
    for bar, a in zip(ax.patches, alone):
        if not a:
            bar.set_alpha(0.45)
    layers = list(table["layer"]) if n else []
    for k, layer in enumerate(dict.fromkeys(layers)):  # a light band behind every other layer's rows
        rows = [positions[i] for i, name in enumerate(layers) if name == layer]
        if k % 2:
            ax.axhspan(min(rows) - 0.5, max(rows) + 0.5, color="0.93", zorder=0)
    log_scale(ax, "x", minor=False)  # 6 decades and more: the major ticks say it
    small = n > 20
    ax.set_yticks(positions, names, fontsize=6 if small else 8)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.0e}")
    low = min([threshold, *errors]) if n else threshold
    high = max([threshold, *errors]) if n else threshold
    ax.set_xlim(max(REL_ERROR_FLOOR / 10, low / 100), high * 100)
    for y, e, value in zip(positions, errors, exact):
        ax.text(e * 1.3, y, f"{value:.1e}" if value > 0 else "0 (exact)", va="center", fontsize=6 if small else 8)
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_xlabel("relative error of backprop vs central differences (docs/numerics.md), log scale")
    worst = float(np.max(exact)) if n else 0.0
    verdict = "passed" if worst <= threshold else "FAILED"
    ax.set_title(title or f"gradient check {verdict}: max relative error {worst:.2e} over {n} arrays (x: d(input))", y=1.0)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    margins(fig, left=text_width(names, 6 if small else 8) + 25, right=25, bottom=52, top=32)
    return save(fig, path)
