"""The recipes through runner's own engine: plugins from the registry, ``build_model``,
``runner.train.Training`` (what ``python -m runner`` runs), with a metric sink that does nothing or
what app.py does (``Tracker.log_metrics``, buffered, into an MLflow SQLite store)."""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .recipes import Recipe
from .timers import Timers

ROOT = Path(__file__).resolve().parents[1]


def _registry():
    from runner.plugins.discovery import load_registry

    return load_registry()  # called without arguments: its signature may grow


#: How the recipe's network is written: ``sequential`` (the chain of ``mlp_layers``, as ``model=mlp`` builds it) or
#: ``graph`` (the same layers as a ``model.type: graph`` chain of named nodes, see ``graph_nodes``).
MODELS = ("sequential", "graph")


def graph_nodes(layers: list[dict]) -> list[dict]:
    """The layer configs of a chain as graph nodes, each reading the one before: ``linear1 -> relu1 -> linear2``
    (a layer type and its count), the options as they are (same inits, widths, ``out: auto``)."""
    counts: dict[str, int] = {}
    nodes = []
    for layer in layers:
        kind = layer["type"]
        counts[kind] = counts.get(kind, 0) + 1
        nodes.append({**layer, "name": f"{kind}{counts[kind]}", "inputs": [nodes[-1]["name"] if nodes else "x"]})
    return nodes


def model_config(recipe: Recipe, registry, model: str = "sequential"):
    """What ``runner.core.model.layer_configs`` gives for the recipe's network: the chain's layer configs, or
    (``model="graph"``) a checked ``GraphConfig`` of the same layers as nodes, from a ``model.type: graph`` config."""
    from runner.core.model import layer_configs

    mlp = {
        "type": "mlp",
        "hidden": list(recipe.hidden),
        "activation": recipe.activation,
        "output_activation": recipe.output_activation,
        "linear": dict(recipe.linear),
        "dropout": recipe.dropout,
    }
    if recipe.channels:  # as conf/model/cnn.yaml writes it (model=cnn)
        mlp = {
            "type": "cnn",
            "channels": list(recipe.channels),
            "kernel": recipe.kernel,
            "padding": recipe.padding,
            "pool": recipe.pool,
            "norm": None,
            "activation": recipe.activation,
            "hidden": list(recipe.hidden),
            "dropout": recipe.dropout,
            "conv": dict(recipe.conv),
            "linear": dict(recipe.linear),
        }
    layers = layer_configs(mlp, registry)
    if model == "sequential":
        return layers
    if model == "graph":
        nodes = graph_nodes(layers)
        return layer_configs({"type": "graph", "nodes": nodes, "output": nodes[-1]["name"]}, registry)
    raise ValueError(f"model: expected one of {MODELS}, got {model!r}")


def param_digest(model) -> str:
    """sha256 of the parameters' bytes (dtype, shape, values) in order, names left out: a Sequential and the same
    chain as a graph name them differently but must hold the same bits."""
    import hashlib

    digest = hashlib.sha256()
    for value in model.params.values():
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def build(recipe: Recipe, data, seed: int = 0, model: str = "sequential"):
    """(model, loss, optimizer, splits, trainer config, batch rng, schedule, check seed) as app.py builds them."""
    from runner.core.model import build_model, shaped_for
    from runner.core.schedules import make_schedule
    from runner.core.train import TrainerConfig

    registry = _registry()
    splits = data.splits()
    init_seed, batch_seed, check_seed = np.random.SeedSequence(seed).spawn(3)
    config = model_config(recipe, registry, model)
    net = build_model(config, registry, splits.meta, np.random.default_rng(init_seed), np.dtype(np.float32))
    splits = shaped_for(net, splits)  # images for a model that starts with a convolution, as runner.run.build does
    loss = registry.get("loss", recipe.loss, "loss.name").create({}, "loss")
    optimizer = registry.get("optimizer", recipe.optimizer, "optimizer.name").create({"lr": recipe.lr}, "optimizer")
    trainer = TrainerConfig(
        epochs=recipe.epochs,
        iterations=recipe.iterations,
        batch_size=recipe.batch_size,
        sampling=recipe.sampling,
        log_every=_config().trainer.log_every,
    )
    schedule = make_schedule(recipe.schedule, recipe.lr, trainer.total_steps(len(splits.train)), {})
    return net, loss, optimizer, splits, trainer, np.random.default_rng(batch_seed), schedule, check_seed


def _config():
    """The project's defaults (conf/): log_every, the gradient check's settings."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "config.yaml")
    trainer = OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml")
    cfg.trainer = trainer
    return cfg


def train(
    recipe: Recipe,
    data,
    seed: int = 0,
    sink: str = "noop",
    phases: bool = False,
    profile: bool = False,
    model_type: str = "sequential",
    keep_model: bool = False,
    watch: bool = False,
) -> dict:
    """One timed run of ``Training.run()`` (plus ``tracker.end()``, which flushes, for the tracking sink); ``watch``:
    with a Watch of conf/config.yaml's ``watch`` section (runner.core.watch), as ``python -m runner`` has by default.
    ``model_type``: the network as a Sequential chain or as a graph (``MODELS``); the result's ``params`` is the
    digest of the final parameters (``param_digest``, computed after the timing); ``keep_model`` adds the trained
    model itself as ``model`` (in-process callers only: it is not JSON)."""
    from runner.core.train import Training

    model, loss, optimizer, splits, trainer, rng, schedule, _ = build(recipe, data, seed, model_type)
    tracker, store = None, None
    if sink == "tracking":
        tracker, store = _tracker()
        log = tracker.log_metrics
    else:

        def log(metrics, step):
            pass

    training = Training(model, loss, optimizer, splits, trainer, rng, log, schedule)
    if watch:
        from omegaconf import OmegaConf

        from runner.core.watch import Watch, WatchConfig

        config = WatchConfig(**OmegaConf.to_container(_config().watch))  # type: ignore[arg-type]
        training.watch = Watch(config, model, training.total, seed)
    timers = Timers()
    eval_timer = Timers()
    if phases:
        _instrument(timers, training, model, loss, optimizer, per_layer=bool(recipe.channels))
    else:
        eval_timer.wrap(training, "evaluation", "evaluation")
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler:
        profiler.enable()
    final = training.run()
    if tracker is not None:
        tracker.end("FINISHED")
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - began
    if store is not None:
        shutil.rmtree(store, ignore_errors=True)
    key = "test/accuracy"
    result = {
        "seconds": seconds,
        "steps": training.total,
        "test_accuracy": final.get(key, float("nan")),
        "eval_seconds": (timers if phases else eval_timer).seconds.get("evaluation", 0.0),
        "evaluations": (timers if phases else eval_timer).calls.get("evaluation", 0),
        "params": param_digest(model),
    }
    if keep_model:
        result["model"] = model
    if phases:
        result["phases"] = dict(timers.seconds)
        result["timer_overhead"] = timer_overhead() * sum(timers.calls.values())
    if profiler:
        result["profile"] = profile_rows(profiler)
    return result


def _tracker():
    """The recorder a run uses (``RunRecorder.child_process``: MLflow in the sidecar process) on a fresh SQLite
    store in a temp dir, the store created and the sidecar ready beforehand (as on a second run)."""
    from runner.tracking import runs
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    store = Path(tempfile.mkdtemp(prefix="runner-bench-store-"))
    uri, artifacts = default_store(store / "outputs")
    where = Target(uri, artifacts, "benchmarks")
    runs.start_run(where, "create the store").end("FINISHED")
    tracker = RunRecorder.child_process(where).start_run("benchmark")
    _ = tracker.run_id  # reading it waits until the sidecar has imported MLflow and created the run
    return tracker, store


def _instrument(timers: Timers, training, model, loss, optimizer, per_layer: bool = False) -> None:
    """Timers around every object of a step; ``per_layer``: each layer under its own name (``forward: 3 conv2d``),
    else the layers of a kind together (``forward: linear``)."""
    for i, (layer, kind) in enumerate(zip(model.layers, model.types)):
        name = f"{i} {kind}" if per_layer else kind
        timers.wrap(layer, "forward", f"forward: {name}")
        timers.wrap(layer, "backward", f"backward: {name}")
    timers.wrap(model, "forward", "forward: Sequential")
    timers.wrap(model, "backward", "backward: Sequential")
    timers.wrap(loss, "forward", "loss: forward")
    timers.wrap(loss, "backward", "loss: backward")
    timers.wrap(optimizer, "step", "optimizer")
    timers.wrap(training.sampler, "next", "sample indices")
    training.learning_rate = timers.timed(training.learning_rate, "schedule") if training.learning_rate else None
    training.sink = timers.timed(training.sink, "metric sink")
    timers.wrap(training, "evaluation", "evaluation", absorb=True)  # the layers' calls inside it are evaluation


def timer_overhead(n: int = 20000) -> float:
    """Seconds one wrapped call adds (a nested pair, as layer calls inside Sequential.forward), for the breakdown."""
    timers = Timers()
    inner = timers.timed(lambda: None, "inner")
    outer = timers.timed(lambda: inner(), "outer")
    plain = lambda: (lambda: None)()  # noqa: E731
    began = time.perf_counter()
    for _ in range(n):
        plain()
    base = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(n):
        outer()
    return max(0.0, (time.perf_counter() - began - base) / (2 * n))


def gradcheck(recipe: Recipe, data, seed: int = 0) -> dict:
    """One gradient check as app.py runs it before training (conf/config.yaml's gradcheck settings)."""
    from runner.core.gradcheck import check_run
    from runner.core.train import targets_for

    model, loss, _, splits, _, _, _, check_seed = build(recipe, data, seed)
    gc = _config().gradcheck
    x = splits.train.x[: gc.samples]
    t = targets_for(splits.train.y[: gc.samples], splits.meta, loss, x.dtype)
    began = time.perf_counter()
    rows = check_run(model, loss, x, t, eps=gc.eps, max_entries=gc.max_entries, seed=int(check_seed.generate_state(1)[0]))
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "max_rel_error": max(r.check.rel_error for r in rows), "arrays": len(rows)}


def profile_rows(profiler: cProfile.Profile, top: int = 18) -> list[dict]:
    """The top entries by own time: [{"function", "calls", "tottime", "cumtime"}]."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        short = f"{_short(file)}:{line}({name})" if line else name
        rows.append({"function": short, "calls": nc, "tottime": tt, "cumtime": ct})
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:top]


def _short(file: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.rsplit("/", 1)[-1]
