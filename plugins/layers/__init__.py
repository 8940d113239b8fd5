"""Built-in layers. Each keeps what its backward needs; inputs are (batch, *shape), float32 stays float32."""

from runner.api import PluginSpec, hookimpl

from .activations import ELU, GELU, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Softplus, Swish, Tanh
from .conv import Conv2D
from .dropout import Dropout
from .fast import FastLinear, InPlaceDropout, InPlaceReLU
from .fast_conv import FastConv2D, FastMaxPool2D
from .linear import INITS, Linear
from .merge import Add, Bias, Concat, Multiply, Scale
from .normalization import BatchNorm, BatchNorm2D, LayerNorm
from .pool import AvgPool2D, GlobalAvgPool, MaxPool2D
from .shape import Flatten

__all__ = [
    "Add",
    "AvgPool2D",
    "BatchNorm",
    "BatchNorm2D",
    "Bias",
    "Concat",
    "Conv2D",
    "Dropout",
    "ELU",
    "FAST",
    "FastConv2D",
    "FastLinear",
    "FastMaxPool2D",
    "Flatten",
    "GELU",
    "GlobalAvgPool",
    "INITS",
    "LAYERS",
    "Identity",
    "InPlaceDropout",
    "InPlaceReLU",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool2D",
    "Multiply",
    "ReLU",
    "Scale",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Swish",
    "Tanh",
]


#: name -> the reference class (the math, read these) and a description
LAYERS = [
    ("linear", Linear, "fully connected: y = x W + b"),
    ("relu", ReLU, "rectified linear unit: max(0, x)"),
    ("leaky_relu", LeakyReLU, "x for x > 0, alpha x otherwise"),
    ("elu", ELU, "exponential linear unit: x for x > 0, alpha (exp(x) - 1) otherwise"),
    ("gelu", GELU, "Gaussian error linear unit x Phi(x), exact or tanh approximation"),
    ("sigmoid", Sigmoid, "logistic function 1 / (1 + exp(-x))"),
    ("tanh", Tanh, "hyperbolic tangent"),
    ("softplus", Softplus, "smooth ReLU: log(1 + exp(beta x)) / beta"),
    ("swish", Swish, "x sigmoid(beta x)"),
    ("silu", SiLU, "sigmoid linear unit: x sigmoid(x)"),
    ("identity", Identity, "passes its input through"),
    ("softmax", Softmax, "softmax over the last axis (pair it with the nll loss)"),
    ("dropout", Dropout, "inverted dropout: zeroes inputs with probability p while training"),
    ("flatten", Flatten, "(batch, *shape) -> (batch, prod(shape))"),
    ("batchnorm", BatchNorm, "batch normalisation of (batch, features) over the batch, with running statistics"),
    ("conv2d", Conv2D, "2-D convolution of (channels, h, w) images by im2col: y = im2col(x) W^T + b"),
    ("maxpool2d", MaxPool2D, "the largest value of each window of each channel"),
    ("avgpool2d", AvgPool2D, "the mean of each window of each channel"),
    ("global_avg_pool", GlobalAvgPool, "the mean of each channel over the image: (c, h, w) -> (c,)"),
    ("batchnorm2d", BatchNorm2D, "batch normalisation of images per channel over batch, height and width"),
    ("layernorm", LayerNorm, "layer normalisation over the last axis"),
    ("add", Add, "graph merge: the sum of two or more inputs of one shape (a skip connection)"),
    ("concat", Concat, "graph merge: two or more inputs side by side along the feature axis"),
    ("multiply", Multiply, "graph merge: the elementwise product of two or more inputs of one shape"),
    ("scale", Scale, "y = w x, one learned scalar w"),
    ("bias", Bias, "y = x + b, one learned scalar b"),
]

#: The one place the built-in layers choose speed: each reference class here is registered as its fast
#: variant (layers/fast.py), which gives the same numbers bit for bit (tests/test_fast_variants.py).
#: Every other layer is registered as written. ``FAST.clear()`` before runner loads its plugins (or an
#: entry mapped to its own class) trains with the reference code.
FAST: dict[type, type] = {
    Linear: FastLinear,
    ReLU: InPlaceReLU,
    Dropout: InPlaceDropout,
    Conv2D: FastConv2D,
    MaxPool2D: FastMaxPool2D,
}


@hookimpl
def runner_layers():
    return [PluginSpec(name, FAST.get(cls, cls), description) for name, cls, description in LAYERS]
