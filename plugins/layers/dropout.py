"""Inverted dropout: randomness from the layer's own generator, replayable by the gradient check."""

from __future__ import annotations

import math

import numpy as np

from runner.api import Layer, option


class Dropout(Layer):
    """Inverted dropout. Training: y = x m / (1 - p), m_i ~ Bernoulli(1 - p) from ``self.rng``; eval: y = x.

    Backward: dx = dout m / (1 - p) in training (the mask of the last forward), dout in eval. Shapes: any -> same.
    The registered dropout is layers.fast.InPlaceDropout: these numbers, in place where the model allows.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = option("p", p, float, lambda v: 0 <= v < 1, "a drop probability in [0, 1)")

    def build(self, input_shape, rng, dtype):
        self.rng = np.random.default_rng(rng.integers(2**63))
        return input_shape

    def forward(self, x, training):
        self.scale = None  # m / (1 - p) of the last forward in training; None in eval
        if not training:
            return x
        self.scale = self.keep(x.shape).astype(x.dtype) * (1.0 / (1.0 - self.p))
        return x * self.scale

    def backward(self, dout):
        if self.scale is None:
            return dout
        return dout * self.scale

    def keep(self, shape: tuple[int, ...]) -> np.ndarray:
        """The mask m: True with probability 1 - p, for every dtype the same.

        m_i = [u_i >= p 2^32], u_i uniform 32-bit integers, two from each 64-bit output of the
        generator (half the random draws of a float per entry): P(m_i = 1) = 1 - p to within 2^-32.
        """
        size = math.prod(shape)
        words = self.rng.bit_generator.random_raw((size + 1) // 2)  # 64 random bits each
        u = words.astype("<u8", copy=False).view("<u4")[:size].reshape(shape)  # read little-endian on every machine
        return u >= min(round(self.p * 2**32), 2**32 - 1)
