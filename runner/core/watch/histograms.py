"""Histograms over time: per array, bin edges fixed at its first watched step and one row of counts per
watched step. Plain arrays in and out, so the state goes into a checkpoint and the report draws it."""

from __future__ import annotations

import numpy as np

from runner.core.watch.statistics import bin_counts, edges_for

#: the three kinds of arrays the watch bins, as the pictures and the npz artifact name them
KINDS = ("weights", "gradients", "activations")


class Histograms:
    """``add(kind, name, sample, layer_kind)`` bins one sample at the current point; ``edges[kind][name]``
    (bins + 1 values) and ``counts[kind][name]`` (a list of rows of bins + 2 counts: under, bins, over)."""

    def __init__(self, bins: int):
        self.bins = bins
        self.edges: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in KINDS}
        self.counts: dict[str, dict[str, list[np.ndarray]]] = {kind: {} for kind in KINDS}

    def add(self, kind: str, name: str, sample: np.ndarray, layer_kind: str = "") -> None:
        edges = self.edges[kind].get(name)
        if edges is None:  # the first watched step fixes the scale for the rest of the run
            edges = self.edges[kind][name] = edges_for(sample, self.bins, layer_kind)
            self.counts[kind][name] = []
        self.counts[kind][name].append(bin_counts(sample, edges))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every histogram as ``<kind>/<name>/edges`` (bins + 1) and ``<kind>/<name>/counts`` (points x bins + 2)."""
        out: dict[str, np.ndarray] = {}
        for kind in KINDS:
            for name, edges in self.edges[kind].items():
                out[f"{kind}/{name}/edges"] = edges
                out[f"{kind}/{name}/counts"] = np.stack(self.counts[kind][name])
        return out

    def state_dict(self) -> dict:
        return {
            kind: {
                name: {"edges": edges, "counts": np.stack(self.counts[kind][name])} for name, edges in self.edges[kind].items()
            }
            for kind in KINDS
        }

    def load_state_dict(self, state: dict) -> None:
        for kind in KINDS:
            saved = state.get(kind, {})
            self.edges[kind] = {name: np.asarray(h["edges"]) for name, h in saved.items()}
            self.counts[kind] = {name: list(np.asarray(h["counts"])) for name, h in saved.items()}
