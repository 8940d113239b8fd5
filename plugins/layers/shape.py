"""Layers that only move data around, and the check of flat inputs."""

from __future__ import annotations

import math

from runner.api import Layer, RunnerError


class Flatten(Layer):
    """y = x.reshape(batch, prod(shape)); dx = dout.reshape(batch, *shape). Shapes: (batch, *shape) -> (batch, prod(shape))."""

    def build(self, input_shape, rng, dtype):
        return (math.prod(input_shape),)

    def forward(self, x, training):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dout):
        return dout.reshape(self.shape)


def flat_features(layer: str, input_shape: tuple[int, ...]) -> int:
    """The width of flat inputs ``(features,)``; other shapes are a RunnerError that says to flatten them."""
    if len(input_shape) != 1:
        shape = "x".join(map(str, input_shape))
        raise RunnerError(f"{layer}: expected flat inputs of (features,), got {shape}; put a flatten layer before it")
    return input_shape[0]
