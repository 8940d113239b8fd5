"""runner.report on small synthetic data: the pictures are valid PNGs of the documented sizes, the
tables hold the right numbers (checked against hand-computed cases)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner.report import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82"), f"{path} is truncated"
    return width, height


def decoded(path: Path) -> np.ndarray:
    """The pixels, decoded by matplotlib (a truncated or corrupt file raises)."""
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_training_curves_is_a_png_of_the_documented_size_with_both_panels(tmp_path):
    history = {
        "train/loss": [(s, 2.0 / (1 + s / 10)) for s in range(10, 610, 10)],
        "val/loss": [(300, 0.5), (600, 0.3)],
        "train/accuracy": [(300, 0.8), (600, 0.9)],
        "val/accuracy": [(300, 0.78), (600, 0.88)],
        "test/accuracy": [(300, 0.7), (600, 0.8)],  # not drawn: the test split stays unseen
    }
    path = figures.training_curves(history, tmp_path / "plots" / "curves.png")
    assert png_size(path) == figures.SIZES["training_curves"] == (1200, 450)
    pixels = decoded(path)
    assert pixels.shape[:2] == (450, 1200) and pixels.std() > 0.05  # not a blank canvas


def test_training_curves_of_a_regression_run_and_of_an_empty_history(tmp_path):
    regression = {"train/loss": [(1, 3.0), (2, 1.0)], "val/mae": [(2, 0.4)], "train/mae": [(2, 0.5)]}
    assert png_size(figures.training_curves(regression, tmp_path / "r.png")) == (1200, 450)
    assert png_size(figures.training_curves({}, tmp_path / "empty.png")) == (1200, 450)


def test_confusion_matrix_counts_true_rows_against_predicted_columns(tmp_path):
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    matrix = figures.confusion_matrix(y_true, y_pred, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    path = figures.plot_confusion_matrix(matrix, ("setosa", "versicolor", "virginica"), tmp_path / "cm.png")
    assert png_size(path) == figures.SIZES["confusion_matrix"] == (700, 600)
    assert decoded(path).shape[:2] == (600, 700)


def test_per_class_precision_and_recall_match_a_hand_computed_case(tmp_path):
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    # class 3 is neither in the labels nor predicted: its precision and recall are undefined (NaN)
    table = figures.per_class_table(y_true, y_pred, ("a", "b", "c", "d"), 4)
    rows = table.set_index("class")
    # a: TP 2 of 2 predicted, of 3 true; b: TP 1 of 2 predicted, of 2 true; c: TP 1 of 2 predicted, of 1 true
    assert rows.loc["a", "precision"] == 1.0 and rows.loc["a", "recall"] == pytest.approx(2 / 3)
    assert rows.loc["b", "precision"] == 0.5 and rows.loc["b", "recall"] == 0.5
    assert rows.loc["c", "precision"] == 0.5 and rows.loc["c", "recall"] == 1.0
    assert rows.loc["a", "f1"] == pytest.approx(2 * 1.0 * (2 / 3) / (1.0 + 2 / 3))
    assert np.isnan(rows.loc["d", "precision"]) and np.isnan(rows.loc["d", "recall"])
    assert rows["support"].tolist() == [3, 2, 1, 0, 6] and rows["predicted"].tolist() == [2, 2, 2, 0, 6]
    assert rows.loc["macro average", "precision"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert rows.loc["macro average", "recall"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)

    csv, md = figures.write_table(table, tmp_path, "per_class")
    again = pd.read_csv(csv)
    assert again["precision"].iloc[:3].tolist() == [1.0, 0.5, 0.5] and np.isnan(again["recall"].iloc[3])
    text = md.read_text()
    assert text.startswith("| class") and "| a " in text and "0.6667" in text and "n/a" in text


def test_image_shape_recognises_flat_square_images_in_the_unit_interval_only():
    images = np.random.default_rng(0).random((5, 784))
    assert figures.image_shape((784,), images) == (28, 28)
    assert figures.image_shape((784,), images * 255) is None  # not in [0, 1]: not drawn as images
    assert figures.image_shape((4,), np.zeros((3, 4))) is None  # iris
    assert figures.image_shape((28, 28)) == (28, 28)
    assert figures.image_shape((1, 16, 16)) == (16, 16)
    assert figures.image_shape((785,)) is None


def test_misclassified_grid_is_a_png_of_the_documented_size_with_or_without_mistakes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 784)).astype(np.float32)
    y_true = rng.integers(0, 10, 50)
    y_pred = np.where(rng.random(50) < 0.5, y_true, (y_true + 1) % 10)
    path = figures.misclassified_grid(x, y_true, y_pred, [str(i) for i in range(10)], tmp_path / "m.png", (28, 28))
    assert png_size(path) == figures.SIZES["misclassified"] == (700, 860)
    assert decoded(path).std() > 0.05
    none_wrong = figures.misclassified_grid(x, y_true, y_true, (), tmp_path / "none.png", (28, 28))
    assert png_size(none_wrong) == (700, 860)


def test_gradcheck_rows_group_the_logged_metrics_by_layer_alone_before_end_to_end():
    metrics = {
        "gradcheck/model/0.linear.W/rel_error": 3e-9,
        "gradcheck/model/0.linear.W/max_abs_diff": 2e-11,
        "gradcheck/2.linear.W/rel_error": 2e-3,
        "gradcheck/2.linear.W/max_abs_diff": 0.1,
        "gradcheck/0.linear.W/rel_error": 1e-10,
        "gradcheck/0.linear.W/max_abs_diff": 1e-12,
        "gradcheck/loss.mse.pred/rel_error": 0.0,
        "gradcheck/loss.mse.pred/max_abs_diff": 0.0,
        "gradcheck/1.relu.x/rel_error": 1e-11,
        "gradcheck/1.relu.x/max_abs_diff": 1e-13,
        "gradcheck/0.linear.x/rel_error": 2e-11,
        "gradcheck/0.linear.x/max_abs_diff": 1e-13,
        "gradcheck/max_rel_error": 2e-3,
        "gradcheck/model/max_rel_error": 3e-9,
        "gradcheck/kinks_skipped": 0,
        "train/loss": 1.0,
        "gradcheck/0.linear.W/rel_error_no_stat": 1.0,
    }
    rows = figures.gradcheck_rows(metrics)
    assert [r["metric"] for r in rows] == [
        "0.linear.x",
        "0.linear.W",
        "model/0.linear.W",
        "1.relu.x",
        "2.linear.W",
        "loss.mse.pred",
    ]
    assert [(r["layer"], r["array"], r["check"]) for r in rows][:3] == [
        ("0.linear", "x", "alone"),
        ("0.linear", "W", "alone"),
        ("0.linear", "W", "end to end"),
    ]
    assert rows[-1]["layer"] == "loss.mse" and rows[-1]["rel_error"] == 0.0


def test_gradcheck_table_and_bar_chart(tmp_path):
    rows = figures.gradcheck_rows(
        {
            "gradcheck/0.linear.x/rel_error": 3e-9,
            "gradcheck/0.linear.x/max_abs_diff": 2e-11,
            "gradcheck/0.linear.b/rel_error": 0.0,
            "gradcheck/0.linear.b/max_abs_diff": 1e-12,
            "gradcheck/model/2.linear.W/rel_error": 2e-3,
            "gradcheck/model/2.linear.W/max_abs_diff": 0.1,
        }
    )
    table = figures.gradcheck_table(rows, 1e-6, {"0.linear.x": (4, 8), "0.linear.b": (8,)})
    assert table["metric"].tolist() == ["0.linear.x", "0.linear.b", "model/2.linear.W"]
    assert table["shape"].tolist() == ["4x8", "8", "-"]
    assert table["rel_error"].tolist() == [3e-9, 0.0, 2e-3]
    assert table["check"].tolist() == ["alone", "alone", "end to end"]
    assert table["passed"].tolist() == [True, True, False]
    path = figures.plot_gradcheck(table, 1e-6, tmp_path / "gradcheck.png")
    assert png_size(path) == figures.SIZES["gradcheck"] == (900, 500)
    assert decoded(path).std() > 0.01

    without_shapes = figures.gradcheck_table(rows[:1], 1e-6)
    assert without_shapes.columns.tolist() == ["metric", "layer", "array", "check", "rel_error", "max_abs_diff", "passed"]
    csv, md = figures.write_table(without_shapes, tmp_path, "gradcheck", floatfmt=".3e")
    assert pd.read_csv(csv)["rel_error"].tolist() == [3e-9]  # full precision in the CSV
    assert "3.000e-09" in md.read_text()


def test_model_summary_lists_layers_shapes_and_parameter_counts():
    from runner.api import Meta
    from runner.core.model import build_model, mlp_layers
    from runner.plugins.discovery import load_registry

    model = build_model(
        mlp_layers([5], "relu", None, {}),
        load_registry(),
        Meta("t", (4,), 3, "classification"),
        np.random.default_rng(0),
        np.float32,
    )
    text = figures.model_summary(model, "float32")
    assert text.splitlines()[0] == "model 4-5-3: 3 layers, 43 trainable parameters (float32)"
    assert "W 4x5, b 5" in text and "W 5x3, b 3" in text and "total: 43 parameters" in text
    assert all(kind in text for kind in ("linear", "relu"))


def test_pyfunc_reads_outputs_as_classes_probabilities_or_scores():
    from runner.api import Meta
    from runner.report.pyfunc import as_array, describe, read_outputs

    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    multi = describe(Meta("m", (2,), 3, "classification", ("a", "b", "c")), "float32", "softmax_cross_entropy", 0.5)
    assert read_outputs(logits, multi).tolist() == [0, 2]
    probabilities = read_outputs(logits, multi, "probabilities")
    assert np.allclose(probabilities.sum(axis=1), 1) and probabilities.argmax(axis=1).tolist() == [0, 2]
    assert read_outputs(logits, multi, "scores") is logits
    logit = describe(Meta("b", (2,), 1, "binary"), "float32", "bce_with_logits", 0.0)
    assert read_outputs(np.array([[-1.0], [0.5]]), logit).tolist() == [0, 1]
    assert np.allclose(read_outputs(np.array([[0.0]]), logit, "probabilities"), 0.5)
    after_sigmoid = describe(Meta("b", (2,), 1, "binary"), "float32", "sum_squared", 0.5, "sigmoid")
    assert read_outputs(np.array([[0.25]]), after_sigmoid, "probabilities").tolist() == [[0.25]]
    hinge = describe(Meta("b", (2,), 1, "binary"), "float32", "hinge", 0.0)
    with pytest.raises(ValueError, match="probabilities"):
        read_outputs(np.array([[1.0]]), hinge, "probabilities")
    with pytest.raises(ValueError, match="expected one of"):
        read_outputs(logits, multi, "logits")
    assert as_array(pd.DataFrame(np.ones((2, 2))), np.dtype(np.float32), (2,)).dtype == np.float32
    assert as_array(np.ones(2), np.dtype(np.float32), (2,)).shape == (1, 2)
    assert as_array(np.ones((3, 4)), np.dtype(np.float32), (2, 2)).shape == (3, 2, 2)  # flat rows of 2-D samples
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        as_array(np.ones((2, 3)), np.dtype(np.float32), (2,))


def test_the_runner_imports_neither_matplotlib_nor_mlflow_at_start():
    late = ("matplotlib", "mlflow", "runner.report.figures", "runner.report.pyfunc")
    code = f"import sys, runner.run.task; print(sorted(m for m in {late!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_dataset_digest_is_mlflows_numpy_digest_without_copying_the_arrays():
    from mlflow.data.digest_utils import compute_numpy_digest

    from runner.report.inputs import numpy_digest

    rng = np.random.default_rng(0)
    x, y = rng.random((3000, 784)).astype(np.float32), rng.integers(0, 10, 3000)
    for features, targets in [(x, y), (x[:, ::2], y), (x[:5], None), (x.T, y), (x[:0], y[:0]), (y, None)]:
        assert numpy_digest(features, targets) == compute_numpy_digest(features, targets)
    changed = x.copy()
    changed[0, 0] += 1  # among the first 10,000 values MLflow's digest reads
    assert numpy_digest(changed, y) != numpy_digest(x, y)
    assert numpy_digest(x[:2999], y[:2999]) != numpy_digest(x, y)  # the shape is part of it
