"""What plugin authors use in their own tests.

- ``check_layer``: the gradient checker runner runs on every model, on one layer alone;
- ``check_loss``: the same for a loss's ``backward`` against its ``forward``;
- ``plugin_registry``: runner's built-ins plus your plugin object, registered for one test,
  exactly as a run would see them (nothing needs to be installed);
- ``build_model``: a whole model from layer configs and such a registry, as a run builds it;
- ``LayerContract``, ``MergeLayerContract`` (a graph's nodes of several inputs), ``LossContract``,
  ``OptimizerContract``, ``DatasetContract``: classes to
  subclass in a test module; pytest then runs every check of the contract on your plugin
  (``runner.contracts``).
"""

from __future__ import annotations

from runner.contracts import DatasetContract, LayerContract, LossContract, MergeLayerContract, OptimizerContract
from runner.core.gradcheck import Check, check_layer, check_loss, check_model, max_rel_error
from runner.core.model import build_model
from runner.plugins.discovery import ObjectRegistry, discover
from runner.plugins.registry import Registry
from runner.plugins.settings import PluginSettings, Selector

__all__ = [
    "Check",
    "DatasetContract",
    "LayerContract",
    "LossContract",
    "MergeLayerContract",
    "OptimizerContract",
    "build_model",
    "check_layer",
    "check_loss",
    "check_model",
    "max_rel_error",
    "plugin_registry",
]


def plugin_registry(*plugins: object, builtins: bool = True) -> Registry:
    """A registry of runner's built-in plugins (``builtins=False``: none) and ``plugins`` -- modules,
    classes or instances with ``@hookimpl`` functions -- registered as they are. Other installed
    plugin distributions are left out, so an installed copy of the plugin under test does not clash.
    A problem with one of ``plugins`` (a bad name, a hook that raises, a name provided twice) raises.
    """
    allow = (("runner.testing.plugin_registry", ()),)  # an empty allow-list: built-ins only
    disable = () if builtins else (Selector("runner", "plugin_registry(builtins=False)", "runner"),)
    return ObjectRegistry(discover(PluginSettings(disable=disable, allow=allow), extra=plugins), builtins)
