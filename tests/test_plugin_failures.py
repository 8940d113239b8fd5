"""Plugins that break, clash or are switched off, pip-installed for real: a broken entry point is
listed and skipped, strict mode stops clearly, a name provided twice names both distributions,
and the disable and allow-list switches (environment and config) work before anything is imported."""

import json

import pytest
from pip_installs import clashing_config_distribution, list_plugins, pip_install, plugin_env

BROKEN = "runner-broken-plugin 0.0.1"


def listing(cwd, *sites, args=(), **variables):
    proc = list_plugins(cwd, "--json", *args, env=plugin_env(*sites, **variables))
    return proc, json.loads(proc.stdout)


def test_a_broken_entry_point_is_listed_with_its_error_and_the_rest_loads(broken_site, tmp_path):
    proc = list_plugins(tmp_path, env=plugin_env(broken_site))
    assert proc.returncode == 0, proc.stderr
    assert "failed to load (skipped; RUNNER_STRICT_PLUGINS=1 makes this fatal):" in proc.stdout
    assert (
        f"{BROKEN}, entry point 'import_error' = runner_broken_import [runner.plugins]: "
        "RuntimeError: this plugin is broken on purpose (at "
    ) in proc.stdout
    assert (
        "entry point 'hook_error' = runner_broken_hook [runner.plugins]: "
        "runner_losses() raised ValueError: the hook is broken on purpose" in proc.stdout
    )
    assert ("layer", "still_works", "runner-broken-plugin", "0.0.1") in {
        tuple(line.split()[:4]) for line in proc.stdout.splitlines()
    }
    _, report = listing(tmp_path, broken_site, args=("--traceback",))
    failed = {f["entry_point"]: f for f in report["failed"]}
    assert set(failed) == {"import_error", "hook_error"}
    assert (failed["import_error"]["distribution"], failed["import_error"]["version"]) == ("runner-broken-plugin", "0.0.1")
    assert 'raise RuntimeError("this plugin is broken on purpose")' in failed["import_error"]["traceback"]


def test_runs_that_do_not_use_a_broken_plugin_still_work(broken_site, runner_cli):
    result = runner_cli("trainer.epochs=2", env=plugin_env(broken_site))
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("default")
    assert run.info.status == "FINISHED"
    failed = run.data.tags["runner.plugins.failed"]
    assert (
        "'import_error' (runner_broken_import) of runner-broken-plugin 0.0.1: RuntimeError: this plugin is broken on purpose"
        in failed
    )
    assert "runner_losses() raised ValueError" in failed
    assert run.data.tags["runner.plugins"] == "runner 0.1.0, runner-broken-plugin 0.0.1"  # its working entry point
    log = (next((result.cwd / "outputs" / "runs").rglob("runner.log"))).read_text()
    assert "WARNING" in log and "runner-broken-plugin 0.0.1 failed to load and was skipped: RuntimeError" in log


def test_strict_mode_makes_a_broken_plugin_fatal(broken_site, runner_cli, tmp_path):
    result = runner_cli("trainer.epochs=2", env=plugin_env(broken_site, RUNNER_STRICT_PLUGINS="1"))
    assert result.proc.returncode == 1
    message = result.proc.stderr.strip().splitlines()[-1]
    assert message.startswith("runner: error: RUNNER_STRICT_PLUGINS=1: entry point ")
    assert (
        "entry point 'import_error' (runner_broken_import) of runner-broken-plugin 0.0.1: RuntimeError: this plugin is broken"
        in message
    )
    assert (
        "entry point 'hook_error' (runner_broken_hook) of runner-broken-plugin 0.0.1: runner_losses() raised ValueError"
        in message
    )
    assert "disable it: RUNNER_DISABLE_PLUGINS=runner-broken-plugin" in message and "Traceback" not in result.proc.stderr
    assert result.runs("default") == []  # stopped before anything was recorded
    config_strict = runner_cli("plugins.strict=true", env=plugin_env(broken_site))
    assert config_strict.proc.returncode == 1 and "runner: error: plugins.strict=true: entry point " in config_strict.proc.stderr
    listed = list_plugins(tmp_path, env=plugin_env(broken_site, RUNNER_STRICT_PLUGINS="1"))
    assert listed.returncode == 1 and "failed to load (fatal: strict mode)" in listed.stdout
    assert "runner.plugins: error: RUNNER_STRICT_PLUGINS=1" in listed.stderr


def test_a_layer_name_provided_twice_names_both_distributions(example_site, duplicate_site, runner_cli, tmp_path):
    expected = (
        "layer 'prelu' is provided twice: by runner-duplicate-prelu 2.0.0 (runner_duplicate_prelu) "
        "and by runner-plugin-example 0.1.0 (runner_plugin_example.plugin)"
    )
    result = runner_cli("model.activation=relu", env=plugin_env(example_site, duplicate_site))
    assert result.proc.returncode == 1
    assert f"runner: error: {expected}; uninstall or disable one of them" in result.proc.stderr
    proc, report = listing(tmp_path, example_site, duplicate_site)
    assert proc.returncode == 1 and report["conflicts"] == [
        f"{expected}; uninstall or disable one of them, e.g. RUNNER_DISABLE_PLUGINS=runner-plugin-example"
    ]
    assert expected in proc.stderr


@pytest.mark.parametrize(
    "variable, value",
    [
        ("RUNNER_DISABLE_PLUGINS", "runner-duplicate-prelu"),
        ("RUNNER_DISABLE_PLUGINS", "Runner_Duplicate.Prelu:layers"),
        ("RUNNER_ALLOW_PLUGINS", "runner-plugin-example, runner-broken-plugin"),
    ],
)
def test_switching_one_distribution_off_resolves_the_clash(example_site, duplicate_site, tmp_path, variable, value):
    proc, report = listing(tmp_path, example_site, duplicate_site, **{variable: value})
    assert proc.returncode == 0 and report["conflicts"] == []
    prelu = [p for p in report["plugins"] if p["name"] == "prelu"]
    assert [p["distribution"] for p in prelu] == ["runner-plugin-example"]
    reason = (
        "disabled by RUNNER_DISABLE_PLUGINS"
        if variable == "RUNNER_DISABLE_PLUGINS"
        else "not in the allow-list RUNNER_ALLOW_PLUGINS"
    )
    assert [(s["distribution"], s["reason"]) for s in report["skipped"]] == [("runner-duplicate-prelu", reason)]


def test_a_disabled_plugin_is_never_imported(broken_site, tmp_path):
    proc, report = listing(
        tmp_path,
        broken_site,
        RUNNER_DISABLE_PLUGINS="runner-broken-plugin:import_error,runner-broken-plugin:hook_error",
        RUNNER_STRICT_PLUGINS="1",
    )
    assert proc.returncode == 0, proc.stderr  # strict, yet nothing failed: the broken modules were not imported
    assert report["failed"] == [] and {s["entry_point"] for s in report["skipped"]} == {"import_error", "hook_error"}
    assert "still_works" in {p["name"] for p in report["plugins"]}


def test_an_empty_allow_list_means_built_ins_only(example_site, broken_site, tmp_path):
    proc, report = listing(tmp_path, example_site, broken_site, RUNNER_ALLOW_PLUGINS="")
    assert proc.returncode == 0
    assert {p["distribution"] for p in report["plugins"]} == {"runner"} and report["failed"] == [] and report["configs"] == []
    assert {s["reason"] for s in report["skipped"]} == {"not in the allow-list RUNNER_ALLOW_PLUGINS (empty: built-ins only)"}


def test_a_typo_in_a_switch_is_a_warning_and_fatal_when_strict(tmp_path):
    proc, report = listing(tmp_path, RUNNER_DISABLE_PLUGINS="runner-plugin-exmaple")
    assert proc.returncode == 0
    assert report["warnings"] == [
        "RUNNER_DISABLE_PLUGINS: 'runner-plugin-exmaple' names no installed plugin distribution; installed: runner"
    ]
    assert listing(tmp_path, RUNNER_DISABLE_PLUGINS="runner-plugin-exmaple", RUNNER_STRICT_PLUGINS="1")[0].returncode == 1


def test_the_config_keys_switch_plugins_off_for_one_run(example_site, runner_cli):
    env = plugin_env(example_site)
    disabled = runner_cli("+experiment=two_moons", "plugins.disable=[runner-plugin-example]", env=env)
    assert disabled.proc.returncode == 1
    assert (
        "runner: error: dataset.name: unknown dataset 'two_moons'; available: fashion_mnist, iris, iris_binary, linear, "
        "mnist, regression, spirals; installed but not loaded: runner-plugin-example 0.1.0 disabled by plugins.disable"
    ) in disabled.proc.stderr
    built_ins_only = runner_cli("+experiment=two_moons", "plugins.allow=[]", env=env)
    assert built_ins_only.proc.returncode == 1
    assert "runner-plugin-example 0.1.0 not in the allow-list plugins.allow (empty: built-ins only)" in built_ins_only.proc.stderr
    bad = runner_cli("plugins.disable=[not a name]", env=env)
    assert (
        bad.proc.returncode == 1 and "runner: error: plugins.disable: 'not a name' is not a distribution name" in bad.proc.stderr
    )


def test_the_environment_switches_plugin_configs_off_too(example_site, runner_cli):
    result = runner_cli("+experiment=two_moons", env=plugin_env(example_site, RUNNER_DISABLE_PLUGINS="runner-plugin-example"))
    assert result.proc.returncode == 1 and "Could not find 'experiment/two_moons'" in result.proc.stderr


def test_a_config_file_provided_twice_names_both(tmp_path, runner_cli):
    site = pip_install(clashing_config_distribution(tmp_path / "src"), tmp_path / "site")
    result = runner_cli("trainer.epochs=1", env=plugin_env(site))
    assert result.proc.returncode == 1
    assert "runner: error: config dataset/iris.yaml is provided twice: by runner's own conf (" in result.proc.stderr
    assert "and by runner-config-clash 0.1.0 (" in result.proc.stderr
    assert (
        runner_cli(
            "trainer.epochs=1", "--cfg", "job", env=plugin_env(site, RUNNER_DISABLE_PLUGINS="runner-config-clash")
        ).proc.returncode
        == 0
    )
    proc, report = listing(tmp_path, site)
    assert proc.returncode == 1 and report["conflicts"][0].startswith("config dataset/iris.yaml is provided twice")
