"""The run's training curves: loss and accuracy (or mae) against the step, train vs val
(plots/training_curves.png)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.report.figures.canvas import figure, log_scale, margins, save

#: the history of one metric: [(step, value), ...]
History = Mapping[str, Sequence[tuple[int, float]]]


def training_curves(history: History, path: Path, title: str = "") -> Path:
    """Loss (left) and accuracy or mae (right) against the training step: train vs val.

    ``history``: metric key -> [(step, value), ...], e.g. ``{"train/loss": [(10, 2.1), ...],
    "val/loss": [(550, 0.35)], "val/accuracy": [...]}``; missing keys are left out.
    """
    fig = figure("training_curves")
    panels = [("loss", "loss"), ("accuracy", "accuracy")]
    if not any(history.get(f"{s}/accuracy") for s in ("train", "val")) and any(history.get(f"{s}/mae") for s in ("train", "val")):
        panels[1] = ("mae", "mean absolute error")
    axes = fig.subplots(1, 2)
    styles = {"train": dict(color="tab:blue"), "val": dict(color="tab:orange")}  # the test split stays unseen
    for ax, (key, label) in zip(axes, panels):
        drawn = 0
        for split, style in styles.items():
            points = sorted(history.get(f"{split}/{key}") or [])
            if not points:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, label=f"{split}/{key}", marker="o" if len(points) <= 30 else None, markersize=3, **style)
            drawn += 1
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(label, y=1.0)  # a fixed y: no search for tick labels above the axes
        ax.grid(True, alpha=0.3)
        if key == "loss" and drawn and all(v > 0 for split in styles for _, v in history.get(f"{split}/loss") or []):
            losses = [v for split in styles for _, v in history.get(f"{split}/loss") or []]
            if max(losses) / min(losses) > 30:
                log_scale(ax, "y")
        if drawn:
            ax.legend(loc="best", fontsize=9)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
    if title:
        fig.suptitle(title)
    margins(fig, left=75, right=15, bottom=50, top=60 if title else 32, gap=85, columns=2)
    return save(fig, path)
