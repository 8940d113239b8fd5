"""The plugin as runner sees it: its hooks, registered for one test, and its Hydra configs."""

from importlib import metadata, resources

import numpy as np
import pytest
from runner_plugin_example import plugin

from runner.api import Meta
from runner.testing import build_model, plugin_registry


@pytest.fixture
def registry():
    """runner's built-ins plus this plugin, registered for this one test (nothing global changes)."""
    return plugin_registry(plugin)


def test_each_kind_is_provided(registry):
    assert "prelu" in registry.names("layer")
    assert "squared_hinge" in registry.names("loss")
    assert "lion" in registry.names("optimizer")
    assert "two_moons" in registry.names("dataset")
    assert registry.get("layer", "prelu", "test").provider.module == "runner_plugin_example.plugin"


def test_a_model_with_prelu_builds_from_config(registry):
    layers = [{"type": "linear", "out": 8}, {"type": "prelu", "shared": False}, {"type": "linear", "out": "auto"}]
    model = build_model(layers, registry, Meta("two_moons", (2,), 1, "binary"), np.random.default_rng(0), np.float32)
    assert list(model.params) == ["0.linear.W", "0.linear.b", "1.prelu.alpha", "2.linear.W", "2.linear.b"]


def test_configs_ship_with_the_package():
    conf = resources.files("runner_plugin_example") / "conf"
    for group, name in [("dataset", "two_moons"), ("loss", "squared_hinge"), ("optimizer", "lion"), ("experiment", "two_moons")]:
        assert (conf / group / f"{name}.yaml").is_file(), f"{group}/{name}.yaml is not packaged"


def test_installed_entry_points_point_at_this_package():
    dist = metadata.distribution("runner-plugin-example")
    eps = {(ep.group, ep.name): ep.value for ep in dist.entry_points}
    assert eps[("runner.plugins", "example")] == "runner_plugin_example.plugin"
    assert eps[("runner.configs", "example")] == "runner_plugin_example.conf"
