"""Real runs (``python -m runner`` in a subprocess) tell their story in MLflow: pictures, tables,
the model summary, the dataset inputs, and a pyfunc model that loads back and predicts like the
trained network."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA
from test_report import decoded, png_size

pytestmark = pytest.mark.slow  # whole runs of python -m runner, MNIST among them

SIZES = {"training_curves": (1200, 450), "confusion_matrix": (700, 600), "misclassified": (700, 860), "gradcheck": (900, 500)}


@contextmanager
def tracking_uri(uri: str, monkeypatch):
    """MLflow's fluent API (mlflow.pyfunc.load_model) pointed at ``uri`` for the block, then reset."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # restored by monkeypatch; set_tracking_uri(None) unsets it
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)


def artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of the run, recursively."""
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def run_splits(run, client, tmp_path: Path):
    """The run's dataset, loaded again as the run loaded it (its resolved config)."""
    from runner.api import DataContext
    from runner.plugins.discovery import load_registry

    cfg = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.resolved.yaml", str(tmp_path))).read_text())
    options = {k: v for k, v in cfg["dataset"].items() if k != "name"}
    dataset = load_registry().get("dataset", cfg["dataset"]["name"], "test").create(options, "test")
    return dataset.load(DataContext(SHARED_DATA, int(cfg["seed"]), np.dtype(cfg["dtype"])))


def mlp_by_hand(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """linear -> relu -> linear from the logged model.npz, written out in NumPy: an independent forward pass."""
    hidden = np.maximum(x @ weights["0.linear.W"] + weights["0.linear.b"], 0)
    return hidden @ weights["2.linear.W"] + weights["2.linear.b"]


def check_story(result, experiment: str, tmp_path: Path, monkeypatch, images: bool, classes: tuple[str, ...]):
    import mlflow
    import pandas as pd

    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run(experiment)
    run_id = run.info.run_id
    client = result.client()
    assert run.info.status == "FINISHED"  # logging the model leaves the run's status to the runner
    assert "runner.report.failed" not in run.data.tags
    assert "Downloading artifacts" not in result.proc.stderr

    expected = {
        "plots/training_curves.png",
        "plots/confusion_matrix.png",
        "plots/gradcheck.png",
        "tables/gradcheck.csv",
        "tables/gradcheck.md",
        "tables/per_class.csv",
        "tables/per_class.md",
        "summary.txt",
        "model.npz",
        "plots/watch_weights.png",
        "plots/watch_gradients.png",
        "plots/watch_activations.png",
        "plots/gradient_flow.png",
        "watch/histograms.npz",
    }
    if images:
        expected.add("plots/misclassified.png")
    logged = artifacts(client, run_id)
    assert expected <= logged, sorted(expected - logged)
    assert ("plots/misclassified.png" in logged) == images

    local = Path(client.download_artifacts(run_id, "plots", str(tmp_path)))
    assert {"graph.png", "graph.svg"} <= {p.name for p in local.iterdir()}  # Graphviz's: its size follows the model
    for png in local.glob("*.png"):
        if png.stem == "graph":
            continue
        if png.stem.startswith("watch_") or png.stem == "gradient_flow":  # sized by the model's arrays (watch_pictures)
            assert decoded(png).std() > 0.01, f"{png.name} is blank"
            continue
        assert png_size(png) == SIZES[png.stem], png.name
        assert decoded(png).std() > 0.01, f"{png.name} is blank"

    tables = Path(client.download_artifacts(run_id, "tables", str(tmp_path)))
    gradcheck = pd.read_csv(tables / "gradcheck.csv")
    for row in gradcheck.itertuples():
        assert row.rel_error == pytest.approx(run.data.metrics[f"gradcheck/{row.metric}/rel_error"], rel=1e-12)
        assert row.passed == (row.rel_error <= 1e-6)
    layers = [name for name in gradcheck["layer"] if not name.startswith("loss.")]
    assert layers == sorted(layers, key=lambda name: int(name.split(".")[0]))  # grouped by layer, in order
    alone = gradcheck[gradcheck["check"] == "alone"]
    assert {"x", "W", "b"} <= set(alone["array"])  # each layer's d(input) and parameters, alone
    assert gradcheck["layer"].iloc[-1].startswith("loss.")  # the loss alone, after the layers
    end_to_end = [
        m
        for m in run.data.metrics
        if m.startswith("gradcheck/model/") and m.endswith("/rel_error") and m != "gradcheck/model/max_rel_error"
    ]
    assert len(gradcheck[gradcheck["check"] == "end to end"]) == len(end_to_end) > 0
    per_class = pd.read_csv(tables / "per_class.csv")
    assert per_class["class"].tolist() == [*classes, "macro average"]

    summary = Path(client.download_artifacts(run_id, "summary.txt", str(tmp_path))).read_text()
    weights = dict(np.load(client.download_artifacts(run_id, "model.npz", str(tmp_path)), allow_pickle=False))
    assert f"{sum(w.size for w in weights.values()):,} trainable parameters" in summary

    contexts = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert set(contexts) == {"train", "val", "test"}
    splits = run_splits(run, client, tmp_path)
    for context, split in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        dataset = contexts[context]
        assert dataset.name == splits.meta.name and dataset.digest and dataset.source_type == "code"
        assert f'"features_shape": [{len(split)}, {split.x.shape[1]}]' in dataset.profile

    # the model, loaded back by MLflow, predicts the classes of the trained network
    assert [m.model_id for m in run.outputs.model_outputs] == [run.data.tags["runner.model_id"]]
    with tracking_uri(result.store, monkeypatch):
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model", dst_path=str(tmp_path))
    x = splits.test.x
    predicted = model.predict(x)
    assert predicted.shape == (len(x),) and predicted.dtype == np.int64
    assert np.array_equal(predicted, mlp_by_hand(weights, x).argmax(axis=1))
    assert np.mean(predicted == splits.test.y) == pytest.approx(run.data.metrics["test/accuracy"], abs=1e-12)
    assert np.array_equal(model.predict(pd.DataFrame(x[:5])), predicted[:5])
    probabilities = model.predict(x[:5], params={"output": "probabilities"})
    assert probabilities.shape == (5, len(classes)) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, x.shape[1])
    return run


def test_an_mnist_run_logs_its_pictures_tables_inputs_and_a_loadable_model(runner_cli, tmp_path, monkeypatch):
    result = runner_cli("+experiment=mnist", "trainer.iterations=600")
    check_story(result, "mnist", tmp_path, monkeypatch, images=True, classes=tuple(str(i) for i in range(10)))


def test_an_iris_run_logs_its_pictures_tables_inputs_and_a_loadable_model(runner_cli, tmp_path, monkeypatch):
    result = runner_cli("+experiment=iris", "trainer.epochs=60")
    check_story(result, "iris", tmp_path, monkeypatch, images=False, classes=("Iris-setosa", "Iris-versicolor", "Iris-virginica"))


def test_report_enabled_false_logs_no_pictures_and_no_model(runner_cli):
    result = runner_cli("trainer.epochs=2", "report.enabled=false")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("default")
    assert run.info.status == "FINISHED"
    logged = artifacts(result.client(), run.info.run_id)
    assert "model.npz" in logged and not any(p.startswith(("plots/", "tables/")) for p in logged)
    assert not run.outputs.model_outputs and not run.inputs.dataset_inputs
