"""Discovery in-process: the switches as parsed, and plugin objects that are wrong in each way a
plugin author can get them wrong, registered with runner.testing.plugin_registry."""

import numpy as np
import pytest

from runner.api import PluginSpec, RunnerError, hookimpl
from runner.plugins.configs import ConfigDir, config_conflicts, resolve
from runner.plugins.entry_points import Installed
from runner.plugins.settings import PluginSettings
from runner.testing import check_loss, plugin_registry


def settings(config=None, **environ):
    return PluginSettings.from_sources(config, environ)


# --------------------------------------------------------------------------- switches


def test_names_are_distributions_compared_as_pip_does_or_one_entry_point():
    s = settings(RUNNER_DISABLE_PLUGINS="Runner_Plugin.Example, other-dist:layers")
    assert s.exclusion("runner-plugin-example", "example") == "disabled by RUNNER_DISABLE_PLUGINS"
    assert s.exclusion("other_dist", "layers") == "disabled by RUNNER_DISABLE_PLUGINS"
    assert s.exclusion("other-dist", "losses") is None


def test_allow_lists_keep_the_built_ins_and_every_list_given_narrows():
    assert settings(RUNNER_ALLOW_PLUGINS="").exclusion("runner", "layers") is None
    assert (
        settings(RUNNER_ALLOW_PLUGINS="").exclusion("x", "y")
        == "not in the allow-list RUNNER_ALLOW_PLUGINS (empty: built-ins only)"
    )
    both = settings({"allow": ["a", "b"]}, RUNNER_ALLOW_PLUGINS="b,c")
    assert both.exclusion("b", "e") is None
    assert both.exclusion("a", "e") == "not in the allow-list RUNNER_ALLOW_PLUGINS"
    assert both.exclusion("c", "e") == "not in the allow-list plugins.allow"
    assert settings({"allow": None}).allow == ()  # null: everything


def test_disable_lists_add_up_and_strict_is_on_if_either_says_so():
    s = settings({"disable": ["a"], "strict": False}, RUNNER_DISABLE_PLUGINS="b", RUNNER_STRICT_PLUGINS="1")
    assert (
        s.exclusion("a", "e") == "disabled by plugins.disable" and s.exclusion("b", "e") == "disabled by RUNNER_DISABLE_PLUGINS"
    )
    assert s.strict and s.strict_source == "RUNNER_STRICT_PLUGINS=1"
    assert settings({"strict": True}, RUNNER_STRICT_PLUGINS="0").strict  # the environment only tightens
    assert not settings(RUNNER_STRICT_PLUGINS="0").strict


@pytest.mark.parametrize(
    "config, environ, message",
    [
        ({"disable": "not a name"}, {}, "plugins.disable: 'not a name' is not a distribution name"),
        ({"disable": [3]}, {}, "plugins.disable: expected distribution names (strings), got 3"),
        ({"allow": {"a": 1}}, {}, "plugins.allow: expected a list of distribution names"),
        ({"disabled": []}, {}, "plugins.disabled: unknown key; the plugins section takes disable, allow, strict"),
        ({"strict": "maybe"}, {}, "plugins.strict: expected 1 or 0 (true or false), got 'maybe'"),
        ({}, {"RUNNER_STRICT_PLUGINS": "maybe"}, "RUNNER_STRICT_PLUGINS: expected 1 or 0"),
        ({}, {"RUNNER_DISABLE_PLUGINS": "dist:"}, "RUNNER_DISABLE_PLUGINS: 'dist:' is not a distribution name"),
    ],
)
def test_a_bad_switch_names_what_was_written(config, environ, message):
    with pytest.raises(RunnerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PluginSettings.from_sources(config, environ)


def test_items_that_name_nothing_installed_are_warned_about():
    s = settings({"disable": ["runner-plugin-exmaple"]}, RUNNER_ALLOW_PLUGINS="runner:layers")
    assert s.unmatched([("runner", "layers")]) == [
        "plugins.disable: 'runner-plugin-exmaple' names no installed plugin distribution; installed: runner"
    ]


# --------------------------------------------------------------------------- plugin objects


class Named:
    """A plugin object whose hooks are set per test."""

    def __init__(self, name="my_plugin", **hooks):
        self.__name__ = name
        for hook, function in hooks.items():
            setattr(self, hook, function)


def spec_list(*specs):
    return hookimpl(lambda: list(specs))


def test_a_plugin_object_registered_for_one_test_sits_beside_the_built_ins():
    registry = plugin_registry(Named(runner_layers=spec_list(PluginSpec("mine", object, "mine"))))
    entry = registry.get("layer", "mine", "test")
    assert entry.provider.module == "my_plugin" and entry.provider.distribution == "(not installed)"
    assert "relu" in registry.names("layer")
    assert plugin_registry(Named(runner_layers=spec_list(PluginSpec("mine", object))), builtins=False).names("layer") == ["mine"]
    assert "mine" not in plugin_registry().names("layer")  # nothing global changed


@pytest.mark.parametrize(
    "plugin, message",
    [
        (
            Named(runner_layers=spec_list(PluginSpec("PReLU", object))),
            "plugin my_plugin: runner_layers(): layer name 'PReLU' is not allowed; "
            "names are lowercase letters, digits and underscores",
        ),
        (
            Named(runner_layers=spec_list(PluginSpec("ok", "not callable"))),
            "runner_layers(): layer 'ok' has a factory that is not callable",
        ),
        (
            Named(runner_losses=hookimpl(lambda: None)),
            "runner_losses() returned None; expected a list of PluginSpec (return [] to provide none)",
        ),
        (
            Named(runner_losses=spec_list(("mse", object))),
            "runner_losses() item 0 is ('mse', <class 'object'>); expected a PluginSpec",
        ),
        (
            Named(runner_layer=spec_list()),
            "implements 'runner_layer', which is not a runner hook (did you mean 'runner_layers'?)",
        ),
        (Named(runner_datasets=lambda: []), "runner_datasets is not marked with @hookimpl (from runner.api import hookimpl)"),
        (Named(), "implements none of runner's hooks (runner_layers, runner_losses, runner_optimizers, runner_datasets)"),
    ],
)
def test_a_plugin_object_that_is_wrong_says_how(plugin, message):
    with pytest.raises(RunnerError) as e:
        plugin_registry(plugin)
    assert message in str(e.value)


def test_an_exception_in_a_hook_of_an_object_under_test_propagates():
    def boom():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        plugin_registry(Named(runner_optimizers=hookimpl(boom)))


def test_an_unknown_name_says_which_installed_plugins_were_not_loaded():
    from runner.plugins.registry import Registry

    with pytest.raises(RunnerError) as e:
        Registry([], ["runner-plugin-example 0.1.0 disabled by RUNNER_DISABLE_PLUGINS"]).get("layer", "prelu", "model.activation")
    assert str(e.value) == (
        "model.activation: unknown layer 'prelu'; available: none; installed but not loaded: "
        "runner-plugin-example 0.1.0 disabled by RUNNER_DISABLE_PLUGINS"
    )


# --------------------------------------------------------------------------- configs and the loss checker


def test_a_config_file_provided_twice_is_found(tmp_path):
    source = Installed("runner.configs", "conf", "x.conf", "runner-x", "1.0", None)
    (tmp_path / "main" / "dataset").mkdir(parents=True)
    (tmp_path / "main" / "dataset" / "iris.yaml").write_text("name: iris\n")
    ours = ConfigDir(source, tmp_path / "x", ("dataset/iris.yaml", "dataset/mine.yaml"))
    theirs = ConfigDir(
        Installed("runner.configs", "c", "y.conf", "runner-y", "2.0", None), tmp_path / "y", ("dataset/mine.yaml",)
    )
    problems = config_conflicts(tmp_path / "main", [ours, theirs])
    assert len(problems) == 2
    assert problems[0].startswith(
        f"config dataset/iris.yaml is provided twice: by runner's own conf ({tmp_path / 'main'}) and by runner-x 1.0"
    )
    assert (
        problems[1].startswith("config dataset/mine.yaml is provided twice: by runner-x 1.0")
        and "and by runner-y 2.0" in problems[1]
    )


def test_config_directories_are_found_without_importing(tmp_path, monkeypatch):
    package = tmp_path / "runner_cfg_probe"
    (package / "conf" / "dataset").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve("runner_cfg_probe.conf") == (package / "conf").resolve()
    with pytest.raises(FileNotFoundError, match="no directory runner_cfg_probe/missing/"):
        resolve("runner_cfg_probe.missing")
    with pytest.raises(ValueError, match="names an object"):
        resolve("runner_cfg_probe:conf")


def test_check_loss_finds_a_wrong_backward():
    class Wrong:
        def forward(self, pred, target):
            self.d = pred - target
            return float(np.mean(self.d**2))

        def backward(self):
            return self.d / self.d.size  # the factor 2 is missing

    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    assert check_loss(Wrong(), pred, target).rel_error == pytest.approx(1 / 3, rel=1e-6)


def test_a_name_plugin_registry_lacks_is_said_in_a_plugin_authors_terms(monkeypatch):
    from runner.plugins import discovery

    registry = plugin_registry(Named(runner_layers=spec_list(PluginSpec("mine", object))))
    with pytest.raises(RunnerError) as e:
        registry.get("layer", "mien", "test")
    message = str(e.value)
    assert message.startswith(
        "test: layer 'mien' is not registered (did you mean 'mine'?): your plugin object passed to "
        "plugin_registry (my_plugin) provides mine; runner's built-ins provide add, avgpool2d, batchnorm, "
    )
    assert "allow-list" not in message and "not installed" not in message
    with pytest.raises(
        RunnerError,
        match="loss 'x' is not registered: your plugin object passed to plugin_registry "
        r"\(my_plugin\) provides no loss; runner's built-ins provide ",
    ):
        registry.get("loss", "x", "test")

    other = Installed("runner.plugins", "other", "runner_other", "runner-other", "1.0", None)  # installed, never imported
    real = discovery.installed
    monkeypatch.setattr(discovery, "installed", lambda group: real(group) + ([other] if group == "runner.plugins" else []))
    with pytest.raises(RunnerError) as e:
        plugin_registry(builtins=False).get("layer", "relu", "test")
    assert str(e.value) == (
        "test: layer 'relu' is not registered: no plugin object was passed to plugin_registry; runner's "
        "built-ins are left out (builtins=False); installed plugin distributions are left out (runner-other "
        "1.0): pass their plugin objects to plugin_registry as well to use them"
    )


def test_a_name_clash_in_plugin_registry_names_the_plugin_object_passed():
    with pytest.raises(RunnerError) as e:
        plugin_registry(Named(runner_layers=spec_list(PluginSpec("relu", object))))
    assert str(e.value) == (
        "layer 'relu' is provided twice: by runner's built-ins, runner 0.1.0 (runner.builtins.layers), and by your "
        "plugin object my_plugin (passed to plugin_registry); rename yours: a layer's name is unique across "
        "runner's built-ins and every plugin"
    )
    with pytest.raises(
        RunnerError,
        match=r"layer 'mine' is provided twice: by your plugin object first \(passed to plugin_registry\) "
        r"and by your plugin object second \(passed to plugin_registry\); pass each plugin object "
        "once, or rename one of the two",
    ):
        plugin_registry(*(Named(name, runner_layers=spec_list(PluginSpec("mine", object))) for name in ("first", "second")))
