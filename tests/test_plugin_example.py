"""examples/runner-plugin-example, pip-installed for real: its four plugins in one run, listed
with its version, and its own tests passing against the installed copy."""

import json
import subprocess
import sys

from pip_installs import EXAMPLE, clean_environ, list_plugins, plugin_env

GRADCHECK_LIMIT = 1e-6


def test_a_run_with_the_examples_layer_loss_optimizer_and_dataset(example_site, runner_cli):
    result = runner_cli("+experiment=two_moons", env=plugin_env(example_site))
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("two_moons")
    assert run.info.status == "FINISHED"
    metrics, tags, params = run.data.metrics, run.data.tags, run.data.params
    # the plugin's layer is gradient-checked like a built-in: both PReLU layers of 2-16-16-1
    assert metrics["gradcheck/1.prelu.alpha/rel_error"] <= GRADCHECK_LIMIT
    assert metrics["gradcheck/3.prelu.alpha/rel_error"] <= GRADCHECK_LIMIT
    assert "gradcheck/1.prelu.alpha/max_abs_diff" in metrics and tags["runner.gradcheck"] == "passed"
    assert metrics["test/accuracy"] >= 0.95
    for kind, name in [("layer", "prelu"), ("loss", "squared_hinge"), ("optimizer", "lion"), ("dataset", "two_moons")]:
        assert tags[f"runner.plugin.{kind}.{name}"] == "runner-plugin-example 0.1.0 (runner_plugin_example.plugin)"
    assert tags["runner.plugins"] == "runner 0.1.0, runner-plugin-example 0.1.0"
    assert (params["dataset.name"], params["loss.name"], params["optimizer.name"], params["model.activation"]) == (
        "two_moons",
        "squared_hinge",
        "lion",
        "prelu",
    )
    listing = json.loads(open(result.client().download_artifacts(run.info.run_id, "plugins.json", str(result.cwd))).read())
    prelu = next(p for p in listing["plugins"] if p["name"] == "prelu")
    assert (prelu["distribution"], prelu["version"], prelu["kind"]) == ("runner-plugin-example", "0.1.0", "layer")
    assert listing["failed"] == [] and listing["configs"][0]["distribution"] == "runner-plugin-example"


def test_the_listing_names_each_plugin_with_its_distribution_and_version(example_site, tmp_path):
    proc = list_plugins(tmp_path, env=plugin_env(example_site))
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(line.split()) for line in proc.stdout.splitlines()}
    assert ("layer", "prelu", "runner-plugin-example", "0.1.0", "runner_plugin_example.plugin") in rows
    assert ("layer", "linear", "runner", "0.1.0", "runner.builtins.layers") in rows
    assert "dataset/two_moons, experiment/two_moons, loss/squared_hinge, optimizer/lion" in proc.stdout
    machine = json.loads(list_plugins(tmp_path, "--json", env=plugin_env(example_site)).stdout)
    ours = {(p["kind"], p["name"]) for p in machine["plugins"] if p["distribution"] == "runner-plugin-example"}
    assert ours == {("layer", "prelu"), ("loss", "squared_hinge"), ("optimizer", "lion"), ("dataset", "two_moons")}
    assert {p["version"] for p in machine["plugins"] if p["distribution"] == "runner-plugin-example"} == {"0.1.0"}
    assert machine["failed"] == machine["skipped"] == machine["conflicts"] == []


def test_the_examples_own_tests_pass_against_the_installed_copy(example_site, tmp_path):
    """Run from tmp_path so that the import finds the pip-installed package, not the source tree."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=tmp_path,
        env={**clean_environ(), **plugin_env(example_site), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    assert (
        str(example_site)
        in subprocess.run(
            [sys.executable, "-c", "import runner_plugin_example; print(runner_plugin_example.__file__)"],
            cwd=tmp_path,
            env={**clean_environ(), **plugin_env(example_site)},
            capture_output=True,
            text=True,
        ).stdout
    )
