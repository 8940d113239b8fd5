"""Layers that only move data around."""

from __future__ import annotations

import math

from runner.api import Layer


class Flatten(Layer):
    """y = x.reshape(batch, prod(shape)); dx = dout.reshape(batch, *shape). Shapes: (batch, *shape) -> (batch, prod(shape))."""

    def build(self, input_shape, rng, dtype):
        return (math.prod(input_shape),)

    def forward(self, x, training):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dout):
        return dout.reshape(self.shape)
