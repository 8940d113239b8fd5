"""The four hooks a plugin may implement, one per kind. Each returns a list of records."""

from __future__ import annotations

import pluggy

from runner.api import PluginSpec

hookspec = pluggy.HookspecMarker("runner")


@hookspec
def runner_layers() -> list[PluginSpec]:
    """Layers: ``factory(**options) -> Layer``; options come from the layer's config entry."""


@hookspec
def runner_losses() -> list[PluginSpec]:
    """Losses: ``factory(**options) -> Loss``."""


@hookspec
def runner_optimizers() -> list[PluginSpec]:
    """Optimizers: ``factory(**options) -> Optimizer`` (``lr`` and friends from ``optimizer.*``)."""


@hookspec
def runner_datasets() -> list[PluginSpec]:
    """Datasets: ``factory(**options) -> Dataset`` (options from ``dataset.*``)."""
