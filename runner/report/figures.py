"""Pictures and tables of one run, from plain data: what its MLflow run page shows at a glance.

Every function takes arrays, dicts and names (no MLflow, no model) and writes one file, so each
is tested on small synthetic data. matplotlib (Agg, headless) and pandas are imported inside the
functions: neither is on the import path of ``python -m runner`` until a run reports.

Figures have fixed sizes in pixels (``SIZES``): the tests check them.

    training_curves(history, path)                 plots/training_curves.png
    confusion_matrix(y_true, y_pred, n) + plot_confusion_matrix(...)  plots/confusion_matrix.png
    misclassified_grid(images, y_true, y_pred, classes, path)        plots/misclassified.png
    gradcheck_rows(metrics) -> gradcheck_table -> plot_gradcheck  plots/gradcheck.png, tables/gradcheck.*
    per_class_table(y_true, y_pred, classes)                          tables/per_class.*
    model_summary(model)                                              summary.txt
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: dots per inch of every figure, and each figure's (width, height) in pixels
DPI = 100
SIZES = {
    "training_curves": (1200, 450),
    "confusion_matrix": (700, 600),
    "misclassified": (700, 860),
    "gradcheck": (900, 500),
}
#: the floor of the gradient check's log axis: a relative error of exactly 0 is drawn here
REL_ERROR_FLOOR = 1e-16


def _figure(kind: str):
    """A figure of ``SIZES[kind]`` pixels on an Agg canvas: matplotlib's object API, not pyplot (whose
    import and figure manager cost a few tenths of a second and which nothing here needs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = SIZES[kind]
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _margins(fig, left: float, right: float, bottom: float, top: float, gap: float = 0.0, columns: int = 1) -> None:
    """Fixed margins (and the gap between ``columns`` side by side) in pixels: no tight_layout, which
    lays every text out once more before the save (about a third of a figure's drawing time)."""
    width, height = fig.get_size_inches() * fig.dpi
    axes_width = (width - left - right - gap * (columns - 1)) / columns
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height, wspace=gap / axes_width
    )


def _text_width(labels: Sequence[str], fontsize: float) -> float:
    """About how many pixels the longest of ``labels`` takes at ``fontsize`` points (DejaVu Sans)."""
    return max((len(str(label)) for label in labels), default=0) * fontsize * 0.62 * DPI / 72


def _log_scale(ax, which: str, minor: bool = True) -> None:
    """``ax``'s x or y axis on a log scale whose tick labels read 0.5, 1, 1e-06 (plain text): matplotlib's
    default labels (10 to the power -6) are mathtext, whose parser costs ~0.1 s on a process's first.
    ``minor=False``: no minor ticks (each costs time to make; an axis over 8 decades has 70)."""
    from matplotlib.ticker import LogFormatter, NullLocator

    class Plain(LogFormatter):  # LogFormatter's choice of ticks to label, written 0.5, 1, 1e-06, 1e+05
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.0e}"

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(Plain(10))
    if minor:
        axis.set_minor_formatter(Plain(10, labelOnlyBase=False))
    else:
        axis.set_minor_locator(NullLocator())


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # no bbox_inches="tight": the size stays as given; zlib level 3: a third faster than 6, files 10% larger
    fig.savefig(path, dpi=DPI, format="png", pil_kwargs={"compress_level": 3})
    return path


# --------------------------------------------------------------------------- training curves


#: the history of one metric: [(step, value), ...]
History = Mapping[str, Sequence[tuple[int, float]]]


def training_curves(history: History, path: Path, title: str = "") -> Path:
    """Loss (left) and accuracy or mae (right) against the training step: train vs val.

    ``history``: metric key -> [(step, value), ...], e.g. ``{"train/loss": [(10, 2.1), ...],
    "val/loss": [(550, 0.35)], "val/accuracy": [...]}``; missing keys are left out.
    """
    fig = _figure("training_curves")
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
                _log_scale(ax, "y")
        if drawn:
            ax.legend(loc="best", fontsize=9)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
    if title:
        fig.suptitle(title)
    _margins(fig, left=75, right=15, bottom=50, top=60 if title else 32, gap=85, columns=2)
    return _save(fig, path)


# --------------------------------------------------------------------------- classifiers


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def class_names(classes: Sequence[str], n_classes: int) -> list[str]:
    """The dataset's class names, or the indices when it names none."""
    return [str(c) for c in classes] if len(classes) == n_classes else [str(i) for i in range(n_classes)]


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """The confusion matrix as a heat map with every count written in its cell."""
    n = matrix.shape[0]
    names = class_names(classes, n)
    fig = _figure("confusion_matrix")
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    slanted = max(map(len, names)) > 3
    ax.set_xticks(range(n), names, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(matrix.sum())
    correct = int(np.trace(matrix))
    ax.set_title(title or f"confusion matrix: {correct}/{total} correct ({correct / max(total, 1):.2%})", y=1.0)
    high = matrix.max() / 2 if matrix.size else 0
    fontsize = 10 if n <= 10 else 7 if n <= 20 else 5
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if matrix[i, j] > high else "black",
            )
    label = _text_width(names, 10)  # the tick labels: 10 points
    _margins(fig, left=label + 45, right=65, bottom=(label * 0.71 if slanted else 14) + 45, top=32)
    return _save(fig, path)


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], n_classes: int | None = None):
    """Per class: precision, recall, f1, support (true count), predicted count; then a macro average.

    precision = TP / predicted, recall = TP / support; NaN where the denominator is 0 (a class never
    predicted, or absent from the labels), and the macro average is over the defined values.
    """
    import pandas as pd

    n = n_classes or max(len(classes), int(np.max(y_true, initial=-1)) + 1, int(np.max(y_pred, initial=-1)) + 1)
    matrix = confusion_matrix(y_true, y_pred, n)
    tp = np.diag(matrix).astype(float)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        f1 = np.where(
            (precision + recall) > 0,
            2 * precision * recall / (precision + recall),
            np.where(np.isnan(precision) | np.isnan(recall), np.nan, 0.0),
        )
    table = pd.DataFrame(
        {
            "class": class_names(classes, n),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": predicted,
        }
    )
    macro = pd.DataFrame(
        {
            "class": ["macro average"],
            "precision": [np.nanmean(precision) if np.any(~np.isnan(precision)) else np.nan],
            "recall": [np.nanmean(recall) if np.any(~np.isnan(recall)) else np.nan],
            "f1": [np.nanmean(f1) if np.any(~np.isnan(f1)) else np.nan],
            "support": [int(support.sum())],
            "predicted": [int(predicted.sum())],
        }
    )
    return pd.concat([table, macro], ignore_index=True)


def image_shape(input_shape: Sequence[int], x: np.ndarray | None = None) -> tuple[int, int] | None:
    """(height, width) when the inputs are grey images: 2-D samples, or flat square ones (784 -> 28x28)
    of at least 8x8 with values in [0, 1]; None otherwise (tabular data)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and 1 in (shape[0], shape[-1]):
        shape = tuple(s for i, s in enumerate(shape) if not (s == 1 and i in (0, 2)))[:2]
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) != 1:
        return None
    side = math.isqrt(shape[0])
    if side < 8 or side * side != shape[0]:
        return None
    if x is not None and x.size and (float(np.min(x)) < 0.0 or float(np.max(x)) > 1.0):
        return None
    return side, side


def misclassified_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str],
    path: Path,
    shape: tuple[int, int],
    limit: int = 36,
    title: str = "",
) -> Path:
    """The first ``limit`` misclassified images (in test order) in a square grid, each labelled
    ``true → predicted``; a figure saying so when there is none.

    One mosaic image on one axes (not an axes per image): a few times faster to draw.
    """
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    shown = wrong[: max(limit, 0)]
    n_classes = max(len(classes), int(np.max(y_true, initial=0)) + 1, int(np.max(y_pred, initial=0)) + 1)
    names = class_names(classes, n_classes)
    cols = max(1, math.ceil(math.sqrt(max(limit, 1))))
    rows = max(1, math.ceil(max(limit, 1) / cols))
    h, w = shape
    pad, label = max(2, w // 7), max(6, h * 5 // 14)  # gap between cells; room for a label above each cell
    cell_h, cell_w = h + pad + label, w + pad
    mosaic = np.full((rows * cell_h + pad, cols * cell_w + pad), np.nan)
    for k, i in enumerate(shown):
        r, c = divmod(k, cols)
        top, left = r * cell_h + label + pad, c * cell_w + pad
        mosaic[top : top + h, left : left + w] = np.asarray(images[i], dtype=float).reshape(shape)
    fig = _figure("misclassified")
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.93))
    cmap = _grey_with_background()
    ax.imshow(mosaic, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    for k, i in enumerate(shown):
        r, c = divmod(k, cols)
        ax.text(
            c * cell_w + pad + w / 2,
            r * cell_h + pad + label - 1,
            f"{names[int(y_true[i])]} → {names[int(y_pred[i])]}",
            ha="center",
            va="bottom",
            fontsize=9,
            color="tab:red",
        )
    if len(shown) == 0:
        ax.text(mosaic.shape[1] / 2, mosaic.shape[0] / 2, "no misclassified test images", ha="center", va="center", fontsize=14)
    fig.suptitle(
        title
        or f"misclassified test images, true → predicted: {len(wrong)} of {len(y_true)} wrong, the first {len(shown)} shown",
        fontsize=11,
    )
    return _save(fig, path)


def _grey_with_background():
    """Grey reversed (ink dark on white), the gaps (NaN) light grey."""
    import matplotlib

    return matplotlib.colormaps["gray_r"].with_extremes(bad="#e8e8e8")


# --------------------------------------------------------------------------- the gradient check


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
    fig = _figure("gradcheck")
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
    _log_scale(ax, "x", minor=False)  # 6 decades and more: the major ticks say it
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
    _margins(fig, left=_text_width(names, 6 if small else 8) + 25, right=25, bottom=52, top=32)
    return _save(fig, path)


# --------------------------------------------------------------------------- tables and text


def write_table(table, directory: Path, stem: str, floatfmt: str = ".4g") -> list[Path]:
    """``<stem>.csv`` (full precision) and ``<stem>.md`` (a markdown table) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv, md = directory / f"{stem}.csv", directory / f"{stem}.md"
    table.to_csv(csv, index=False)
    shown = table.astype(object).where(table.notna(), None)  # tabulate writes missingval for None, not NaN
    md.write_text(shown.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a") + "\n")
    return [csv, md]


def model_summary(model, dtype: str = "", title: str = "") -> str:
    """Layers, their input and output shapes, parameters (name and shape) and counts, and the total.

    ``model``: a ``runner.model.Sequential`` (uses ``layers``, ``types``, ``shapes``, ``origins``).
    """
    import pandas as pd

    rows = []
    graph = getattr(model, "names", None) is not None  # a graph: its nodes' names and inputs
    for i, (layer, kind) in enumerate(zip(model.layers, model.types)):
        params = getattr(layer, "params", {}) or {}
        buffers = getattr(layer, "buffers", {}) or {}
        node = {"node": model.names[i], "inputs": ", ".join(model.input_names(i))} if graph else {}
        given = model.input_shapes(i) if graph else [model.shapes[i]]
        rows.append(
            {
                "#": i,
                **node,
                "layer": kind,
                "input": ", ".join("x".join(map(str, shape)) for shape in given),
                "output": "x".join(map(str, model.shapes[i + 1])),
                "parameters": ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in params.items()) or "-",
                "count": sum(int(v.size) for v in params.values()),
                "buffers": ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in buffers.items()) or "-",
                "from": model.origins[i] if i < len(getattr(model, "origins", [])) else "",
            }
        )
    table = pd.DataFrame(rows)
    if (table["buffers"] == "-").all():
        table = table.drop(columns="buffers")
    total = int(table["count"].sum())
    head = title or f"model {model.summary()}"
    lines = [
        f"{head}: {len(rows)} {'nodes' if graph else 'layers'}, {total:,} trainable parameters"
        + (f" ({dtype})" if dtype else ""),
        "",
    ]
    lines.append(table.to_markdown(index=False, tablefmt="simple", intfmt=",", stralign="left"))
    lines += ["", f"total: {total:,} parameters"]
    return "\n".join(lines) + "\n"
