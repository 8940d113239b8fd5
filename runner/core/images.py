"""How a model sees a dataset's samples: flat vectors, or the same pixels as images.

A dataset gives ``x`` flat, ``(n, features)``, and says in ``Meta.image_shape`` what images they are
(MNIST: 1x28x28). A model whose first layer takes images (``Layer.image_input``: conv2d, the pools,
batchnorm2d; in a graph, the first node that reads the data) is built for the images and gets the
pixels viewed as ``(n, *image_shape)``, without a copy; every other model gets them flat, as always.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from runner.api import Layer, Meta, RunnerError, Split, Splits


def model_input_shape(first: Layer, meta: Meta, where: str) -> tuple[int, ...]:
    """What one sample looks like to a model whose first layer is ``first``: the dataset's images
    (``meta.image_shape``, e.g. 1x28x28) when that layer takes images (conv2d, the pools, batchnorm2d),
    else its flat ``meta.input_shape`` (784), as every MLP has it."""
    if not getattr(first, "image_input", False):
        return tuple(meta.input_shape)
    if meta.image_shape is None:
        shape = "x".join(map(str, meta.input_shape))
        raise RunnerError(
            f"{where}: takes images of (channels, height, width), but dataset {meta.name!r} gives samples of {shape} "
            "and no image shape (Meta.image_shape)"
        )
    if math.prod(meta.image_shape) != math.prod(meta.input_shape):
        raise RunnerError(f"dataset {meta.name!r}: image_shape {meta.image_shape} does not hold input_shape {meta.input_shape}")
    return tuple(meta.image_shape)


def shaped_for(model: Any, splits: Splits) -> Splits:
    """The splits as ``model`` takes its samples: flat samples viewed (no copy) as the images of its input
    shape when it starts with a layer that takes images, otherwise unchanged."""
    shape = tuple(model.shapes[0])
    if splits.train.x.shape[1:] == shape:
        return splits

    def view(split: Split) -> Split:
        return Split(split.x.reshape(len(split.x), *shape), split.y)

    return dataclasses.replace(splits, train=view(splits.train), val=view(splits.val), test=view(splits.test))
