"""The numbers the watch takes of one array: plain functions of NumPy arrays, no state.

Every statistic here is defined in docs/numerics.md ("What the watch measures"); in short:

    norm(a)                 ||a|| = sqrt(sum a^2), the Frobenius norm, accumulated in float64
    update_ratio            ||W_after - W_before|| / ||W_before||: the step the optimizer really took,
                            relative to the weights (lr ||g|| / ||W|| for plain SGD)
    dead_fraction(y)        the units of a ReLU output that are 0 for every sample of the batch
    dead_channel_fraction   of a ReLU on images (batch, channels, h, w): the channels 0 at every position
    saturated_fraction(y)   the entries of a sigmoid (tanh) output in its flat tails
    magnitude(sample)       the 99th percentile of |x|: what a histogram's range must hold (histograms.py)
    bin_counts(sample)      counts in a histogram's bins, plus one underflow and one overflow bin
"""

from __future__ import annotations

import math

import numpy as np

#: the flat tails of a squashing activation: sigmoid outside [0.01, 0.99], tanh with |y| > 0.99, where
#: the local slope is below ~1 % of its peak and almost no gradient passes back
SATURATION = {"sigmoid": (0.01, 0.99), "tanh": (-0.99, 0.99)}

#: activations whose outputs have known bounds: their histograms span exactly that range, fixed
BOUNDED = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softmax": (0.0, 1.0)}

#: layers whose units can die (output exactly 0 whatever the input)
RECTIFIERS = ("relu",)


def norm(a: np.ndarray) -> float:
    """The Frobenius norm, summed in float64 (a float32 sum of 10^6 squares would lose digits)."""
    flat = a.reshape(-1).astype(np.float64, copy=False)
    return math.sqrt(float(np.dot(flat, flat)))


def update_ratio(before: np.ndarray, after: np.ndarray) -> float | None:
    """||after - before|| / ||before||; None when the weights were all zero (a bias at its start: no ratio)."""
    base = norm(before)
    if base == 0.0:
        return None
    return norm(after.astype(np.float64) - before) / base


def units(y: np.ndarray) -> np.ndarray:
    """A batch's output as (samples, units): every axis after the first is a unit. For a convolution's
    output (batch, channels, height, width) a unit is one channel at one position."""
    return y.reshape(len(y), -1)


def dead_fraction(y: np.ndarray) -> float:
    """The fraction of units that are 0 (not > 0) for every sample of the batch: a ReLU unit that no
    sample switches on passes no gradient back, so nothing in its weights changes to revive it."""
    alive = (units(y) > 0).any(axis=0)
    return 1.0 - float(np.count_nonzero(alive)) / alive.size


def dead_channel_fraction(y: np.ndarray) -> float:
    """A convolution's output (batch, channels, height, width): the fraction of channels that are 0 at every
    position for every sample of the batch. A dead channel is a whole filter lost (its kernel gets no gradient);
    ``dead_fraction`` counts positions too, so a few dead channels can hide among the border positions a padded
    ReLU map rarely switches on."""
    alive = (y > 0).any(axis=(0, 2, 3))
    return float(np.count_nonzero(~alive)) / alive.size


def saturated_fraction(kind: str, y: np.ndarray) -> float:
    """The fraction of entries in the flat tails of ``kind`` (``SATURATION``)."""
    low, high = SATURATION[kind]
    outside = np.count_nonzero(y < low) + np.count_nonzero(y > high)
    return float(outside) / y.size


def activation_stats(kind: str, y: np.ndarray) -> dict[str, float]:
    """mean and std of a layer's output over the whole batch, and what its kind adds: the dead fraction of
    a ReLU (and of a ReLU on images, its dead channels), the saturated fraction of a sigmoid or tanh."""
    stats = {"mean": float(y.mean(dtype=np.float64)), "std": float(y.std(dtype=np.float64))}
    if kind in RECTIFIERS:
        stats["dead_fraction"] = dead_fraction(y)
        if y.ndim == 4:
            stats["dead_channel_fraction"] = dead_channel_fraction(y)
    if kind in SATURATION:
        stats["saturated_fraction"] = saturated_fraction(kind, y)
    return stats


def sample_entries(a: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` entries of ``a`` as a float64 copy: all of them when it is small enough, else
    ``limit`` drawn uniformly with replacement (a histogram's shape needs no more; cheap for any size)."""
    flat = a.reshape(-1)
    if flat.size <= limit:
        return flat.astype(np.float64)
    return flat[rng.integers(0, flat.size, limit)].astype(np.float64)


def magnitude(finite: np.ndarray) -> float:
    """The scale of a sample (its finite entries): the 99th percentile of |x|, taken as an entry (the one at rank
    ceil(0.99 (n - 1)): at most 1 % of the entries are larger, and of fewer than 100 entries the largest), so one
    outlier among many does not set it; the largest |x| when that is 0 (a mostly-zero array); 0 for an array of
    zeros (or no entries)."""
    if not finite.size:
        return 0.0
    size = np.abs(finite)
    found = float(np.quantile(size, 0.99, method="higher"))
    return found if found > 0 else float(size.max())


def power_above(x: float) -> float:
    """The smallest power of two above ``x`` > 0 (a histogram's range: 2^k > x, so x itself falls inside)."""
    return math.ldexp(1.0, math.frexp(x)[1])


def bin_counts(sample: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in ``[under, bin 0, ..., bin n-1, over]``: bin k holds edges[k] <= x < edges[k + 1];
    below edges[0] is under, from edges[-1] on (and NaN, inf) over."""
    bins = len(edges) - 1
    position = (sample - edges[0]) * (bins / (edges[-1] - edges[0]))  # in bin widths from the first edge
    np.floor(position, out=position)
    np.clip(position, -1, bins, out=position)  # -1: under, bins: over (inf included)
    position[np.isnan(position)] = bins
    return np.bincount(position.astype(np.intp) + 1, minlength=bins + 2)
