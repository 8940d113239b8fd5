"""docs/plugins.md keeps up with the code, and its minimal plugin works as written: the files are
taken from the guide, pip-installed for real, listed, tested and trained with."""

import inspect
import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from pip_installs import clean_environ, list_plugins, pip_install, plugin_env, write_distribution

from runner.plugins import hookspecs
from runner.plugins import settings as plugin_settings

GUIDE = (ROOT / "docs" / "plugins.md").read_text()


def hooks() -> list[str]:
    return [name for name, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "runner_spec")]


def test_every_hook_in_the_hookspec_module_has_its_section():
    assert len(hooks()) >= 4
    for name in hooks():
        signature = f"def {name}{inspect.signature(getattr(hookspecs, name))}".replace("'", "")
        assert f"\n### `{name}()`\n" in GUIDE, f"docs/plugins.md has no section '### `{name}()`'"
        assert signature in GUIDE, f"docs/plugins.md does not give the signature {signature!r}"


def test_every_switch_is_documented_and_in_the_primary_config():
    for variable in (plugin_settings.ENV_DISABLE, plugin_settings.ENV_ALLOW, plugin_settings.ENV_STRICT):
        assert f"`{variable}=" in GUIDE
    for key in plugin_settings.CONFIG_KEYS:
        assert f"`plugins.{key}" in GUIDE
    config = (ROOT / "conf" / "config.yaml").read_text()
    section = re.search(r"^plugins:.*?\n((?:  .*\n)+)", config, flags=re.M).group(1)
    assert re.findall(r"^  (\w+):", section, flags=re.M) == list(plugin_settings.CONFIG_KEYS)


def test_the_readme_points_plugin_authors_to_the_guide():
    assert "docs/plugins.md" in (ROOT / "README.md").read_text()


def guide_files() -> dict[str, str]:
    """The files of the guide's complete plugin: each code block under a bold file name."""
    return dict(re.findall(r"\*\*`([^`]+)`\*\*\n\n```\w*\n(.*?)```", GUIDE, flags=re.S))


def guide_commands() -> list[str]:
    block = GUIDE.split("## A complete plugin in five minutes", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for b in re.findall(r"```bash\n(.*?)```", block, flags=re.S) for line in b.splitlines()]


@pytest.mark.slow  # pip-installs the guide's plugin, then a whole run
def test_the_guides_minimal_plugin_works_as_written(tmp_path, runner_cli):
    files = guide_files()
    assert set(files) == {
        "runner-learned-swish/pyproject.toml",
        "runner-learned-swish/runner_learned_swish.py",
        "runner-learned-swish/tests/test_learned_swish.py",
    }
    source = write_distribution(tmp_path, {name: text for name, text in files.items()}) / "runner-learned-swish"
    commands = guide_commands()
    assert commands[:2] == ["cd runner-learned-swish", "pip install -e ."] and commands[-1] == "python -m pytest"
    site = pip_install(source, tmp_path / "site")  # a regular install stands for the guide's editable one
    env = plugin_env(site)

    assert commands[2] == "python -m runner.plugins"
    listed = list_plugins(tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    row = "layer  learned_swish  runner-learned-swish  0.1.0  runner_learned_swish"
    assert row.split() in [line.split() for line in listed.stdout.splitlines()]
    assert f"`{row}`" in GUIDE

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
        cwd=tmp_path,
        env={**clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0 and "4 passed" in tests.stdout, tests.stdout[-3000:] + tests.stderr[-2000:]

    run_command = commands[3]
    assert run_command.startswith("python -m runner ")
    result = runner_cli(*run_command.split()[3:], env=env)
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("default")
    assert run.data.metrics["gradcheck/1.learned_swish.beta/rel_error"] <= 1e-6  # the guide says it is there
    assert "`gradcheck/1.learned_swish.beta/rel_error`" in GUIDE
    assert run.data.tags["runner.plugin.layer.learned_swish"] == "runner-learned-swish 0.1.0 (runner_learned_swish)"
    assert "`runner.plugin.layer.learned_swish = runner-learned-swish 0.1.0 (runner_learned_swish)`" in GUIDE
    assert json.loads(list_plugins(tmp_path, "--json", env=env).stdout)["failed"] == []
