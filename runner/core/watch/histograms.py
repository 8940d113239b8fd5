"""Histograms over time: per array one row of counts per watched step, on bins that follow the data.

The rule (docs/numerics.md, "What the watch measures"): an array's range is a power of two, ``[-R, R)`` (or
``[0, R)`` while it has been non-negative: a ReLU's output), cut into ``bins`` equal bins plus an underflow and an
overflow bin. ``R`` is first the smallest power of two above the 99th percentile of |x| of the first sample that is
not all zero. When more than ``OUTSIDE`` (1 %) of a later sample falls outside, the range doubles until 99 % of it
fits: each doubling sums the bins of every earlier row pairwise, so every count stays exact (only coarser), and
their under- and overflow bins keep what fell outside the range of their time. A ``[0, R)`` range that meets
negative values becomes ``[-R, R)`` the same way. The bounded activations (sigmoid, tanh, softmax) keep their
range. An array that was all zero so far is binned around 0 and placed when it first moves (a bias at its start).

Plain arrays in and out, so the state goes into a checkpoint (a resumed run ends with the same counts, bit for
bit) and the report draws it.
"""

from __future__ import annotations

import numpy as np

from runner.core.watch.statistics import BOUNDED, bin_counts, magnitude, power_above

#: the three kinds of arrays the watch bins, as the pictures and the npz artifact name them
KINDS = ("weights", "gradients", "activations")

#: the share of a sample's finite entries that may fall outside the range before it grows: one outlier does not
#: squash the rest into a few bins (it is counted in the under- or overflow bin)
OUTSIDE = 0.01


def merged(rows: np.ndarray, at: int) -> np.ndarray:
    """``rows`` (points x (under, bins..., over)) with their bins summed pairwise (bins 0+1, 2+3, ...) and placed from
    bin ``at`` on: the same counts on bins twice as wide. Under- and overflow stay as they are."""
    bins = rows.shape[1] - 2
    out = np.zeros_like(rows)
    out[:, 0], out[:, -1] = rows[:, 0], rows[:, -1]
    out[:, 1 + at : 1 + at + bins // 2] = rows[:, 1:-1].reshape(len(rows), bins // 2, 2).sum(axis=2)
    return out


class Histograms:
    """``add(kind, name, sample, layer_kind)`` bins one sample at the current point; ``edges[kind][name]``
    (bins + 1 values; None while the array was all zero) and ``counts[kind][name]`` (a list of rows of bins + 2
    counts: under, bins, over), rows of earlier points rebinned whenever the range grew."""

    def __init__(self, bins: int):
        if bins % 4:
            raise ValueError(f"histogram bins must be a multiple of 4 (a doubled range merges them pairwise), got {bins}")
        self.bins = bins
        self.edges: dict[str, dict[str, np.ndarray | None]] = {kind: {} for kind in KINDS}
        self.counts: dict[str, dict[str, list[np.ndarray]]] = {kind: {} for kind in KINDS}

    def add(self, kind: str, name: str, sample: np.ndarray, layer_kind: str = "") -> None:
        if name not in self.counts[kind]:
            bounded = BOUNDED.get(layer_kind)
            self.edges[kind][name] = np.linspace(*bounded, self.bins + 1) if bounded else None
            self.counts[kind][name] = []
        edges = self.edges[kind][name] if layer_kind in BOUNDED else self._follow(kind, name, sample)
        self.counts[kind][name].append(bin_counts(sample, edges if edges is not None else self._around_zero()))

    def _around_zero(self) -> np.ndarray:
        """Where an array is binned while it has been all zero: [-1, 1) (0 falls in bin bins/2 of any symmetric range)."""
        return np.linspace(-1.0, 1.0, self.bins + 1)

    def _follow(self, kind: str, name: str, sample: np.ndarray) -> np.ndarray | None:
        """The array's edges for ``sample``: set at its first sample that is not all zero, grown when it outgrew them."""
        edges, bins = self.edges[kind][name], self.bins
        finite = sample[np.isfinite(sample)]
        if edges is None:
            scale = magnitude(finite)
            if scale == 0.0:
                return None  # all zero so far: no scale to set
            high = power_above(scale)
            low = 0.0 if float(finite.min()) >= 0 else -high
            self.edges[kind][name] = edges = np.linspace(low, high, bins + 1)
            if low == 0.0:  # the zeros counted so far: from bin bins/2 of [-1, 1) to bin 0 of [0, R)
                self._rebin(kind, name, _zeros_to_bin0, bins)
            return edges
        low, high = float(edges[0]), float(edges[-1])
        outside = np.count_nonzero(finite < low) + np.count_nonzero(finite >= high)
        if outside <= OUTSIDE * finite.size:
            return edges
        if low == 0.0 and np.count_nonzero(finite < 0) > OUTSIDE * finite.size:  # [0, R) -> [-R, R)
            self._rebin(kind, name, merged, bins // 2)
            low = -high
        scale = magnitude(finite)
        while high <= scale:  # double: [-R, R) -> [-2R, 2R) (or [0, R) -> [0, 2R))
            self._rebin(kind, name, merged, bins // 4 if low < 0 else 0)
            high, low = 2 * high, 2 * low
        self.edges[kind][name] = edges = np.linspace(low, high, bins + 1)
        return edges

    def _rebin(self, kind: str, name: str, how, argument: int) -> None:
        """Every row counted so far through ``how(rows, argument)``."""
        rows = self.counts[kind][name]
        if rows:
            self.counts[kind][name] = list(how(np.stack(rows), argument))

    def final_edges(self, kind: str, name: str) -> np.ndarray:
        """The array's edges as its rows are counted: [-1, 1) for an array that was all zero at every point."""
        edges = self.edges[kind][name]
        return edges if edges is not None else self._around_zero()

    def arrays(self) -> dict[str, np.ndarray]:
        """Every histogram as ``<kind>/<name>/edges`` (bins + 1) and ``<kind>/<name>/counts`` (points x bins + 2)."""
        out: dict[str, np.ndarray] = {}
        for kind in KINDS:
            for name in self.counts[kind]:
                out[f"{kind}/{name}/edges"] = self.final_edges(kind, name)
                out[f"{kind}/{name}/counts"] = np.stack(self.counts[kind][name])
        return out

    def state_dict(self) -> dict:
        """Per array its edges (empty while it was all zero) and counts."""
        return {
            kind: {
                name: {"edges": _or_empty(self.edges[kind][name]), "counts": np.stack(rows)}
                for name, rows in self.counts[kind].items()
            }
            for kind in KINDS
        }

    def load_state_dict(self, state: dict) -> None:
        for kind in KINDS:
            saved = state.get(kind, {})
            self.edges[kind] = {name: np.asarray(h["edges"]) if np.size(h["edges"]) else None for name, h in saved.items()}
            self.counts[kind] = {name: list(np.asarray(h["counts"])) for name, h in saved.items()}


def _or_empty(edges: np.ndarray | None) -> np.ndarray:
    return edges if edges is not None else np.zeros(0)


def _zeros_to_bin0(rows: np.ndarray, bins: int) -> np.ndarray:
    """Rows counted on [-1, 1) while the array was all zero, on [0, R): bin bins/2 (which holds 0) moved to bin 0."""
    out = rows.copy()
    out[:, 1] += out[:, 1 + bins // 2]
    out[:, 1 + bins // 2] = 0
    return out
