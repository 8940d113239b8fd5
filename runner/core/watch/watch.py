"""The Watch: what the training loop measures at its watched steps, and keeps for the report.

At a watched step (``WatchConfig.due``) the loop calls, around its usual work:

    watch.start(model, step)      before forward: the model hands each layer's output to the watch
    watch.gradients(model)        after backward: gradient norms and histograms, a copy of the weights
    watch.finish(model, step)     after optimizer.step: update ratios; returns the step's metrics

Nothing else changes: no extra forward pass, and no random generator of the run is touched (the entries
binned are drawn by a generator of its own, made from the watch's seed and the step), so a run trains bit
for bit alike with the watch on or off. Outputs are summarised the moment a layer returns them: a later
layer working in place (relu, dropout) may overwrite them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.core.watch.alerts import Alerts
from runner.core.watch.config import WatchConfig
from runner.core.watch.histograms import Histograms
from runner.core.watch.statistics import RECTIFIERS, activation_stats, norm, sample_entries, update_ratio


def layer_labels(model) -> list[str]:
    """``<index>.<type>`` per layer of a chain (``1.relu``), ``<node>.<type>`` per node of a graph (``h1.relu``):
    the prefix of its parameters' names, and of its metrics."""
    names = getattr(model, "names", None) or range(len(model.layers))
    return [f"{name}.{kind}" for name, kind in zip(names, model.types)]


class Watch:
    """Per watched step, as metrics ``watch/<layer>/<stat>`` and ``watch/<parameter>/<stat>``:

    - each layer's output: ``mean``, ``std``; a ReLU's ``dead_fraction`` (on images also ``dead_channel_fraction``);
      a sigmoid's or tanh's ``saturated_fraction``
    - each parameter array: ``grad_norm``, ``weight_norm`` (before the step), ``update_ratio`` (the step taken)

    and histograms of weights, gradients and activations (``histograms``), warnings (``alerts``). Its state
    (``state_dict``) goes into the Training's, so a resumed run ends with the same points and counts.
    """

    def __init__(self, config: WatchConfig, model, total_steps: int, seed: int):
        self.config, self.total, self.seed = config, total_steps, seed
        self.interval = config.interval(total_steps)
        self.labels, self.kinds = layer_labels(model), list(model.types)
        params = model.params
        #: the weight matrices and kernels in run order: the update-ratio and gradient-flow warnings look at these
        self.matrices = [name for name, p in params.items() if p.ndim >= 2]
        self.rectifiers = [label for label, kind in zip(self.labels, self.kinds) if kind in RECTIFIERS]
        self.histograms = Histograms(config.bins)
        self.alerts = Alerts()
        self.steps: list[int] = []  # the watched steps so far
        self.points: list[dict[str, float]] = []  # their metrics, one dict per step
        self._point: dict[str, float] = {}
        self._before: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(0)

    def due(self, step: int) -> bool:
        return self.config.due(step, self.interval, self.total)

    # ---- the three calls of a watched step

    def start(self, model, step: int) -> None:
        """Before the step's forward pass: have the model hand each layer's output to ``_activation``."""
        self._point = {}
        self._rng = np.random.default_rng([self.seed, step])  # its own stream: the run's generators stay untouched
        model.watcher = self._activation

    def _activation(self, i: int, y: np.ndarray) -> None:
        label, kind = self.labels[i], self.kinds[i]
        for stat, value in activation_stats(kind, y).items():
            self._point[f"watch/{label}/{stat}"] = value
        self.histograms.add("activations", label, sample_entries(y, self.config.sample, self._rng), kind)

    def gradients(self, model) -> None:
        """After backward, before the optimizer: each gradient's norm and histogram, each parameter's norm,
        histogram and a copy (the update ratio compares it with what the optimizer makes of it)."""
        model.watcher = None
        point, limit, rng = self._point, self.config.sample, self._rng
        for name, grad in model.grads.items():
            point[f"watch/{name}/grad_norm"] = norm(grad)
            self.histograms.add("gradients", name, sample_entries(grad, limit, rng))
        self._before = {}
        for name, param in model.params.items():
            before = self._before[name] = param.astype(np.float64)  # a copy: the optimizer updates in place
            point[f"watch/{name}/weight_norm"] = norm(before)
            self.histograms.add("weights", name, sample_entries(before, limit, rng))

    def finish(self, model, step: int) -> dict[str, float]:
        """After the optimizer's step: the update ratios; the step's metrics are kept, checked and returned."""
        point = self._point
        for name, param in model.params.items():
            ratio = update_ratio(self._before[name], param)
            if ratio is not None:  # weights that were all zero (a bias at its start) have no ratio
                point[f"watch/{name}/update_ratio"] = ratio
        self._before = {}
        self.steps.append(step)
        self.points.append(point)
        self.alerts.check(step, point, self.rectifiers, self.matrices)
        return dict(point)

    # ---- what the report reads

    @property
    def warnings(self) -> list[dict]:
        return self.alerts.raised

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric over the watched steps where it was measured."""
        found = [(s, p[metric]) for s, p in zip(self.steps, self.points) if metric in p]
        return [s for s, _ in found], [v for _, v in found]

    # ---- checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "points": [dict(p) for p in self.points],
            "histograms": self.histograms.state_dict(),
            "alerts": self.alerts.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [int(s) for s in state["steps"]]
        self.points = [{str(k): float(v) for k, v in p.items()} for p in state["points"]]
        self.histograms.load_state_dict(state["histograms"])
        self.alerts.load_state_dict(state["alerts"])
