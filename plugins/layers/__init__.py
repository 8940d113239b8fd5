"""Built-in layers. Each keeps what its backward needs; inputs are (batch, *shape), float32 stays float32."""

from runner.api import PluginSpec, hookimpl

from .activations import ELU, GELU, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Softplus, Swish, Tanh
from .dropout import Dropout
from .linear import INITS, Linear
from .merge import Add, Bias, Concat, Multiply, Scale
from .normalization import BatchNorm, LayerNorm
from .shape import Flatten

__all__ = [
    "Add",
    "BatchNorm",
    "Bias",
    "Concat",
    "Dropout",
    "ELU",
    "Flatten",
    "GELU",
    "INITS",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
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


@hookimpl
def runner_layers():
    return [
        PluginSpec("linear", Linear, "fully connected: y = x W + b"),
        PluginSpec("relu", ReLU, "rectified linear unit: max(0, x)"),
        PluginSpec("leaky_relu", LeakyReLU, "x for x > 0, alpha x otherwise"),
        PluginSpec("elu", ELU, "exponential linear unit: x for x > 0, alpha (exp(x) - 1) otherwise"),
        PluginSpec("gelu", GELU, "Gaussian error linear unit x Phi(x), exact or tanh approximation"),
        PluginSpec("sigmoid", Sigmoid, "logistic function 1 / (1 + exp(-x))"),
        PluginSpec("tanh", Tanh, "hyperbolic tangent"),
        PluginSpec("softplus", Softplus, "smooth ReLU: log(1 + exp(beta x)) / beta"),
        PluginSpec("swish", Swish, "x sigmoid(beta x)"),
        PluginSpec("silu", SiLU, "sigmoid linear unit: x sigmoid(x)"),
        PluginSpec("identity", Identity, "passes its input through"),
        PluginSpec("softmax", Softmax, "softmax over the last axis (pair it with the nll loss)"),
        PluginSpec("dropout", Dropout, "inverted dropout: zeroes inputs with probability p while training"),
        PluginSpec("flatten", Flatten, "(batch, *shape) -> (batch, prod(shape))"),
        PluginSpec("batchnorm", BatchNorm, "batch normalisation of (batch, features) over the batch, with running statistics"),
        PluginSpec("layernorm", LayerNorm, "layer normalisation over the last axis"),
        PluginSpec("add", Add, "graph merge: the sum of two or more inputs of one shape (a skip connection)"),
        PluginSpec("concat", Concat, "graph merge: two or more inputs side by side along the feature axis"),
        PluginSpec("multiply", Multiply, "graph merge: the elementwise product of two or more inputs of one shape"),
        PluginSpec("scale", Scale, "y = w x, one learned scalar w"),
        PluginSpec("bias", Bias, "y = x + b, one learned scalar b"),
    ]
