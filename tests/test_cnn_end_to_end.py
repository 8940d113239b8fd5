"""ConvNets as a user runs them (real ``python -m runner`` subprocesses on real MNIST, read back from
MLflow): a short mnist_cnn run with its gradient check, pictures and pyfunc model; an interrupted CNN
resumed to exactly the uninterrupted metrics; a sweep over model.channels; Fashion-MNIST."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, run_cli
from test_reliability import history, signal_in_training, start

pytestmark = pytest.mark.slow

GRADCHECK_LIMIT = 1e-6
#: a small ConvNet trained for 700 steps (550 per epoch) on one BLAS thread: seconds, and deterministic
SMALL = ["+experiment=mnist_cnn", "model.channels=[4,8]", "model.hidden=[32]", "trainer.iterations=700", "threads=1"]


def artifacts(client, run_id: str, folder: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder)}


def test_mnist_cnn_short_run_checks_draws_and_serves_its_model(runner_cli, monkeypatch):
    result = runner_cli("+experiment=mnist_cnn", "trainer.iterations=100", "dataset.val_size=1000")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("mnist_cnn")
    metrics, client = run.data.metrics, result.client()
    assert run.info.status == "FINISHED" and metrics["test/accuracy"] >= 0.9, metrics
    assert run.info.run_name == "mnist_cnn-1x28x28-32x28x28-64x14x14-128-10-adam"
    # the run's gradient check covers every conv layer, alone and end to end; ReLU and max-pool ties are skipped kinks
    assert run.data.tags["runner.gradcheck"] == "passed" and metrics["gradcheck/max_rel_error"] <= GRADCHECK_LIMIT
    assert {"gradcheck/0.conv2d.x/rel_error", "gradcheck/3.conv2d.W/rel_error", "gradcheck/model/0.conv2d.W/rel_error"} <= set(
        metrics
    )
    assert metrics["gradcheck/kinks_skipped"] > 0
    assert run.data.tags["runner.plugin.layer.conv2d"].startswith("runner")
    plots = {
        "plots/confusion_matrix.png",
        "plots/misclassified.png",
        "plots/graph.png",
        "plots/filters.png",
        "plots/feature_maps.png",
    }
    assert plots <= artifacts(client, run.info.run_id, "plots")

    import mlflow.pyfunc

    from runner.api import DataContext
    from runner.builtins.datasets.mnist import MnistDataset

    test = MnistDataset(data_dir=str(SHARED_DATA)).load(DataContext(SHARED_DATA, seed=0)).test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", result.store)
    mlflow.set_tracking_uri(result.store)
    try:  # the pyfunc model takes the flat pixels, as an MLP's does (its signature), and gives the run's test accuracy
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model", dst_path=str(result.cwd))
        assert model.metadata.get_input_schema().inputs[0].shape == (-1, 784)
        predicted = model.predict(test.x)
        assert np.mean(predicted == test.y) == metrics["test/accuracy"]
    finally:
        mlflow.set_tracking_uri(None)


def test_an_interrupted_cnn_resumes_to_exactly_the_uninterrupted_metrics(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "cut").mkdir()
    reference = run_cli(tmp_path / "ref", *SMALL)
    assert reference.proc.returncode == 0, reference.proc.stderr[-3000:]
    expected = reference.only_run("mnist_cnn")

    proc = start(tmp_path / "cut", *SMALL)
    output = signal_in_training(proc, "epoch 1/2", [proc.pid], signal.SIGTERM, tmp_path / "cut", last_step=700)
    assert proc.returncode == 143, output[-3000:]
    work = tmp_path / "cut"
    client = run_cli(work, "--help").client()
    [run] = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    assert run.info.status == "KILLED"
    resumed = run_cli(work, *SMALL, f"+resume={run.info.run_id}")
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    final = resumed.only_run("mnist_cnn")
    assert final.info.status == "FINISHED"
    wanted = {k: v for k, v in expected.data.metrics.items() if not k.startswith("time/")}
    assert {k: v for k, v in final.data.metrics.items() if not k.startswith("time/")} == wanted
    assert history(client, final.info.run_id, "train/loss") == history(reference.client(), expected.info.run_id, "train/loss")


def test_a_sweep_over_channels(runner_cli):
    result = runner_cli(
        "--multirun", *SMALL[:1], "model.channels=[2],[4,4]", "model.hidden=[8]", "trainer.iterations=30", "report.enabled=false"
    )
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    children = [r for r in result.runs("mnist_cnn") if "runner.job.num" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children), [
        r.data.tags.get("runner.error") for r in children
    ]
    assert sorted(r.data.params["model.channels"] for r in children) == ["[2]", "[4, 4]"]
    assert all(r.data.metrics["test/accuracy"] > 0.1 for r in children)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_cnn_short_run(runner_cli):
    # the experiment as written, on a narrower net (8 and 16 channels: a quarter of the time of its 32 and 64)
    result = runner_cli("+experiment=fashion_mnist_cnn", "model.channels=[8,16]", "trainer.iterations=150")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("fashion_mnist_cnn")
    assert run.data.params["model.channels"] == "[8, 16]" and run.data.params["dataset.name"] == "fashion_mnist"
    assert run.info.status == "FINISHED" and run.data.metrics["test/accuracy"] >= 0.7
    assert run.data.tags["runner.gradcheck"] == "passed"
