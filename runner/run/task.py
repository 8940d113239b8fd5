"""The Hydra task: compose plugins, data, model and tracking into one recorded run."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from threadpoolctl import threadpool_limits

from runner.api import DataContext, RunnerError
from runner.core.gradcheck import check_run, failure_message, metrics_of
from runner.core.model import build_model, layer_configs
from runner.core.schedules import make_schedule
from runner.core.train import TrainerConfig, Training, targets_for
from runner.plugins.discovery import load_registry
from runner.plugins.registry import Entry, Registry
from runner.run import checkpoint, clock, resume
from runner.run.interrupt import Interrupted, Signals
from runner.run.preflight import seed_of
from runner.sweeps.callback import finished_job, interrupted_job, read_note, record_failed_job, supersede, without_resume
from runner.tracking.sidecar_client import RemoteTracker
from runner.tracking.tracker import Target, Tracker, flatten, open_client, prepare, target

log = logging.getLogger("runner")


def options(section: DictConfig, *drop: str) -> dict:
    """A config section as plain keyword arguments, without the keys that select the plugin."""
    return {k: v for k, v in OmegaConf.to_container(section, resolve=True).items() if k not in drop}


#: The options of each model type, as conf/model/<type>.yaml has them.
MODEL_KEYS = {
    "mlp": ("type", "hidden", "activation", "output_activation", "norm", "dropout", "linear"),
    "sequential": ("type", "layers"),
    "graph": ("type", "nodes", "output"),
}


def model_as_chosen(cfg: DictConfig, hydra_cfg) -> None:
    """``cfg.model`` as the model group the user chose. Hydra merges an experiment's ``model:`` keys onto
    whichever model the group gives, so ``+experiment=iris model=sequential`` also carries the
    experiment's mlp options (``hidden``, ``linear``, ...): options of the other model type are left
    out here, before anything is recorded. What cannot be honoured is one clear line: a ``model.type``
    that contradicts the ``model=...`` the user wrote, or an option of the other type the user wrote."""
    model = cfg.get("model")
    kind = model.get("type") if isinstance(model, DictConfig) else None
    if kind not in MODEL_KEYS:
        return  # layer_configs names it
    choices, overrides = hydra_cfg.runtime.choices, list(hydra_cfg.overrides.task)
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    choice, experiment = choices.get("model"), choices.get("experiment")
    if "model" in keys and choice in MODEL_KEYS and choice != kind:  # the user chose a model group; something else set model.type
        if "model.type" in keys:
            written = overrides[keys.index("model.type")]
            raise RunnerError(f"{written}: contradicts model={choice}; choose the model with model={kind} alone")
        source = f"+experiment={experiment}" if experiment else "the config"
        raise RunnerError(
            f"model={choice}: {source} sets model.type: {kind} itself, which overrides model={choice}; add model.type={choice} to "
            f"the command line (an experiment should select its model with '- override /model: {kind}' in its defaults "
            f"list instead of setting model.type)"
        )
    other = [k for k in model if k not in MODEL_KEYS[kind] and any(k in ks for ks in MODEL_KEYS.values())]
    for key, override in zip(keys, overrides):
        option = key.split(".")[1] if key.startswith("model.") else None
        if option in other:
            owner = next(t for t, ks in MODEL_KEYS.items() if option in ks)
            raise RunnerError(
                f"{override}: model.{option} is an option of model={owner}, but the model is {kind} "
                f"(model={choice}); its options: {', '.join(f'model.{k}' for k in MODEL_KEYS[kind][1:])}"
            )
    if other:
        log.info(
            "model=%s: leaving out %s, options of another model type%s",
            choice,
            ", ".join(f"model.{k}" for k in other),
            f" set by +experiment={experiment}" if experiment else "",
        )
        with open_dict(model):
            for key in other:
                model.pop(key)


def data_dir(cfg: DictConfig) -> Path:
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "runner" / "data"


def dtype_of(cfg: DictConfig) -> np.dtype:
    if cfg.dtype not in ("float32", "float64"):
        raise RunnerError(f"dtype: expected 'float32' or 'float64', got {cfg.dtype!r}")
    return np.dtype(cfg.dtype)


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def objective(cfg: DictConfig, meta) -> tuple[str, str]:
    """(metric, direction) the run returns to Hydra's sweeper: by default val/accuracy (maximize),
    or val/mae (minimize) for regression."""
    score = "mae" if meta.task == "regression" else "accuracy"
    metric = cfg.objective.metric or f"val/{score}"
    measured = [
        f"{split}/{key}" for split in ("val", "test", "train") for key in ("loss", score) if (split, key) != ("train", "loss")
    ] + ["train/loss"]
    if metric not in measured:
        raise RunnerError(
            f"objective.metric: {metric!r} is not measured for a {meta.task} task; expected one of {', '.join(measured)}"
        )
    direction = cfg.objective.direction or ("maximize" if metric.endswith("accuracy") else "minimize")
    if direction not in ("maximize", "minimize"):
        raise RunnerError(f"objective.direction: expected 'maximize' or 'minimize', got {direction!r}")
    return metric, direction


def blas_threads(cfg: DictConfig, hydra_cfg) -> int:
    """BLAS threads for this job: ``threads``, or the cores shared among the launcher's parallel jobs."""
    if cfg.threads is not None:
        if isinstance(cfg.threads, bool) or not isinstance(cfg.threads, int) or cfg.threads < 1:
            raise RunnerError(f"threads: expected a positive number of BLAS threads or null (auto), got {cfg.threads!r}")
        return cfg.threads
    parallel = hydra_cfg.launcher.get("n_jobs") if hydra_cfg.get("launcher") else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(parallel, int) and parallel > 0:
        return max(1, cores // min(parallel, cores))
    return cores


#: Below this many FLOPs of matrix products per training step a second BLAS thread gains nothing and
#: costs a lot: 784-50-10 at batch 100 (24 MFLOP) took 318 vs 325 µs a step on 1 vs 2 threads, and the
#: whole `+experiment=mnist` 5.4 vs 7.4-8.1 s (the threads wait for each other and for the sidecar);
#: the 512-wide MLP (513 MFLOP) is 20 % faster on 2. With ``threads: null`` smaller models get 1 thread.
SMALL_STEP_FLOPS = 100e6


def step_flops(model, batch_size: int) -> float:
    """FLOPs of a training step's matrix products: forward, d(weights) and d(input), 2 m n k each."""
    return sum(6.0 * batch_size * w.shape[0] * w.shape[1] for w in model.params.values() if w.ndim == 2)


def execute(cfg: DictConfig) -> float:
    """One run; returns the objective (see ``objective``) for Hydra's sweepers."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    note = read_note(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    if note and note.resuming:
        done = finished_job(note, list(hydra_cfg.overrides.task))
        if done is not None:
            direction, metric = done.data.tags.get("runner.objective", "maximize val/accuracy").split(" ", 1)
            log.info("job %s already FINISHED as run %s: skipped", hydra_cfg.job.num, done.info.run_id)
            return done.data.metrics.get(metric, float("nan"))
        interrupted = interrupted_job(note, list(hydra_cfg.overrides.task))
        if interrupted is not None:  # continued from its checkpoint, into the same child run
            log.info("job %s was interrupted as run %s: resuming it from its checkpoint", hydra_cfg.job.num, interrupted)
            with open_dict(cfg):
                cfg.resume = interrupted
    started_ms = clock.start_ms(hydra_cfg.mode == RunMode.MULTIRUN)  # the run's MLflow start_time: its process's or job's start
    model_as_chosen(cfg, hydra_cfg)
    seed = seed_of(cfg.seed)  # a sweep's own seeds too (preflight saw only the others)
    cwd = Path.cwd()
    where = target(cfg.tracking, hydra_cfg.runtime.choices.get("experiment"), cwd)
    if note:  # a job of a sweep: a child of the sweep's parent run, in the same store and experiment
        where = Target(note.uri, None, note.experiment)
    # MLflow in a process of its own, started now: its import overlaps everything up to training
    sidecar = RemoteTracker(where) if cfg.tracking.get("sidecar", True) and not cfg.get("resume") else None
    try:
        return run_with(cfg, hydra_cfg, note, where, sidecar, seed, started_ms)
    finally:
        if sidecar is not None:
            sidecar.close()  # ended already, unless the run failed before it started: then nothing was sent


def run_with(
    cfg: DictConfig, hydra_cfg, note, where: Target, sidecar: RemoteTracker | None, seed: int, started_ms: int | None = None
) -> float:
    """The run itself, recorded in ``where`` (through ``sidecar`` when given)."""
    dtype = dtype_of(cfg)
    init_seed, batch_seed, check_seed = np.random.SeedSequence(seed).spawn(3)

    registry: Registry = load_registry(cfg.get("plugins"))  # plugins.disable / allow / strict (docs/plugins.md)
    used: list[Entry] = []

    def plugin(kind: str, section: DictConfig, key: str) -> object:
        entry = registry.get(kind, section.name, f"{key}.name")
        used.append(entry)
        return entry.create(options(section, "name"), f"{key} ({section.name})")

    # what the config alone can get wrong is checked before anything is created ...
    dataset = plugin("dataset", cfg.dataset, "dataset")
    layers = layer_configs(OmegaConf.to_container(cfg.model, resolve=True), registry)
    loss = plugin("loss", cfg.loss, "loss")
    optimizer = plugin("optimizer", cfg.optimizer, "optimizer")
    trainer = TrainerConfig(**options(cfg.trainer))
    # ... then MLflow's import and the store (1-2 s) go on in a thread while the data loads
    store = None if cfg.get("resume") or sidecar is not None else prepare(where)
    splits = dataset.load(DataContext(data_dir(cfg), seed, dtype))
    model = build_model(layers, registry, splits.meta, np.random.default_rng(init_seed), dtype)
    used[1:1] = [registry.get("layer", t, "model") for t in dict.fromkeys(model.types)]  # dataset, layers, loss, optimizer
    trainer.validate(len(splits.train))
    if cfg.threads is None and step_flops(model, trainer.batch_size) < SMALL_STEP_FLOPS:
        threadpool_limits(limits=1, user_api="blas")  # task()'s limits restore the previous ones afterwards
    learning_rate = lr_schedule(cfg, optimizer, trainer.total_steps(len(splits.train)))
    metric, direction = objective(cfg, splits.meta)

    run_name = f"{where.experiment}-{model.summary()}-{cfg.optimizer.name}"
    run_tags: dict = {}
    if note:
        run_name = note.job_name(hydra_cfg.job.num, list(hydra_cfg.overrides.task))
        run_tags = {
            "mlflow.parentRunId": note.parent_run_id,
            "runner.job.num": hydra_cfg.job.num,
            "runner.job.overrides": " ".join(without_resume(hydra_cfg.overrides.task)),
        }
    log.info(
        "data %s: %d train / %d val / %d test; model %s (%d parameters)",
        splits.meta.name,
        len(splits.train),
        len(splits.val),
        len(splits.test),
        model.summary(),
        model.parameter_count(),
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    resumed = None
    if cfg.get("resume"):
        try:
            resumed, source = resume.find(cfg.resume, where)
        except RunnerError:  # e.g. no checkpoint artifact: a FINISHED run says that instead
            refuse_finished(open_client(where.uri), str(cfg.resume), str(cfg.resume))
            raise
        resume.check_config(resumed, config, str(cfg.resume))
        try:
            tracker = Tracker.attach(resumed["tracking_uri"], resumed["run_id"])
        except RunnerError as e:  # e.g. the server the checkpoint's run is recorded on is down
            raise RunnerError(
                f"resume={cfg.resume}: run {resumed['run_id']} is recorded in {resumed['tracking_uri']}: "
                f"{str(e).removeprefix('tracking: ')}"
            ) from None
        refuse_finished(tracker.client, tracker.run_id, str(cfg.resume))  # a checkpoint of a run that finished after it
        resume.reopen(tracker, str(cfg.resume))  # RUNNING again; the interruption's reason moves to runner.interrupted
        log.info("resuming run %s from %s after step %d", tracker.run_id, source, resumed["training"]["step"])
    elif sidecar is not None:
        tracker = sidecar.start_run(run_name, run_tags, start_time=started_ms)
    else:
        tracker = Tracker.start(where, run_name, run_tags, prepared=store, start_time=started_ms)
    sink = (
        resume.continue_history(tracker, resumed["training"]["step"]) if resumed else tracker.log_metrics
    )  # no point logged twice
    if note and note.resuming:  # the earlier attempts at this job that did not finish: left out of the summary
        supersede(note, list(hydra_cfg.overrides.task), tracker.run_id)
    run_dir = Path(hydra_cfg.runtime.output_dir)
    training = Training(model, loss, optimizer, splits, trainer, np.random.default_rng(batch_seed), sink, learning_rate)
    with Signals() as signals:
        try:
            if resumed:
                resume.restore(resumed, model, optimizer, training)
                tracker.set_tags({"runner.resumed_after_step": training.step})
            else:
                record_start(
                    cfg, config, tracker, registry, used, hydra_cfg, seed, metric, direction, check_seed, model, loss, splits
                )
            save = checkpointer(cfg, run_dir, tracker, model, optimizer, training, config)

            def after_epoch(t: Training) -> None:
                tracker.check()  # a store that failed stops the run here, not after it
                if save.due(t) or tracker.artifact_failure:
                    save()  # the artifact store refused a write: the metrics went on to here, the checkpoint is kept locally
                if tracker.artifact_failure:
                    raise artifacts_refused(tracker, run_dir, hydra_cfg, t.step if cfg.checkpoint.enabled else None)

            training.after_epoch = after_epoch

            def stop_on_signal(t: Training) -> None:
                if signals.pending is not None:
                    save()
                    signals.check()

            training.after_step = stop_on_signal
            gc.freeze()  # the imports' ~200 000 objects live on: the collector need not scan them (82 -> 4 ms on MNIST)
            try:
                with signals.deferred():
                    final = training.run()
            finally:
                gc.unfreeze()  # back to the collector (a sweep runs jobs one after another in this process)
            finish_artifacts(cfg, run_dir, tracker, model, loss, splits)
            resume.in_store(tracker)  # every artifact copied, or refused
            if tracker.artifact_failure:
                raise artifacts_refused(tracker, run_dir, hydra_cfg)
        except Interrupted as e:
            if note:  # a sweep's job: the sweep continues it (from this checkpoint, into this run)
                log.warning(
                    "job %s (run %s) %s at step %d; continue the sweep with: %s",
                    hydra_cfg.job.num,
                    tracker.run_id,
                    e,
                    training.step,
                    note.resume_command(),
                )
            else:
                log.warning(
                    "run %s %s at step %d; continue it with: python -m runner %s +resume=%s",
                    tracker.run_id,
                    e,
                    training.step,
                    " ".join(o for o in hydra_cfg.overrides.task if not o.startswith("+resume=")),
                    tracker.run_id,
                )
            end_run(tracker, run_dir, "KILLED", f"{e} at step {training.step}")
            e.runner_run = (tracker.run_id, "KILLED", tracker.ui_command())
            raise
        except KeyboardInterrupt as e:
            end_run(tracker, run_dir, "KILLED", f"interrupted at step {training.step}")
            e.runner_run = (tracker.run_id, "KILLED", tracker.ui_command())
            raise
        except BaseException as e:
            end_run(tracker, run_dir, "FAILED", f"{type(e).__name__}: {e}", traceback.format_exc())
            e.runner_run_id = tracker.run_id  # recorded: the caller need not record it again
            e.runner_run = (tracker.run_id, "FAILED", tracker.ui_command())
            raise
    tracker.end("FINISHED")
    log.info("final: %s", "  ".join(f"{k} {v:.4f}" for k, v in final.items() if k != "epoch"))
    log.info(
        "recorded as run %s in experiment %r of %s; browse it with: %s",
        tracker.run_id,
        where.experiment,
        where.uri,
        tracker.ui_command(),
    )
    return final[metric]


def artifacts_refused(tracker, run_dir: Path, hydra_cfg, step: int | None = -1) -> RunnerError:
    """The artifact store refused a write (permissions, a full disk): what is kept, and how to continue. ``step``: where
    training stopped with a local checkpoint (None: checkpoints are off; -1: training had finished)."""
    reason, folder = tracker.artifact_failure
    fix = (
        f"free space on the disk of {folder}"
        if "No space left" in reason or "quota" in reason.lower()
        else f"make {folder} writable (e.g. chmod -R u+w {folder})"
    )
    if step == -1:
        return RunnerError(
            f"tracking: the artifact store refused a write ({reason}); the run's artifacts are incomplete, its "
            f"trained weights are kept in {run_dir / 'model.npz'}; {fix}"
        )
    if step is None:
        return RunnerError(
            f"tracking: the artifact store refused a write ({reason}); training stopped (checkpoints are off: "
            f"nothing to continue from); {fix}"
        )
    kept = run_dir / "checkpoints" / checkpoint.FILE
    overrides = " ".join(o for o in hydra_cfg.overrides.task if not o.startswith("+resume="))
    return RunnerError(
        f"tracking: the artifact store refused a write ({reason}); training stopped at step {step}, its metrics "
        f"recorded and its checkpoint kept in {kept}; {fix}, then continue the run with: python -m runner "
        f"{overrides} +resume={kept}"
    )


def refuse_finished(client, run_id: str, source: str) -> None:
    """``+resume`` of a FINISHED run: one clear line instead of reopening it (a run id that is not in the
    store is left to resume.find to name; other overrides than the checkpoint's to check_config)."""
    try:
        run = client.get_run(run_id)
    except Exception:
        return
    if run.info.status == "FINISHED":
        raise RunnerError(
            f"resume={source}: run {run_id} ({run.info.run_name}) is FINISHED: there is nothing to continue; to train "
            f"again or longer, start a new run without +resume (e.g. the same overrides with a larger trainer.epochs); "
            f"its weights stay in its model.npz artifact"
        ) from None


def record_start(
    cfg, config, tracker, registry, used, hydra_cfg, seed, metric, direction, check_seed, model, loss, splits
) -> None:
    """Params, tags and the gradient check: what a new run records before it trains."""
    tracker.log_params(flatten(config))
    tags = {f"runner.plugin.{e.kind}.{e.name}": e.provider for e in used}
    if registry.discovery is not None:  # every plugin distribution loaded, failed or skipped (docs/plugins.md)
        tags.update(registry.discovery.tags())
        tracker.log_dict(registry.discovery.report(), "plugins.json")
    tags["runner.overrides"] = " ".join(hydra_cfg.overrides.task)
    tags["runner.command"] = " ".join(sys.argv)
    tags["runner.seed"] = seed
    tags["runner.objective"] = f"{direction} {metric}"
    tags["runner.blas_threads"] = threadpool_info()
    commit = git_commit(Path.cwd())
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tracker.set_tags(tags)

    if cfg.gradcheck.enabled:
        loss_entry = next((e for e in used if e.kind == "loss"), None)
        gradient_check(cfg, model, loss, splits, int(check_seed.generate_state(1)[0]), tracker, loss_entry)


def checkpointer(cfg, run_dir: Path, tracker: Tracker, model, optimizer, training: Training, config: dict):
    """``save()``: write the run's checkpoint atomically and log it as an artifact. ``save.due(training)``:
    whether an epoch's end calls for one (every ``checkpoint.every`` epochs, at most one per
    ``checkpoint.min_interval_s`` seconds; an interrupt always saves)."""
    every, min_interval = int(cfg.checkpoint.every or 0), float(cfg.checkpoint.get("min_interval_s") or 0)
    last = [time.monotonic()]

    def save() -> None:
        if not cfg.checkpoint.enabled:
            return
        tracker.release(
            run_dir / "checkpoints" / checkpoint.FILE
        )  # the sidecar may still be copying the last one: it is replaced now
        tracker.flush()  # every metric up to this step is in the store before the checkpoint exists: a resume never misses one
        resume.in_store(tracker)
        path = checkpoint.save(
            run_dir / "checkpoints", resume.state_of(model, optimizer, training, config, tracker.run_id, tracker.uri)
        )
        tracker.log_artifact(path, resume.ARTIFACT_DIR)
        last[0] = time.monotonic()
        log.debug("checkpoint after step %d: %s", training.step, path)

    def due(t: Training) -> bool:
        return bool(every) and t.epoch % every == 0 and time.monotonic() - last[0] >= min_interval

    save.due = due
    return save


def end_run(tracker: Tracker, run_dir: Path, status: str, reason: str, trace: str | None = None) -> None:
    """End the run KILLED or FAILED with the reason as the tag ``runner.error`` (it goes with the end, which
    is tried even after the store refused a write), the traceback in its log artifact."""
    try:
        job_log = run_dir / "runner.log"
        if trace and job_log.is_file():
            with open(job_log, "a") as f:
                f.write(f"\n{trace}")
        if job_log.is_file():
            tracker.log_artifact(job_log)
    finally:
        tracker.end(status, {"runner.error": (reason.strip() or f"{status} without a message")[:5000]})


def finish_artifacts(cfg, run_dir: Path, tracker: Tracker, model, loss, splits) -> None:
    """The final weights, the resolved config, Hydra's files and the job log."""
    weights = run_dir / "model.npz"
    np.savez(weights, **model.params, **model.buffers)
    (run_dir / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tracker.log_artifact(weights)
    tracker.log_artifact(run_dir / "config.resolved.yaml")
    tracker.log_artifact(run_dir / ".hydra", "hydra")
    from runner.report.artifacts import log_run_story  # pictures, tables, summary, dataset inputs, the pyfunc model

    log_run_story(tracker, model, loss, splits, cfg, run_dir)
    if (run_dir / "runner.log").is_file():
        tracker.log_artifact(run_dir / "runner.log")


def lr_schedule(cfg: DictConfig, optimizer, total_steps: int):
    """The configured schedule over optimizer.lr, or None for an optimizer without a learning rate."""
    name = cfg.schedule.name
    if not hasattr(optimizer, "lr"):
        if name != "constant":
            raise RunnerError(f"schedule.name: {name!r} needs an optimizer with a learning rate; {cfg.optimizer.name!r} has none")
        return None
    return make_schedule(name, float(optimizer.lr), total_steps, options(cfg.schedule, "name"))


def gradient_check(cfg: DictConfig, model, loss, splits, seed: int, tracker: Tracker, loss_entry: Entry | None = None) -> None:
    """Backprop against central differences on a float64 copy before training: each layer alone at
    the inputs it receives, the loss alone, and every parameter end to end (runner.gradcheck)."""
    gc = cfg.gradcheck
    sample = splits.train.x[: gc.samples], targets_for(splits.train.y[: gc.samples], splits.meta, loss, splits.train.x.dtype)
    rows = check_run(model, loss, *sample, eps=gc.eps, max_entries=gc.max_entries, seed=seed, loss_name=cfg.loss.name)
    metrics = metrics_of(rows)
    tracker.log_metrics(metrics, 0)
    names = getattr(model, "names", None)  # a graph's rows name its nodes, a chain's their indices
    origins: dict[int | str | None, str] = dict(zip(names, model.origins) if names else enumerate(model.origins))
    origins[None] = str(loss_entry.provider) if loss_entry else ""
    message = failure_message(rows, float(gc.threshold), origins)
    tracker.set_tags({"runner.gradcheck": "failed" if message else "passed"})
    log.info(
        "gradient check: max relative error %.2e over %d arrays (%d layers alone, the loss, %d parameters end to end), "
        "%d entries at kinks skipped (threshold %.0e)",
        metrics["gradcheck/max_rel_error"],
        len(rows),
        len(model.layers),
        sum(r.level == "model" for r in rows),
        metrics["gradcheck/kinks_skipped"],
        gc.threshold,
    )
    if message:
        if gc.fail:
            raise RunnerError(message)
        log.warning(message)


def threadpool_info() -> str:
    from threadpoolctl import threadpool_info as info

    return ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in info() if p["user_api"] == "blas") or "none"


def task(cfg: DictConfig) -> float:
    """Run with the BLAS threads this job may use.

    A single run: a user's mistake becomes one clear line and exit 1 (a traceback with
    HYDRA_FULL_ERROR=1). A sweep's job: any failure is recorded (its run FAILED with the reason)
    and the job returns NaN, so the other jobs go on and the sweep is still summarised.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    try:
        with threadpool_limits(limits=blas_threads(cfg, hydra_cfg), user_api="blas"):
            return execute(cfg)
    except Interrupted as e:  # the run is KILLED, with a checkpoint to continue from
        print(f"runner: {e}", file=sys.stderr)
        print_run(e)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        print("runner: interrupted", file=sys.stderr)
        print_run(e)
        sys.exit(130)
    except Exception as e:
        if hydra_cfg.mode == RunMode.MULTIRUN and os.environ.get("HYDRA_FULL_ERROR") != "1":
            what = str(e) if isinstance(e, RunnerError) else f"{type(e).__name__}: {e}"
            log.error("job %s failed: %s", hydra_cfg.job.num, what, exc_info=not isinstance(e, RunnerError))
            note = read_note(hydra_cfg.sweep.dir)
            if note and not getattr(e, "runner_run_id", None):  # failed before its run started: record it
                record_failed_job(note, hydra_cfg.job.num, list(hydra_cfg.overrides.task), what)
            recorded = f" (run {e.runner_run[0]})" if hasattr(e, "runner_run") else ""
            print(
                f"runner: job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}) failed{recorded}: {what}",
                file=sys.stderr,
            )
            return float("nan")
        if not isinstance(e, RunnerError) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            if hasattr(e, "runner_run"):  # after the traceback Hydra prints: the run's id stays the last line
                atexit.register(print_run, e)
            raise
        print(f"runner: error: {e}", file=sys.stderr)
        print_run(e)
        sys.exit(1)


def print_run(e: BaseException) -> None:
    """The line that ends a run that did not finish: which run holds what was recorded, and how to see it."""
    if hasattr(e, "runner_run"):
        run_id, status, ui = e.runner_run
        print(f"runner: run {run_id} is recorded {status}; browse it with: {ui}", file=sys.stderr)
