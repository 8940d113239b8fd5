"""The entry point (``runner.plugins``): runner imports this module and calls its hooks.

Each hook returns a list of PluginSpec(name, factory, description); ``factory(**options)`` gets
the options from the config (``model.layers[i]``, ``loss.*``, ``optimizer.*``, ``dataset.*``).
"""

from runner.api import PluginSpec, hookimpl

from .datasets import TwoMoons
from .layers import PReLU
from .losses import SquaredHinge
from .optimizers import Lion


@hookimpl
def runner_layers():
    return [PluginSpec("prelu", PReLU, "x for x > 0, a x otherwise, with the slope a learned")]


@hookimpl
def runner_losses():
    return [PluginSpec("squared_hinge", SquaredHinge, "binary: mean of max(0, 1 - s z)^2, s = +-1 from 0/1 targets")]


@hookimpl
def runner_optimizers():
    return [PluginSpec("lion", Lion, "sign of an interpolated momentum (Chen et al. 2023), decoupled weight decay")]


@hookimpl
def runner_datasets():
    return [PluginSpec("two_moons", TwoMoons, "two interleaving half circles, 2 features, binary")]
