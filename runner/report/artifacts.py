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
import sys
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.watch import Watch
from runner.report import conv_pictures, figures, watch_pictures
from runner.report.inputs import flat, log_dataset_inputs
from runner.tracking.painter import Drawn

log = logging.getLogger("runner.story")

#: the curves read back from the run: split/metric for these splits and metrics
CURVES = [f"{split}/{key}" for split in ("train", "val") for key in ("loss", "accuracy", "mae")]
DEFAULTS = {"enabled": True, "model": True, "misclassified": 36}


def settings(cfg) -> dict:
    section = cfg.get("report") if cfg is not None else None
    given = {k: section[k] for k in section} if section is not None else {}
    return {**DEFAULTS, **given}


class _Parts:
    """Runs the parts of the story done in this process: each one timed, and a failure a warning and a name in the
    tag ``runner.report.failed`` (pictures are worth less than the trained run)."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn, *args) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args)
        except Exception as e:
            log.warning("report: %s failed: %s: %s", name, type(e).__name__, e, exc_info=log.isEnabledFor(logging.DEBUG))
            self.tracker.report_failed(name)
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - began


def log_early_story(tracker, model, splits, cfg, run_dir: Path, check_metrics: Mapping[str, float] | None) -> bool:
    """The parts of the story known before training, handed to where MLflow is written while this process
    trains (the sidecar draws them on the other core): matplotlib and pandas loaded there, the dataset inputs,
    the gradient check's chart and table (``check_metrics``: what the check logged, None when it was off), the
    model's graph and summary. Returns whether the report is on (``log_run_story`` then skips these parts)."""
    if not settings(cfg)["enabled"]:
        return False
    tracker.paint(warm)  # first: the imports overlap the dataset inputs' digests here
    part = _Parts(tracker)
    _before_training(tracker, part, model, splits, cfg, Path(run_dir) / "report", dict(check_metrics or {}))
    return True


def log_watch_story(tracker, cfg, run_dir: Path, watch: Watch) -> None:
    """The watch's part of the story, handed over as soon as the watch has seen the run's last step (``Training.watch_done``):
    its four pictures are drawn on the other core while this process evaluates and tells the rest of the story, which
    then leaves the watch out (``log_run_story``'s ``watch=None``)."""
    if settings(cfg)["enabled"] and watch.steps:
        _Parts(tracker)("watch", _watch, tracker, Path(run_dir) / "report", watch)


def log_run_story(
    tracker,
    model,
    loss,
    splits,
    cfg,
    run_dir: Path,
    initial_kernels: dict | None = None,
    watch: Watch | None = None,
    early: bool = False,
) -> dict[str, float]:
    """Pictures, tables, the model summary, the dataset inputs and the pyfunc model of a finished
    run, logged to ``tracker``'s run; returns the seconds each part took here. ``initial_kernels``: the
    convolutions' weights before training, by parameter name (the filters' before picture); ``watch``:
    what the watch saw during training (its pictures), None when it was off; ``early``: ``log_early_story``
    handed over its parts before training (a continued run draws them now, from what its run logged).

    This process reads off the model and the data what each picture shows (plain arrays and numbers);
    the pictures are drawn where MLflow is written: in the sidecar, on the other core, whose imports were
    done while this process trained. With ``tracking.sidecar=false`` the same parts run here."""
    options = settings(cfg)
    if not options["enabled"]:
        return {}
    out = Path(run_dir) / "report"
    part = _Parts(tracker)
    meta, test = splits.meta, splits.test
    with no_collector_pauses():
        if not early:
            tracker.paint(warm)
            logged = tracker.latest_metrics()  # a failed store stops here
            part("early", _before_training, tracker, part, model, splits, cfg, out, logged)
        described, predicted = part("predict", _predict, model, loss, cfg, meta, test.x) or (None, None)
        if watch is not None and watch.steps:
            part("watch", _watch, tracker, out, watch)
        tracker.paint(draw_curves, history=tracker.history(CURVES), out=str(out.resolve()))
        if meta.task in ("classification", "binary") and predicted is not None:
            part("classes", _classes, tracker, out, test, predicted, meta, int(options["misclassified"]))
        if conv_pictures.conv_layers(model):
            part("conv", _conv, tracker, out, model, initial_kernels or {}, test.x)
        if options["model"] and predicted is not None:  # last: MLflow's work, while the painters draw the pictures
            part("model", _model, tracker, run_dir, out, described, flat(test.x[:2], meta), predicted[:2])
    log.info("report: %s", ", ".join(f"{k} {v:.2f} s" for k, v in part.timings.items()))
    tracker.in_store()  # drawn and logged where MLflow is written: the story is told when this returns
    return part.timings


def _before_training(tracker, part: _Parts, model, splits, cfg, out: Path, metrics: Mapping[str, float]) -> None:
    out = out.resolve()
    part("inputs", log_dataset_inputs, tracker, splits, cfg)
    part("gradcheck", _gradcheck, tracker, metrics, out, model, cfg)
    part("graph", _graph, tracker, metrics, out, model, cfg)
    part("summary", _summary, tracker, out, model)


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


def _classes(tracker, out: Path, test, predicted: np.ndarray, meta, limit: int) -> None:
    n = max(meta.output_size, 2) if meta.task == "binary" else meta.output_size
    y = np.asarray(test.y).astype(np.int64).reshape(-1)
    shape = figures.image_shape(meta.input_shape, test.x[:1000])
    grid = None
    if shape is not None and limit > 0:
        shown = figures.shown_images(test.x, y, predicted, limit)
        grid = {"indices": list(shown), "images": np.array(list(shown.values())), "shape": shape, "limit": limit}
    predicted, classes = np.asarray(predicted), list(meta.classes)
    tracker.paint(draw_classes, y=y, predicted=predicted, n=n, classes=classes, grid=None, out=str(out.resolve()))
    if grid is not None:  # a painting of its own: the sidecar and its painter share them
        tracker.paint(draw_misclassified, y=y, predicted=predicted, classes=classes, grid=grid, out=str(out.resolve()))


def _conv(tracker, out: Path, model, initial_kernels: dict, images: np.ndarray, shown: int = 3) -> None:
    """The first convolution's filters before and after training, and what each convolution gives for three test images."""
    index, label = conv_pictures.conv_layers(model)[0]
    name = next(f"{label}.{k}" for k, p in model.layers[index].params.items() if np.ndim(p) == 4)
    after = conv_pictures.first_filters(model)
    maps = conv_pictures.feature_maps(model, images[:shown])
    tracker.paint(
        draw_conv_pictures,
        before=initial_kernels.get(name),
        after=after,
        label=label,
        images=np.asarray(images[:shown]),
        maps=maps,
        out=str(out.resolve()),
    )


def _watch(tracker, out: Path, watch: Watch) -> None:
    """The npz here (milliseconds); the pictures drawn from it where MLflow is written (``watch_pictures.draw_watch_pictures``:
    in the sidecar or its painter, on the other core)."""
    npz = watch_pictures.write_npz(watch, out / "watch" / "histograms.npz")
    tracker.log_artifact(npz, "watch")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for picture in watch_pictures.PICTURES:  # one painting each: the sidecar and its painter share them
        tracker.paint(
            watch_pictures.draw_watch_pictures,
            npz=str(npz.resolve()),
            warnings=[dict(w) for w in watch.warnings],
            matrices=list(watch.matrices),
            plots=str((out / "plots").resolve()),
            only=[picture],
        )


def _gradcheck(tracker, metrics: Mapping[str, float], out: Path, model, cfg) -> None:
    names = getattr(model, "names", None)  # a graph's nodes
    rows = figures.gradcheck_rows(metrics, names)
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
    tracker.paint(draw_gradcheck, rows=rows, threshold=float(cfg.gradcheck.threshold), shapes=shapes, out=str(out))


def _graph(tracker, metrics: Mapping[str, float], out: Path, model, cfg) -> None:
    from runner.report import graph_picture

    if not graph_picture.available():  # said here, once
        return
    nodes, edges = graph_picture.structure(model)
    threshold = float(cfg.gradcheck.threshold) if cfg.get("gradcheck") is not None else 1e-6
    checks = {k: float(v) for k, v in metrics.items() if k.startswith("gradcheck/")}
    tracker.paint(
        draw_graph,
        nodes=nodes,
        edges=edges,
        input_shape=tuple(model.shapes[0]),
        title=f"model {model.summary()}",
        metrics=checks,
        threshold=threshold,
        loss=str(cfg.loss.name),
        out=str(out),
    )


def _summary(tracker, out: Path, model) -> None:
    dtype = str(next(iter(model.params.values())).dtype) if model.params else ""
    graph = getattr(model, "names", None) is not None
    rows = figures.summary_rows(model)
    tracker.paint(draw_summary, rows=rows, head=f"model {model.summary()}", dtype=dtype, graph=graph, out=str(out))


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


# ----------------------------------------------- drawn where MLflow is written (report parts: the sidecar)


def warm() -> Drawn:
    """(A painting, sent first) matplotlib (its font loaded) and pandas imported where pictures are drawn, while the run
    trains (and, where MLflow is written, the pyfunc model's modules); then the collector leaves the imports' objects
    alone (``gc.freeze``; see ``runner.tracking.sidecar._warm``). In the sidecar it also starts the painter process,
    which warms itself the same way."""
    import pandas  # noqa: F401

    from runner.report.watch_pictures import warm_pictures

    warm_pictures()
    if "mlflow" in sys.modules:  # where MLflow is written: the modules of the pyfunc model (the run's last report part,
        import mlflow.pyfunc  # noqa: F401  # MLflow's work beside the painters), ~25 ms of imports off the run's end
    gc.freeze()  # in the run's process (tracking.sidecar=false) training freezes it as well, and unfreezes after
    return [], None


def _files(paths, folder: str | None) -> list[tuple[str, str | None]]:
    return [(str(path), folder) for path in paths]


def draw_curves(*, history: dict, out: str) -> Drawn:
    """plots/training_curves.png from the run's history (metric -> [(step, value)])."""
    return _files([figures.training_curves(history, Path(out) / "plots" / "training_curves.png")], "plots"), None


def draw_classes(*, y, predicted, n: int, classes: list, grid: dict | None, out: str) -> Drawn:
    """plots/confusion_matrix.png, tables/per_class.csv|md and, for grey images, plots/misclassified.png (``grid``: the
    shown images and their indices, the image shape, how many are shown)."""
    out_path = Path(out)
    matrix = figures.confusion_matrix(y, predicted, n)
    files = _files([figures.plot_confusion_matrix(matrix, classes, out_path / "plots" / "confusion_matrix.png")], "plots")
    table = figures.per_class_table(y, predicted, classes, n)
    files += _files(figures.write_table(table, out_path / "tables", "per_class"), "tables")
    if grid is not None:
        files += draw_misclassified(y=y, predicted=predicted, classes=classes, grid=grid, out=out)[0]
    return files, None


def draw_misclassified(*, y, predicted, classes: list, grid: dict, out: str) -> Drawn:
    """plots/misclassified.png: ``grid`` holds the shown images and their indices, the image shape, how many are shown."""
    shown = dict(zip((int(i) for i in grid["indices"]), grid["images"]))
    path = figures.misclassified_grid(
        shown, y, predicted, classes, Path(out) / "plots" / "misclassified.png", tuple(grid["shape"]), int(grid["limit"])
    )
    return _files([path], "plots"), None


def draw_gradcheck(*, rows: list, threshold: float, shapes: dict, out: str) -> Drawn:
    """plots/gradcheck.png and tables/gradcheck.csv|md from the check's rows (``figures.gradcheck_rows``)."""
    table = figures.gradcheck_table(rows, threshold, {k: tuple(v) for k, v in shapes.items()})
    files = _files([figures.plot_gradcheck(table, threshold, Path(out) / "plots" / "gradcheck.png")], "plots")
    return files + _files(figures.write_table(table, Path(out) / "tables", "gradcheck", floatfmt=".3e"), "tables"), None


def draw_graph(*, out: str, **drawn: Any) -> Drawn:
    """plots/graph.png and graph.svg (``graph_picture.render``'s arguments as keywords)."""
    from runner.report.graph_picture import render

    return _files(render(directory=Path(out) / "plots", **drawn), "plots"), None


def draw_summary(*, rows: list, head: str, dtype: str, graph: bool, out: str) -> Drawn:
    """summary.txt: layers, shapes, parameter counts."""
    path = Path(out) / "summary.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(figures.format_summary(rows, head, dtype, graph))
    return _files([path], None), None


def draw_conv_pictures(*, before, after, label: str, images, maps: list, out: str) -> Drawn:
    """plots/filters.png (the first convolution's filters before and after training) and plots/feature_maps.png."""
    plots = Path(out) / "plots"
    maps = [(name, np.asarray(output)) for name, output in maps]
    drawn = [conv_pictures.filters_figure(before, np.asarray(after), label, plots / "filters.png")]
    drawn.append(conv_pictures.feature_maps_figure(np.asarray(images), maps, plots / "feature_maps.png"))
    return _files(drawn, "plots"), None
