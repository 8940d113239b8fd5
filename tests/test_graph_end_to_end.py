"""model=graph as a user runs it (a real ``python -m runner`` subprocess), read back from MLflow:
adaline_graph learns w and b, mnist_resmlp trains, every run draws its graph, a malformed graph is
one line, a sweep over a node's option."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

GRADCHECK_LIMIT = 1e-6


def artifacts(client, run_id: str, folder: str = "") -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder or None)}


def history(client, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_adaline_graph_learns_w_and_b_and_draws_its_graph(runner_cli):
    result = runner_cli("+experiment=adaline_graph", "trainer.epochs=40")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("adaline_graph")
    metrics, client = run.data.metrics, result.client()
    assert run.info.status == "FINISHED"
    assert abs(metrics["model/w"] - 2.0) <= 0.05 and abs(metrics["model/b"] - 1.0) <= 0.05, metrics
    assert metrics["test/mae"] <= 0.05
    w = history(client, run.info.run_id, "model/w")
    assert len(w) == 80 and w[0] < 1.5  # every trainer.log_every steps, from w = 0 on
    assert run.data.tags["runner.gradcheck"] == "passed" and metrics["gradcheck/max_rel_error"] <= GRADCHECK_LIMIT
    assert {"gradcheck/w.scale.x/rel_error", "gradcheck/w.scale.w/rel_error", "gradcheck/model/b.bias.b/rel_error"} <= set(
        metrics
    )
    assert run.data.tags["runner.plugin.layer.scale"].startswith("runner") and run.data.params["model.output"] == "b"
    assert {"plots/graph.png", "plots/graph.svg"} <= artifacts(client, run.info.run_id, "plots")
    svg = Path(client.download_artifacts(run.info.run_id, "plots/graph.svg", str(result.cwd))).read_text()
    assert "w: scale" in svg and "b: bias" in svg and "gradcheck passed" in svg
    weights = np.load(client.download_artifacts(run.info.run_id, "model.npz", str(result.cwd)), allow_pickle=False)
    assert sorted(weights.files) == ["b.bias.b", "w.scale.w"]
    assert weights["w.scale.w"][0] == metrics["model/w"] or abs(weights["w.scale.w"][0] - metrics["model/w"]) < 1e-6


def test_mnist_resmlp_short_run_with_its_pyfunc_model(runner_cli, monkeypatch):
    result = runner_cli("+experiment=mnist_resmlp", "trainer.iterations=150")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("mnist_resmlp")
    metrics, client = run.data.metrics, result.client()
    assert run.info.status == "FINISHED" and metrics["test/accuracy"] >= 0.85
    assert run.data.tags["runner.gradcheck"] == "passed" and metrics["gradcheck/max_rel_error"] <= GRADCHECK_LIMIT
    assert {
        "gradcheck/res1.add.x0/rel_error",
        "gradcheck/res1.add.x1/rel_error",
        "gradcheck/model/stem.linear.W/rel_error",
    } <= set(metrics)
    assert run.info.run_name == "mnist_resmlp-784-512-512-512-10-adam"
    assert {"plots/graph.png", "plots/graph.svg", "plots/gradcheck.png"} <= artifacts(client, run.info.run_id, "plots")
    summary = Path(client.download_artifacts(run.info.run_id, "summary.txt", str(result.cwd))).read_text()
    assert "res2    res1, fc2" in summary
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", result.store)
    mlflow.set_tracking_uri(result.store)
    try:  # the pyfunc model rebuilds the graph from its config and weights
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model", dst_path=str(result.cwd))
        assert model.predict(np.zeros((3, 784), np.float32)).shape == (3,)
    finally:
        mlflow.set_tracking_uri(None)


def test_a_sequential_model_gets_the_same_picture(runner_cli):
    result = runner_cli("+experiment=iris", "trainer.epochs=2")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("iris")
    client = result.client()
    svg = Path(client.download_artifacts(run.info.run_id, "plots/graph.svg", str(result.cwd))).read_text()
    assert "0: linear" in svg and "1: relu" in svg and "loss: softmax_cross_entropy" in svg


def test_without_dot_the_run_finishes_and_says_once_that_the_picture_was_skipped(runner_cli, tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with python and git, without Graphviz's dot
    bin_dir.mkdir()
    for tool in ("git",):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    os.symlink(sys.executable, bin_dir / "python")
    result = runner_cli("+experiment=iris", "trainer.epochs=1", env={"PATH": str(bin_dir)})
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    output = result.proc.stdout + result.proc.stderr
    assert output.count("plots/graph.png and graph.svg skipped: Graphviz's dot program is not installed") == 1
    run = result.only_run("iris")
    assert run.info.status == "FINISHED" and "runner.report.failed" not in run.data.tags
    assert "plots/graph.png" not in artifacts(result.client(), run.info.run_id, "plots")


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.nodes.2.inputs=[a3]", "runner: error: model.nodes[2] 'h2' (linear): input 'a3' is not a node"),
        ("model.nodes.3.inputs=[h2,skip]", "runner: error: model.nodes[3] 'skip' (add): the graph has a cycle: skip -> skip"),
        ("model.output=h2", "runner: error: model.nodes[5] 'out' (linear): its output is used by no node"),
        (
            "model.nodes.2.out=8",
            "runner: error: model.nodes[3] 'skip' (add): add: inputs of shapes 8, 16; add needs equal shapes",
        ),
    ],
)
def test_a_malformed_graph_on_the_command_line_is_one_line(runner_cli, override, message):
    result = runner_cli("model=graph", override)
    assert result.proc.returncode == 1
    lines = [line for line in result.proc.stderr.splitlines() if line.startswith("runner:")]
    assert lines and lines[0].startswith(message), result.proc.stderr[-2000:]
    assert "Traceback" not in result.proc.stderr


def test_a_sweep_over_a_nodes_option(runner_cli):
    result = runner_cli(
        "--multirun", "model=graph", "model.nodes.0.init=he_normal,xavier_uniform", "trainer.epochs=2", "report.enabled=false"
    )
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    runs = [r for r in result.runs("default") if "runner.job.num" in r.data.tags]
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), [r.data.tags.get("runner.error") for r in runs]
    inits = sorted(r.data.params["model.nodes"].split('"init": ')[1].split(",")[0] for r in runs)
    assert inits == ['"he_normal"', '"xavier_uniform"'], [r.data.params["model.nodes"] for r in runs]
