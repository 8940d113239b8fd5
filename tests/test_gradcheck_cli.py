"""The run's gradient check as a plugin author meets it: a pip-installed layer whose backward is
wrong is named, with its distribution, in the log, the tag, the metrics and the table; the run id
ends the output of a stopped run; a correct layer with the default init passes."""

import pandas as pd
import pytest
from pip_installs import pip_install, plugin_env, softsign_distribution

SPIRALS = ["dataset=spirals", "model=sequential", "trainer.epochs=1"]


@pytest.fixture(scope="module")
def softsign_site(tmp_path_factory):
    return pip_install(softsign_distribution(tmp_path_factory.mktemp("softsign-src")), tmp_path_factory.mktemp("softsign-site"))


def layers(middle: str) -> str:
    return f"model.layers=[{{type:linear,out:32}},{{type:{middle}}},{{type:linear,out:auto}}]"


def test_a_wrong_input_gradient_is_named_on_its_layer_with_its_distribution(runner_cli, softsign_site, tmp_path):
    result = runner_cli(*SPIRALS, layers("softsign_bad_x"), env=plugin_env(softsign_site))
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert (
        "gradient check failed: layer 1 (softsign_bad_x, from runner-softsign 0.1.0 (runner_softsign)) d(input) x: "
        "relative error 3.33e-01 > gradcheck.threshold 1e-06"
    ) in result.proc.stdout
    run = result.only_run("default")
    assert run.info.status == "FINISHED" and run.data.tags["runner.gradcheck"] == "failed"
    metrics = run.data.metrics
    assert metrics["gradcheck/1.softsign_bad_x.x/rel_error"] == pytest.approx(1 / 3, rel=1e-3)
    assert metrics["gradcheck/1.softsign_bad_x.a/rel_error"] < 1e-8  # its own parameter is right
    assert metrics["gradcheck/0.linear.W/rel_error"] < 1e-8  # and so is the layer before it, alone
    assert metrics["gradcheck/max_rel_error"] == pytest.approx(1 / 3, rel=1e-3)
    table = pd.read_csv(result.client().download_artifacts(run.info.run_id, "tables/gradcheck.csv", str(tmp_path)))
    failed = table[~table["passed"]]
    assert ("1.softsign_bad_x", "x", "alone") in set(zip(failed["layer"], failed["array"], failed["check"]))
    assert set(failed["check"]) <= {"alone", "end to end"} and not (failed["layer"] == "2.linear").any()


def test_a_stopped_run_names_the_culprit_and_ends_with_its_run_id(runner_cli, softsign_site):
    result = runner_cli(*SPIRALS, layers("softsign_bad_x"), "gradcheck.fail=true", env=plugin_env(softsign_site))
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    run = result.only_run("default")
    assert run.info.status == "FAILED" and "layer 1 (softsign_bad_x" in run.data.tags["runner.error"]
    last = result.proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"runner: run {run.info.run_id} is recorded FAILED; browse it with: mlflow ui --backend-store-uri sqlite:"
    )


@pytest.mark.parametrize("middle", ["softsign", "tanh"])
def test_correct_layers_with_the_default_init_pass_on_two_features(runner_cli, softsign_site, middle):
    result = runner_cli(*SPIRALS, layers(middle), env=plugin_env(softsign_site))
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("default")
    assert run.data.tags["runner.gradcheck"] == "passed"
    assert run.data.metrics["gradcheck/max_rel_error"] < 1e-8
    if middle == "tanh":
        assert run.data.metrics["gradcheck/kinks_skipped"] == 0
        assert "0 entries at kinks skipped" in result.proc.stdout
