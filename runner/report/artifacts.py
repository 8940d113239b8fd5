"""What a finished run adds so that its MLflow page tells the whole story at a glance.

``log_run_story`` is called once, after the weights and the config are logged (runner.app):

    plots/training_curves.png   loss and accuracy (mae) per step, train vs val
    plots/confusion_matrix.png  classifiers: true vs predicted on the test split
    plots/misclassified.png     image datasets: misclassified test images, true -> predicted
    plots/filters.png           ConvNets: the first convolution's filters before and after training
    plots/feature_maps.png      ConvNets: three test images and what each convolution's channels give for them
    plots/gradcheck.png         relative error per checked array, grouped by layer, log scale, with the threshold
    plots/graph.png|svg         the model as a graph: each node's type, shape, parameters, gradient check (Graphviz)
    plots/watch_weights.png     the watch (runner.core.watch): histograms over training of the weights,
    plots/watch_gradients.png   the gradients
    plots/watch_activations.png and each layer's output (step x value, log colour), warnings in red
    plots/gradient_flow.png     each weight matrix's gradient norm over training, and layer by layer
    watch/histograms.npz        the counts, edges and watch metrics behind them (runner.report.watch_pictures;
                                the pictures are drawn from it in the sidecar, off the run's path)
    tables/gradcheck.csv|md     the gradient check per layer and array (alone, end to end)
    tables/per_class.csv|md     classifiers: precision, recall, f1, support per class
    summary.txt                 layers, shapes, parameter counts
    model/                      the trained model as an MLflow pyfunc model (runner.pyfunc)
    inputs                      the train/val/test splits as MLflow dataset inputs (name, digest, source, shape)

Config section ``report``: ``enabled`` (everything above), ``model`` (the pyfunc model),
``misclassified`` (how many images the grid shows). A part that fails is logged as a warning
and named in the tag ``runner.report.failed``: the trained run itself stays FINISHED.
"""

from __future__ import annotations

import gc
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.watch import Watch
from runner.report import conv_pictures, figures, watch_pictures
from runner.report.inputs import flat, log_dataset_inputs

log = logging.getLogger("runner.story")

#: the curves read back from the run: split/metric for these splits and metrics
CURVES = [f"{split}/{key}" for split in ("train", "val") for key in ("loss", "accuracy", "mae")]
DEFAULTS = {"enabled": True, "model": True, "misclassified": 36}


def settings(cfg) -> dict:
    section = cfg.get("report") if cfg is not None else None
    given = {k: section[k] for k in section} if section is not None else {}
    return {**DEFAULTS, **given}


def log_run_story(
    tracker, model, loss, splits, cfg, run_dir: Path, initial_kernels: dict | None = None, watch: Watch | None = None
) -> dict[str, float]:
    """Pictures, tables, the model summary, the dataset inputs and the pyfunc model of a finished
    run, logged to ``tracker``'s run; returns the seconds each part took. ``initial_kernels``: the
    convolutions' weights before training, by parameter name (the filters' before picture); ``watch``:
    what the watch saw during training (its pictures), None when it was off."""
    options = settings(cfg)
    if not options["enabled"]:
        return {}
    out = Path(run_dir) / "report"
    timings: dict[str, float] = {}
    failed: list[str] = []

    def part(name: str, fn, *args) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args)
        except Exception as e:  # pictures are worth less than the trained run: warn, tag, go on
            failed.append(name)
            log.warning("report: %s failed: %s: %s", name, type(e).__name__, e, exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            timings[name] = time.perf_counter() - began

    meta, test = splits.meta, splits.test
    with no_collector_pauses():
        logged = tracker.latest_metrics()  # one query for the parts that need it; a failed store stops here
        metrics = lambda: logged  # noqa: E731
        described, predicted = part("predict", _predict, model, loss, cfg, meta, test.x) or (None, None)
        # first what is done where MLflow is (in the sidecar, while the figures are drawn here)
        part("inputs", log_dataset_inputs, tracker, splits, cfg)
        if options["model"] and predicted is not None:
            part("model", _model, tracker, run_dir, out, described, flat(test.x[:2], meta), predicted[:2])
        if watch is not None and watch.steps:  # its pictures are drawn in the sidecar too
            part("watch", _watch, tracker, out, watch)
        part("curves", _curves, tracker, out, cfg)
        if meta.task in ("classification", "binary") and predicted is not None:
            part("classes", _classes, tracker, out, test, predicted, meta, int(options["misclassified"]))
        if conv_pictures.conv_layers(model):
            part("filters", _filters, tracker, out, model, initial_kernels or {})
            part("feature_maps", _feature_maps, tracker, out, model, test.x)
        part("gradcheck", _gradcheck, tracker, metrics, out, model, cfg)
        part("graph", _graph, tracker, metrics, out, model, cfg)
        part("summary", _summary, tracker, out, model, cfg)
    for name in failed:  # named in the tag runner.report.failed at the run's end, with the parts that failed in the writer
        tracker.report_failed(name)
    log.info("report: %s", ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return timings


@contextmanager
def no_collector_pauses():
    """Python's cyclic garbage collector off for the block, as it was after it. By the end of a run the
    process holds ~400,000 objects (MLflow, SQLAlchemy, pandas, Hydra); the figures and MLflow calls of
    the story allocate enough to trigger a full collection of them and a score of smaller ones, ~0.2 s
    in all. The story's few megabytes of cyclic garbage are collected after it (or at exit)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------- parts


def _describe(model, loss, cfg, meta) -> dict:
    from runner.report.pyfunc import describe

    dtype = next(iter(model.params.values())).dtype if model.params else np.dtype(str(cfg.get("dtype", "float32")))
    last = model.types[-1] if getattr(model, "types", None) else None
    return describe(meta, str(dtype), str(cfg.loss.name), float(getattr(loss, "binary_threshold", 0.5)), last)


def _predict(model, loss, cfg, meta, x: np.ndarray) -> tuple[dict, np.ndarray]:
    """(model.json's description, the predictions on ``x``: class indices, or values for regression)."""
    from runner.report.pyfunc import outputs_of, read_outputs

    described = _describe(model, loss, cfg, meta)
    return described, read_outputs(outputs_of(model, x), described, "classes")


def _curves(tracker, out: Path, cfg) -> None:
    path = figures.training_curves(tracker.history(CURVES), out / "plots" / "training_curves.png")
    tracker.log_artifact(path, "plots")


def _classes(tracker, out: Path, test, predicted: np.ndarray, meta, limit: int) -> None:
    n = max(meta.output_size, 2) if meta.task == "binary" else meta.output_size
    y = np.asarray(test.y).astype(np.int64).reshape(-1)
    matrix = figures.confusion_matrix(y, predicted, n)
    tracker.log_artifact(figures.plot_confusion_matrix(matrix, meta.classes, out / "plots" / "confusion_matrix.png"), "plots")
    for path in figures.write_table(figures.per_class_table(y, predicted, meta.classes, n), out / "tables", "per_class"):
        tracker.log_artifact(path, "tables")
    shape = figures.image_shape(meta.input_shape, test.x[:1000])
    if shape is not None and limit > 0:
        path = figures.misclassified_grid(test.x, y, predicted, meta.classes, out / "plots" / "misclassified.png", shape, limit)
        tracker.log_artifact(path, "plots")


def _filters(tracker, out: Path, model, initial_kernels: dict) -> None:
    index, label = conv_pictures.conv_layers(model)[0]
    name = next(f"{label}.{k}" for k, p in model.layers[index].params.items() if np.ndim(p) == 4)
    before = initial_kernels.get(name)
    after = conv_pictures.first_filters(model)
    assert after is not None  # called for a model with a convolution
    tracker.log_artifact(conv_pictures.filters_figure(before, after, label, out / "plots" / "filters.png"), "plots")


def _feature_maps(tracker, out: Path, model, images: np.ndarray, shown: int = 3) -> None:
    maps = conv_pictures.feature_maps(model, images[:shown])
    tracker.log_artifact(conv_pictures.feature_maps_figure(images[:shown], maps, out / "plots" / "feature_maps.png"), "plots")


def _watch(tracker, out: Path, watch: Watch) -> None:
    """The npz here (milliseconds); the pictures drawn from it where MLflow is written (``watch_pictures.log_watch_pictures``:
    in the sidecar, on the other core, while this process draws the other figures)."""
    npz = watch_pictures.write_npz(watch, out / "watch" / "histograms.npz")
    tracker.log_artifact(npz, "watch")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    tracker.submit(
        watch_pictures.log_watch_pictures,
        npz=str(npz.resolve()),
        warnings=[dict(w) for w in watch.warnings],
        matrices=list(watch.matrices),
        plots=str((out / "plots").resolve()),
    )


def _gradcheck(tracker, logged, out: Path, model, cfg) -> None:
    names = getattr(model, "names", None)  # a graph's nodes
    rows = figures.gradcheck_rows(logged(), names)
    if not rows:
        return  # gradcheck.enabled=false
    samples = int(cfg.gradcheck.samples)
    if names is None:
        shapes = {f"{i}.{t}.x": (samples, *model.shapes[i]) for i, t in enumerate(model.types)}
    else:  # a merge node's inputs are x0, x1, ...
        shapes = {}
        for i, (name, t) in enumerate(zip(names, model.types)):
            given = model.input_shapes(i)
            arrays = ["x"] if model.single[i] else [f"x{k}" for k in range(len(given))]
            shapes.update({f"{name}.{t}.{a}": (samples, *shape) for a, shape in zip(arrays, given)})
    for name, value in model.params.items():
        shapes[name] = shapes[f"model/{name}"] = value.shape
    shapes.update({r["metric"]: (samples, *model.shapes[-1]) for r in rows if r["layer"].startswith("loss.")})
    threshold = float(cfg.gradcheck.threshold)
    table = figures.gradcheck_table(rows, threshold, shapes)
    tracker.log_artifact(figures.plot_gradcheck(table, threshold, out / "plots" / "gradcheck.png"), "plots")
    for path in figures.write_table(table, out / "tables", "gradcheck", floatfmt=".3e"):
        tracker.log_artifact(path, "tables")


def _graph(tracker, logged, out: Path, model, cfg) -> None:
    from runner.report.graph_picture import draw

    threshold = float(cfg.gradcheck.threshold) if cfg.get("gradcheck") is not None else 1e-6
    for path in draw(model, logged(), threshold, out / "plots", str(cfg.loss.name)):
        tracker.log_artifact(path, "plots")


def _summary(tracker, out: Path, model, cfg) -> None:
    dtype = str(next(iter(model.params.values())).dtype) if model.params else ""
    path = out / "summary.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(figures.model_summary(model, dtype))
    tracker.log_artifact(path)


def _model(tracker, run_dir: Path, out: Path, described: dict, example: np.ndarray, predicted: np.ndarray) -> None:
    weights, config = Path(run_dir) / "model.npz", Path(run_dir) / "config.resolved.yaml"
    work = out / "model"
    work.mkdir(parents=True, exist_ok=True)
    tracker.submit(
        log_pyfunc_model,
        weights=str(weights),
        config=str(config),
        described=described,
        example=example,
        predicted=predicted,
        workdir=str(work.resolve()),
    )


def log_pyfunc_model(
    client,
    run_id: str,
    experiment_id: str,
    *,
    weights: str,
    config: str,
    described: dict,
    example: np.ndarray,
    predicted: np.ndarray,
    workdir: str,
) -> str:
    """(In the sidecar) ``runner.pyfunc.log_model``, and the run's tag ``runner.model_id``; returns the model's id."""
    from runner.report.pyfunc import log_model

    model_id = log_model(
        client,
        run_id,
        experiment_id,
        weights=Path(weights).resolve(),
        config=Path(config).resolve(),
        described=described,
        example=example,
        predicted=predicted,
        workdir=Path(workdir),
    )
    client.set_tag(run_id, "runner.model_id", model_id)
    return model_id
