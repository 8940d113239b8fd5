"""What a classifier got right and wrong on the test split: the confusion matrix (counts and heat map,
plots/confusion_matrix.png), precision and recall per class (tables/per_class.*) and, for grey images,
the misclassified ones in a grid (plots/misclassified.png)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from runner.report.figures.canvas import figure, margins, save, text_width


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
    fig = figure("confusion_matrix")
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
    label = text_width(names, 10)  # the tick labels: 10 points
    margins(fig, left=label + 45, right=65, bottom=(label * 0.71 if slanted else 14) + 45, top=32)
    return save(fig, path)


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
    images: np.ndarray | Mapping[int, np.ndarray],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str],
    path: Path,
    shape: tuple[int, int],
    limit: int = 36,
    title: str = "",
) -> Path:
    """The first ``limit`` misclassified images (in test order) in a square grid, each labelled
    ``true → predicted``; a figure saying so when there is none. ``images``: the test images, or only the
    shown ones by their index (``shown_images``: what travels to where the picture is drawn).

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
    fig = figure("misclassified")
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
    return save(fig, path)


def shown_images(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, limit: int) -> dict[int, np.ndarray]:
    """The images ``misclassified_grid`` shows (the first ``limit`` misclassified), by their index."""
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))[: max(limit, 0)]
    return {int(i): np.asarray(images[i]) for i in wrong}


def _grey_with_background():
    """Grey reversed (ink dark on white), the gaps (NaN) light grey."""
    import matplotlib

    return matplotlib.colormaps["gray_r"].with_extremes(bad="#e8e8e8")
