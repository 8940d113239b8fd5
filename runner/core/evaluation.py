"""What a model's predictions score: targets in the form the loss takes, a whole split evaluated
(loss and accuracy, or mae), a batch's score for the running train metrics. Used by the loop
(runner.core.train, which re-exports these names) and by the gradient check of a run (runner.run.record).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from runner.api import Loss, Meta, Split


def targets_for(y: np.ndarray, meta: Meta, loss: Loss, dtype) -> np.ndarray:
    """Targets in the form the loss takes: class indices, one-hot rows, or real-valued columns."""
    if meta.task == "classification":
        if loss.accepts_class_indices:
            return y
        return np.eye(meta.output_size, dtype=dtype)[y]
    if meta.task == "binary":
        return y.reshape(-1, 1).astype(dtype)
    return y.astype(dtype)


#: rows per forward pass when evaluating: large enough for efficient matrix products
EVAL_ROWS = 8192
#: at most this many bytes of one layer's output and working arrays (conv2d's im2col) per evaluation chunk
EVAL_BYTES = 32 * 2**20  # an MLP on 784 inputs stays at EVAL_ROWS: its results do not change


def eval_rows(model) -> int:
    """Rows per evaluation chunk: EVAL_ROWS, fewer when the widest layer's output and workspace for that
    many samples would pass EVAL_BYTES. A ConvNet's layers hold ~100 KB a sample or more: mnist_cnn
    evaluates in chunks of 102 rows, several times faster per image than in chunks of 8192 (which would
    take 2.6 GB)."""
    itemsize = next((p.dtype.itemsize for p in model.params.values()), 4)
    outputs = [math.prod(shape) * itemsize for shape in getattr(model, "shapes", [])] or [0]
    per_sample = max(outputs) + max([getattr(layer, "workspace_bytes", 0) for layer in model.layers] or [0])
    return max(1, min(EVAL_ROWS, EVAL_BYTES // max(per_sample, 1)))


def evaluate(model, loss: Loss, split: Split, meta: Meta, batch_size: int) -> dict[str, float]:
    """Loss and accuracy (or mae for regression) over a whole split, in chunks of ``eval_rows`` rows.

    The loss is the mean over samples for a "mean" loss; for a "sum" loss (sum_squared) it is
    given per batch of ``batch_size`` samples, the scale of train/loss.
    """
    target = targets_for(split.y, meta, loss, split.x.dtype)
    total_loss, score = 0.0, 0.0
    chunk = eval_rows(model)
    for start in range(0, len(split), chunk):
        rows = slice(start, start + chunk)
        xb, tb, yb = split.x[rows], target[rows], split.y[rows]
        pred = model.forward(xb, training=False)
        value = loss.forward(pred, tb)
        total_loss += value * batch_size if loss.reduction == "sum" else value * len(xb)
        if meta.task == "classification":
            score += np.sum(pred.argmax(axis=1) == yb)
        elif meta.task == "binary":
            score += np.sum((pred[:, 0] >= loss.binary_threshold) == yb)
        else:
            score += np.sum(np.abs(pred - yb)) / pred.shape[1]
    key = "mae" if meta.task == "regression" else "accuracy"
    return {"loss": total_loss / len(split), key: float(score / len(split))}


def batch_scorer(meta: Meta, loss: Loss) -> Callable[[np.ndarray, np.ndarray], float]:
    """``score(pred, y)``: a batch's correct answers (classification, binary) or summed absolute error
    per output (regression)."""
    count = np.count_nonzero
    if meta.task == "classification":
        return lambda pred, y: int(count(pred.argmax(axis=1) == y))
    if meta.task == "binary":
        threshold = loss.binary_threshold
        return lambda pred, y: int(count((pred[:, 0] >= threshold) == y))
    return lambda pred, y: float(np.abs(pred - y).sum()) / pred.shape[1]
