"""Inverted dropout: randomness from the layer's own generator, replayable by the gradient check."""
from __future__ import annotations

import numpy as np

from runner.api import Layer

from .options import number_option


class Dropout(Layer):
    """Inverted dropout. Training: y = x m / (1 - p), m_i ~ Bernoulli(1 - p) from ``self.rng``; eval: y = x.

    Backward: dx = dout m / (1 - p) in training (the mask of the last forward), dout in eval. Shapes: any -> same.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = number_option("p", p, "a drop probability in [0, 1)", lambda v: 0 <= v < 1)

    def build(self, input_shape, rng, dtype):
        self.rng = np.random.default_rng(rng.integers(2**63))
        return input_shape

    def forward(self, x, training):
        self.scale = None
        if not training:
            return x
        keep = self.rng.random(x.shape) >= self.p  # uniforms in float64: the same mask whatever the dtype
        self.scale = keep.astype(x.dtype) / (1.0 - self.p)
        return x * self.scale

    def backward(self, dout):
        return dout if self.scale is None else dout * self.scale
