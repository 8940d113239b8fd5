"""LossContract: what every loss plugin must do."""

from __future__ import annotations

import math

import numpy as np

from runner.contracts.base import _assert_close, _Contract, _is_number
from runner.core.gradcheck import check_loss

PRED_KINDS = ("real", "softmax", "probability")
TARGET_KINDS = ("real", "binary", "one_hot", "class_indices")


class LossContract(_Contract):
    """The checks a Loss plugin must pass. Set ``factory``, and the kinds of predictions and targets.

    - ``factory(**options)`` makes the loss; ``options``: a dict;
    - ``pred_shape`` ((6, 4)): (batch, outputs); a binary task has one output: (6, 1);
    - ``pred_kind``: "real" (scores, logits: standard normal), "softmax" (rows of probabilities
      summing to 1, as after a softmax layer) or "probability" (each entry in (0.05, 0.95));
    - ``target``: "real" (regression), "binary" (0/1, shaped like pred), "one_hot" (rows), or
      "class_indices" (integers, for a loss with ``accepts_class_indices``): what the runner passes;
    - ``tolerance`` (1e-7): the largest relative error of backward against central differences.

    Predictions and targets come from ``sample``; override it for other domains.
    """

    __test__ = False
    pred_shape: tuple[int, ...] = (6, 4)
    pred_kind = "real"
    target = "real"
    tolerance = 1e-7
    seed = 0

    def sample(self, dtype=np.float64, seed: int = 1, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(pred, target) of ``pred_kind`` and ``target``, pred in ``dtype``; ``batch`` rows instead of pred_shape[0]'s."""
        if self.pred_kind not in PRED_KINDS or self.target not in TARGET_KINDS:
            raise TypeError(
                f"{type(self).__name__}: pred_kind must be one of {PRED_KINDS}, target one of {TARGET_KINDS}; "
                f"got {self.pred_kind!r}, {self.target!r}"
            )
        rng = np.random.default_rng(seed)
        shape = (self.pred_shape[0] if batch is None else batch, *self.pred_shape[1:])
        pred = rng.standard_normal(shape)
        if self.pred_kind == "softmax":
            e = np.exp(pred - pred.max(axis=-1, keepdims=True))
            pred = e / e.sum(axis=-1, keepdims=True)
        elif self.pred_kind == "probability":
            pred = rng.uniform(0.05, 0.95, shape)
        labels = rng.integers(0, shape[-1], shape[0])
        if self.target == "class_indices":
            if not self.make().accepts_class_indices:
                raise TypeError(
                    f"{type(self).__name__}: target = 'class_indices', but the loss does not declare "
                    f"accepts_class_indices (the runner passes it one-hot rows)"
                )
            target = labels
        elif self.target == "one_hot":
            target = np.eye(shape[-1], dtype=dtype)[labels]
        elif self.target == "binary":
            target = rng.integers(0, 2, shape).astype(dtype)
        else:
            target = rng.standard_normal(shape).astype(dtype)
        return pred.astype(dtype), target

    def test_backward_matches_numerical(self):
        """backward equals central differences of forward in pred (``runner.testing.check_loss``, float64)."""
        pred, target = self.sample()
        check = check_loss(self.make(), pred, target, seed=self.seed)
        assert check.entries > 0 and check.rel_error <= self.tolerance, (
            f"backward against central differences: relative error {check.rel_error:.3g} > tolerance {self.tolerance:.0e} "
            f"(max abs diff {check.max_abs_diff:.3g} over {check.entries} entries, {check.kinks} at kinks skipped)"
        )

    def test_forward_returns_a_finite_scalar(self):
        """forward returns one finite float (a Python float or a NumPy float scalar, not an array), in float32 and float64."""
        for dtype in (np.float32, np.float64):
            value = self.make().forward(*self.sample(dtype))
            assert isinstance(value, (float, np.floating)), (
                f"{np.dtype(dtype)}: forward returned {type(value).__name__} {value!r}; expected a float (return float(...))"
            )
            assert math.isfinite(value), f"{np.dtype(dtype)}: forward returned {value}"

    def test_backward_has_the_shape_and_dtype_of_pred(self):
        """backward's d(loss)/d(pred) is an array of pred's shape and dtype (float32 stays float32),
        for a batch of pred_shape and for a batch of one."""
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            for batch in (None, 1):
                pred, target = self.sample(dtype, batch=batch)
                loss = self.make()
                loss.forward(pred, target)
                grad = loss.backward()
                where = f"pred {pred.shape} {dtype}"
                assert isinstance(grad, np.ndarray), f"{where}: backward returned {type(grad).__name__}"
                assert grad.shape == pred.shape, f"{where}: backward gave shape {grad.shape}"
                assert grad.dtype == dtype, f"{where}: backward gave {grad.dtype}"

    def test_pred_and_target_are_left_unchanged(self):
        """Neither forward nor backward writes into pred or target (the model and the data own them)."""
        pred, target = self.sample()
        saved_pred, saved_target = pred.copy(), target.copy()
        loss = self.make()
        loss.forward(pred, target)
        loss.backward()
        assert np.array_equal(pred, saved_pred), "the loss changed pred"
        assert np.array_equal(target, saved_target), "the loss changed target"

    def test_reduction_is_declared_and_honoured(self):
        """``reduction`` is "mean" or "sum", and is what forward does: for a batch and the same batch
        twice over, a mean gives the same value, a sum twice the value (the runner scales by it)."""
        loss = self.make()
        assert loss.reduction in ("mean", "sum"), f"reduction = {loss.reduction!r}; expected 'mean' or 'sum'"
        pred, target = self.sample()
        once = float(self.make().forward(pred, target))
        twice = float(self.make().forward(np.concatenate([pred, pred]), np.concatenate([target, target])))
        expected = once if loss.reduction == "mean" else 2 * once
        assert math.isclose(twice, expected, rel_tol=1e-9, abs_tol=1e-12), (
            f"reduction = {loss.reduction!r}: the batch gives {once!r}, the batch twice over {twice!r}; expected {expected!r}"
        )

    def test_binary_threshold_is_a_number(self):
        """``binary_threshold`` (where a binary task's one output splits the classes) is a finite number."""
        threshold = self.make().binary_threshold
        assert _is_number(threshold), (
            f"binary_threshold = {threshold!r}; expected a number (0.5 for probabilities, 0.0 for logits)"
        )

    def test_class_indices_and_one_hot_agree(self):
        """A loss with ``accepts_class_indices`` gets class indices from the runner on a classification
        task: they give the value and gradient of the same targets as one-hot rows."""
        if not self.make().accepts_class_indices:
            return
        pred, _ = self.sample()
        labels = np.random.default_rng(4).integers(0, pred.shape[-1], len(pred))
        by_index, by_row = self.make(), self.make()
        value, expected = by_index.forward(pred, labels), by_row.forward(pred, np.eye(pred.shape[-1])[labels])
        assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12), (
            f"class indices give {value!r}, one-hot rows {expected!r}"
        )
        _assert_close(by_index.backward(), by_row.backward(), "backward, class indices against one-hot rows")

    def test_branches_are_declared(self):
        """``branches(pred, target)`` is None (a smooth loss) or an array of pred's shape: which piece
        of a piecewise loss each entry is on, compared by the gradient check before and after a perturbation."""
        pred, target = self.sample()
        pieces = self.make().branches(pred, target)
        if pieces is None:
            return
        assert isinstance(pieces, np.ndarray) and pieces.dtype != object and pieces.shape == pred.shape, (
            f"branches(pred, target) returned {type(pieces).__name__} {getattr(pieces, 'dtype', '')} "
            f"{getattr(pieces, 'shape', '')}; expected None or an array of pred's shape {pred.shape}"
        )

    def test_backward_follows_the_last_forward(self):
        """backward is d(loss)/d(pred) of the last forward, not of an earlier one."""
        (p1, t1), (p2, t2) = self.sample(seed=1), self.sample(seed=2)
        fresh = self.make()
        fresh.forward(p2.copy(), t2.copy())
        loss = self.make()
        loss.forward(p1, t1)
        loss.forward(p2, t2)
        _assert_close(loss.backward(), fresh.backward(), "backward after two forwards, against one after the second alone")
