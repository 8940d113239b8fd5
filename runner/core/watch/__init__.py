"""The watch: backpropagation at work, measured while the network trains (config section ``watch``).

At about 50 steps of a run (``watch.every``) the training loop lets a ``Watch`` look at what it computes
anyway: every layer's output, every gradient, every parameter before and after the optimizer's step. No
extra forward pass, no random generator of the run touched: the run's numbers are the same with the
watch on or off. What it gives (definitions: docs/numerics.md, "What the watch measures"):

    metrics     watch/<layer>/mean|std|dead_fraction|dead_channel_fraction|saturated_fraction (watch/1.relu/dead_fraction)
                watch/<parameter>/grad_norm|weight_norm|update_ratio       (watch/0.linear.W/grad_norm)
    histograms  weights, gradients, activations: a row of counts per watched step, on bins that follow the data
    warnings    dead ReLUs, update ratios far from 1e-3, vanishing or exploding gradients

The package, bottom up:

    statistics.py   the numbers of one array (norms, dead and saturated fractions, bin edges and counts)
    histograms.py   histograms over time, as plain arrays
    alerts.py       the warnings and their rules
    config.py       WatchConfig: the config section, checked
    watch.py        Watch: the three calls of a watched step, its state for checkpoints
"""

from runner.core.watch.alerts import Alerts
from runner.core.watch.config import WatchConfig
from runner.core.watch.histograms import KINDS, Histograms
from runner.core.watch.watch import Watch, layer_labels

__all__ = ["KINDS", "Alerts", "Histograms", "Watch", "WatchConfig", "layer_labels"]
