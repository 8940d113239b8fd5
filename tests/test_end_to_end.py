"""Each experiment run as a user runs it (a real subprocess), its MLflow record read back with MlflowClient."""

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

pytestmark = pytest.mark.slow  # whole runs of python -m runner, 9 to 45 s each

GRADCHECK_LIMIT = 1e-6


def history(run, client, key):
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


def assert_recorded(result, experiment):
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run(experiment)
    assert run.info.status == "FINISHED"
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    assert metrics["gradcheck/max_rel_error"] <= GRADCHECK_LIMIT
    assert metrics["gradcheck/0.linear.W/rel_error"] <= GRADCHECK_LIMIT
    assert "gradcheck/0.linear.b/max_abs_diff" in metrics
    assert tags["runner.gradcheck"] == "passed"
    assert tags["runner.plugin.layer.linear"].startswith("runner 0.1.0 (runner.builtins.layers)")
    assert f"+experiment={experiment}" in tags["runner.overrides"]
    assert params["seed"] == "0" and "optimizer.lr" in params and "trainer.batch_size" in params
    client = result.client()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.npz", "config.resolved.yaml", "hydra", "runner.log"} <= artifacts
    hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
    assert {"hydra/config.yaml", "hydra/overrides.yaml", "hydra/hydra.yaml"} <= hydra_files
    weights = np.load(client.download_artifacts(run.info.run_id, "model.npz", str(result.cwd)), allow_pickle=False)
    assert "0.linear.W" in weights.files
    return run, client


def test_iris_binary_reaches_full_test_accuracy(runner_cli):
    result = runner_cli("+experiment=iris_binary")
    run, client = assert_recorded(result, "iris_binary")
    assert run.data.metrics["test/accuracy"] == 1.0
    assert run.data.params["model.hidden"] == "[20]" and run.data.params["loss.name"] == "sum_squared"
    assert run.data.tags["runner.plugin.layer.sigmoid"].startswith("runner")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(10, 1001, 10))  # every 10 steps, batched
    assert "recorded as run" in result.proc.stdout and "mlflow ui --backend-store-uri" in result.proc.stdout


def test_iris_three_classes(runner_cli):
    run, _ = assert_recorded(runner_cli("+experiment=iris"), "iris")
    assert run.data.metrics["test/accuracy"] >= 0.93


def test_adaline_learns_the_line(runner_cli, tmp_path):
    run, client = assert_recorded(runner_cli("+experiment=adaline"), "adaline")
    assert run.data.metrics["test/mae"] <= 0.05
    w = np.load(client.download_artifacts(run.info.run_id, "model.npz", str(tmp_path)), allow_pickle=False)
    assert w["0.linear.W"][0, 0] == pytest.approx(2.0, abs=0.01)
    assert w["0.linear.b"][0] == pytest.approx(1.0, abs=0.05)


def test_regression_loss_falls_tenfold(runner_cli):
    run, client = assert_recorded(runner_cli("+experiment=regression"), "regression")
    losses = history(run, client, "train/loss")
    assert losses[-1] < losses[0] / 10
    assert "test/mae" in run.data.metrics and "test/accuracy" not in run.data.metrics


def test_mnist_short_run(runner_cli):
    result = runner_cli("+experiment=mnist", "trainer.iterations=1100")
    run, client = assert_recorded(result, "mnist")
    assert run.data.metrics["test/accuracy"] >= 0.90
    assert len(history(run, client, "val/accuracy")) == 2  # one evaluation per epoch of 550 steps (2 epochs: every epoch)
    assert len(history(run, client, "train/accuracy")) == 2  # the running accuracy of each epoch's batches
    assert len(history(run, client, "test/accuracy")) == 1  # the test split once, at the end
    assert run.data.params["trainer.sampling"] == "replacement"
    assert run.data.tags["runner.blas_threads"].endswith(" 1")  # threads: null and a 24 MFLOP step: one BLAS thread


def test_a_large_model_gets_every_core(runner_cli):
    cores = len(os.sched_getaffinity(0))
    run, _ = assert_recorded(runner_cli("+experiment=mnist_mlp", "trainer.iterations=3", "report.enabled=false"), "mnist_mlp")
    assert run.data.tags["runner.blas_threads"].endswith(f" {cores}")  # 513 MFLOP a step: worth the second thread


FASHION_DIRS = [SHARED_DATA / "fashion_mnist", Path("/usr/share/datasets/fashion-mnist")]


@pytest.mark.skipif(
    not any(d.is_dir() for d in FASHION_DIRS), reason="Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)"
)
def test_fashion_mnist_short_run(runner_cli):
    run, _ = assert_recorded(runner_cli("+experiment=fashion_mnist", "trainer.iterations=550"), "fashion_mnist")
    assert run.data.metrics["test/accuracy"] >= 0.6


def test_same_seed_same_metrics(runner_cli):
    runner_cli("+experiment=iris_binary", "trainer.iterations=60")
    second = runner_cli("+experiment=iris_binary", "trainer.iterations=60")
    a, b = second.runs("iris_binary")
    untimed = [{k: v for k, v in run.data.metrics.items() if not k.startswith("time/")} for run in (a, b)]
    assert untimed[0] == untimed[1] and len(untimed[0]) > 10


def test_a_failed_gradient_check_warns_and_tags_or_stops_the_run(runner_cli):
    warned = runner_cli("+experiment=iris_binary", "trainer.iterations=30", "gradcheck.threshold=1e-30")
    assert warned.proc.returncode == 0
    assert "gradient check failed" in warned.proc.stdout
    run = warned.only_run("iris_binary")
    assert run.info.status == "FINISHED" and run.data.tags["runner.gradcheck"] == "failed"

    stopped = runner_cli("+experiment=iris", "trainer.epochs=1", "gradcheck.threshold=1e-30", "gradcheck.fail=true")
    assert stopped.proc.returncode == 1 and "Traceback" not in stopped.proc.stderr
    assert (
        "gradient check failed: layer 0 (linear, from runner 0.1.0 (runner.builtins.layers)) d(input) x: relative error"
        in stopped.proc.stderr
    )
    failed = stopped.only_run("iris")
    assert failed.info.status == "FAILED" and "gradcheck.threshold" in failed.data.tags["runner.error"]
    assert "train/loss" not in failed.data.metrics  # stopped before training


def test_tracking_uri_from_the_environment(runner_cli, tmp_path):
    elsewhere = tmp_path / "elsewhere.db"
    result = runner_cli("+experiment=adaline", "trainer.epochs=2", env={"MLFLOW_TRACKING_URI": f"sqlite:///{elsewhere}"})
    assert result.proc.returncode == 0, result.proc.stderr[-2000:]
    assert elsewhere.is_file() and not (result.cwd / "outputs" / "mlflow.db").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{elsewhere}")
    runs = client.search_runs([client.get_experiment_by_name("adaline").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_multirun_grid_records_one_run_per_job(runner_cli):
    result = runner_cli("--multirun", "+experiment=iris", "trainer.epochs=2", "optimizer.lr=0.01,0.1")
    assert result.proc.returncode == 0, result.proc.stderr[-2000:]
    runs = [r for r in result.runs("iris") if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["optimizer.lr"] for r in runs) == ["0.01", "0.1"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_mnist_mlp_composes_with_dropout_adam_and_cosine(runner_cli):
    result = runner_cli("+experiment=mnist_mlp", "trainer.epochs=1", "model.hidden=[64,64]")
    run, client = assert_recorded(result, "mnist_mlp")
    assert run.data.tags["runner.plugin.layer.dropout"].startswith("runner")
    assert run.data.tags["runner.plugin.optimizer.adam"].startswith("runner")
    assert run.data.metrics["test/accuracy"] >= 0.9
    lr = history(run, client, "train/lr")
    assert lr[0] == pytest.approx(0.001, rel=1e-2) and lr[-1] == pytest.approx(0.0)  # cosine to 0


def test_mnist_optimizers_is_a_ready_sweep(runner_cli):
    result = runner_cli(
        "--multirun", "+experiment=mnist_optimizers", "trainer.iterations=20", "model.hidden=[16]", "dataset.val_size=100"
    )
    assert result.proc.returncode == 0, result.proc.stderr[-2000:]
    runs = [r for r in result.runs("mnist_optimizers") if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["optimizer.name"] for r in runs) == ["adagrad", "adam", "momentum", "sgd"]
    assert all(r.info.status == "FINISHED" and r.data.metrics["gradcheck/max_rel_error"] <= 1e-6 for r in runs)
