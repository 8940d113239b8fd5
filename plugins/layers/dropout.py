"""Inverted dropout: randomness from the layer's own generator, replayable by the gradient check."""

from __future__ import annotations

import numpy as np

from runner.api import Layer

from .options import number_option


class Dropout(Layer):
    """Inverted dropout. Training: y = x m / (1 - p), m_i ~ Bernoulli(1 - p) from ``self.rng``; eval: y = x.

    Backward: dx = dout m / (1 - p) in training (the mask of the last forward), dout in eval. Shapes: any -> same.
    m_i = [u_i >= p 2^32] with u_i uniform 32-bit integers (two from each 64-bit output of the
    generator): whatever the dtype the same mask, and P(m_i = 1) = 1 - p to within 2^-32.
    In place on x and dout where the model says nobody else holds them (runner.model.Sequential).
    """

    overwrite_input = overwrite_dout = False  # set by Sequential
    # what it returns is unshared when it worked in place on an unshared array (eval passes x itself on)
    output_unshared = property(lambda self: self.overwrite_input)
    input_grad_unshared = property(lambda self: self.overwrite_dout)

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
        words = self.rng.bit_generator.random_raw((x.size + 1) // 2)  # 64 random bits each
        u = words.astype("<u8", copy=False).view("<u4")[: x.size].reshape(x.shape)  # read little-endian on every machine
        keep = u >= min(round(self.p * 2**32), 2**32 - 1)
        self.scale = np.multiply(keep, 1.0 / (1.0 - self.p), dtype=x.dtype)  # m / (1 - p)
        return np.multiply(x, self.scale, out=x if self.overwrite_input else None)

    def backward(self, dout):
        if self.scale is None:
            return dout
        return np.multiply(dout, self.scale, out=dout if self.overwrite_dout else None)
