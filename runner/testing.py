"""What plugin authors use in their own tests.

- ``check_layer``: the gradient checker runner runs on every model, on one layer alone;
- ``check_loss``: the same for a loss's ``backward`` against its ``forward``;
- ``plugin_registry``: runner's built-ins plus your plugin object, registered for one test,
  exactly as a run would see them (nothing needs to be installed).
"""
from __future__ import annotations

import numpy as np

from runner.api import Loss
from runner.discovery import discover
from runner.gradcheck import Check, check_array, check_layer, check_model, max_rel_error
from runner.plugin_settings import PluginSettings, Selector
from runner.registry import Registry

__all__ = ["Check", "check_layer", "check_loss", "check_model", "max_rel_error", "plugin_registry"]


def check_loss(loss: Loss, pred: np.ndarray, target: np.ndarray, eps: float = 1e-6, seed: int = 0) -> Check:
    """``loss.backward()`` against central differences of ``loss.forward`` in ``pred``, in float64."""
    pred = np.array(pred, dtype=np.float64)
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.floating):
        target = target.astype(np.float64)
    loss.forward(pred, target)
    analytic = np.array(loss.backward(), dtype=np.float64)
    if analytic.shape != pred.shape:
        raise AssertionError(f"backward() gave shape {analytic.shape}; expected the shape of pred, {pred.shape}")
    return check_array(lambda: float(loss.forward(pred, target)), pred, analytic, eps, None, np.random.default_rng(seed))


def plugin_registry(*plugins: object, builtins: bool = True) -> Registry:
    """A registry of runner's built-in plugins (``builtins=False``: none) and ``plugins`` -- modules,
    classes or instances with ``@hookimpl`` functions -- registered as they are. Other installed
    plugin distributions are left out, so an installed copy of the plugin under test does not clash.
    A problem with one of ``plugins`` (a bad name, a hook that raises, a name provided twice) raises.
    """
    allow = (("runner.testing.plugin_registry", ()),)  # an empty allow-list: built-ins only
    disable = () if builtins else (Selector("runner", "plugin_registry(builtins=False)", "runner"),)
    return discover(PluginSettings(disable=disable, allow=allow), extra=plugins).registry()
