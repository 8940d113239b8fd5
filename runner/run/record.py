"""Record: the run in the tracking store, from its start (params, tags, the gradient check) to its end.

A new run, or one continued from a checkpoint (``+resume``); its end FINISHED, or KILLED / FAILED with
the reason in the tag ``runner.error``; the line that tells the user where a run that did not finish is.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from runner.api import RunnerError
from runner.core.gradcheck import check_run, failure_message, metrics_of
from runner.core.train import targets_for
from runner.plugins.registry import Entry
from runner.run import resume
from runner.run.build import Built
from runner.run.compose import git_commit, plain, ray_tags, threadpool_info
from runner.run.sweep_job import supersede, without_resume
from runner.tracking import runs
from runner.tracking.recorder import RunRecorder
from runner.tracking.store import Target, flatten, open_client

log = logging.getLogger("runner")


def open_run(
    cfg: DictConfig, hydra_cfg, note, where: Target, sidecar: RunRecorder | None, built: Built, started_ms, run_dir: Path
):
    """(tracker, resumed): a new run in ``where`` (through ``sidecar`` when given), or the run a checkpoint
    continues (``resumed``: the checkpoint's state, None for a new run)."""
    run_name = f"{where.experiment}-{built.model.summary()}-{cfg.optimizer.name}"
    run_tags: dict = {}
    if note:
        run_name = note.job_name(hydra_cfg.job.num, list(hydra_cfg.overrides.task))
        run_tags = {
            "mlflow.parentRunId": note.parent_run_id,
            "runner.job.num": hydra_cfg.job.num,
            "runner.job.overrides": " ".join(without_resume(hydra_cfg.overrides.task)),
        }
    resumed = None
    if cfg.get("resume"):
        config = plain(cfg)
        try:
            resumed, source = resume.find(cfg.resume, where)
        except RunnerError:  # e.g. no checkpoint artifact: a FINISHED run says that instead
            finished_run(where.uri, str(cfg.resume))
            raise
        resume.check_config(resumed, config, str(cfg.resume))
        try:
            tracker = runs.attach_run(resumed["tracking_uri"], resumed["run_id"], spill_dir=run_dir)
        except RunnerError as e:  # e.g. the server the checkpoint's run is recorded on is down
            raise RunnerError(
                f"resume={cfg.resume}: run {resumed['run_id']} is recorded in {resumed['tracking_uri']}: "
                f"{str(e).removeprefix('tracking: ')}"
            ) from None
        refuse_finished(*tracker.status(), tracker.run_id, str(cfg.resume))  # a checkpoint of a run that finished after it
        tracker.reopen(str(cfg.resume))  # RUNNING again; the interruption's reason moves to runner.interrupted
        log.info("resuming run %s from %s after step %d", tracker.run_id, source, resumed["training"]["step"])
    elif sidecar is not None:
        tracker = sidecar.start_run(run_name, run_tags, start_time=started_ms)
    else:
        tracker = runs.start_run(where, run_name, run_tags, prepared=built.store, start_time=started_ms, spill_dir=run_dir)
    if note and note.resuming:  # the earlier attempts at this job that did not finish: left out of the summary
        supersede(note, list(hydra_cfg.overrides.task), tracker.run_id)
    return tracker, resumed


def finished_run(uri: str, run_id: str) -> None:
    """``+resume=<run id>`` of a FINISHED run of ``uri``: refused (``refuse_finished``); a run id that is not in the
    store is left to resume.find to name."""
    try:
        run = open_client(uri).get_run(run_id)
    except Exception:
        return
    refuse_finished(run.info.status, run.info.run_name, run_id, run_id)


def refuse_finished(status: str, name: str, run_id: str, source: str) -> None:
    """``+resume`` of a FINISHED run: one clear line instead of reopening it (other overrides than the
    checkpoint's are left to check_config)."""
    if status == "FINISHED":
        raise RunnerError(
            f"resume={source}: run {run_id} ({name}) is FINISHED: there is nothing to continue; to train "
            f"again or longer, start a new run without +resume (e.g. the same overrides with a larger trainer.epochs); "
            f"its weights stay in its model.npz artifact"
        ) from None


def record_start(cfg: DictConfig, hydra_cfg, tracker, built: Built, seed: int) -> None:
    """Params and tags: what a new run records before it is checked and trained."""
    tracker.log_params(flatten(plain(cfg)))
    tags: dict[str, Any] = {f"runner.plugin.{e.kind}.{e.name}": e.provider for e in built.used}
    if built.registry.discovery is not None:  # every plugin distribution loaded, failed or skipped (docs/plugins.md)
        tags.update(built.registry.discovery.tags())
        tracker.log_dict(built.registry.discovery.report(), "plugins.json")
    tags["runner.overrides"] = " ".join(hydra_cfg.overrides.task)
    tags["runner.command"] = " ".join(sys.argv)
    tags["runner.seed"] = seed
    tags["runner.objective"] = f"{built.direction} {built.metric}"
    tags["runner.blas_threads"] = threadpool_info()
    tags.update(ray_tags())
    commit = git_commit(Path.cwd())
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tracker.set_tags(tags)


def gradient_check(cfg: DictConfig, built: Built, seed: int, tracker) -> dict[str, float]:
    """Backprop against central differences on a float64 copy before training: each layer alone at
    the inputs it receives, the loss alone, and every parameter end to end (runner.core.gradcheck).
    Returns the metrics it logged."""
    gc, model, splits = cfg.gradcheck, built.model, built.splits
    loss_entry: Entry | None = next((e for e in built.used if e.kind == "loss"), None)
    sample = (
        splits.train.x[: gc.samples],
        targets_for(splits.train.y[: gc.samples], splits.meta, built.loss, splits.train.x.dtype),
    )
    # one BLAS thread whatever the run's: its products are a few samples wide (as fast on one thread), and a second
    # thread stalls whenever the sidecar, starting on the other core, holds it (docs/benchmarks.md, issue 19)
    with threadpool_limits(limits=1, user_api="blas"):
        rows = check_run(model, built.loss, *sample, eps=gc.eps, max_entries=gc.max_entries, seed=seed, loss_name=cfg.loss.name)
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
    return metrics


def end_run(tracker, run_dir: Path, status: str, reason: str, trace: str | None = None) -> None:
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


def mark(e: BaseException, tracker, status: str) -> None:
    """Note on the exception that ends a run which run recorded it, and how (read by ``print_run``)."""
    e.runner_run = (tracker.run_id, status, tracker.ui_command())  # type: ignore[attr-defined]


def recorded(e: BaseException) -> tuple[str, str, str] | None:
    """(run id, status, UI command) of the run that ``e`` ended, None when it ended before any run started."""
    return getattr(e, "runner_run", None)


def print_run(e: BaseException) -> None:
    """The line that ends a run that did not finish: which run holds what was recorded, and how to see it."""
    if run := recorded(e):
        run_id, status, ui = run
        print(f"runner: run {run_id} is recorded {status}; browse it with: {ui}", file=sys.stderr)


def early_story(cfg: DictConfig, run_dir: Path, tracker, built: Built, checked: dict[str, float] | None) -> bool:
    """The parts of the report known before training (``checked``: the gradient check's metrics), drawn while
    the run trains (runner.report.artifacts.log_early_story); whether they were handed over."""
    from runner.report.artifacts import log_early_story

    return log_early_story(tracker, built.model, built.splits, cfg, run_dir, checked)


def watch_story(cfg: DictConfig, run_dir: Path, tracker, watch) -> None:
    """The watch's pictures handed over once it has seen the last step (runner.report.artifacts.log_watch_story)."""
    from runner.report.artifacts import log_watch_story

    log_watch_story(tracker, cfg, run_dir, watch)


def finish_artifacts(cfg: DictConfig, run_dir: Path, tracker, built: Built, watch=None, early: bool = False) -> None:
    """The run's report: the final weights, the resolved config, Hydra's files, the pictures and tables
    (runner.report.artifacts; ``watch``: the training's Watch, for its pictures; ``early``: ``early_story``
    handed over its parts), and the job log."""
    import numpy as np

    weights = run_dir / "model.npz"
    np.savez(weights, allow_pickle=False, **built.model.params, **built.model.buffers)
    (run_dir / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tracker.log_artifact(weights)
    tracker.log_artifact(run_dir / "config.resolved.yaml")
    tracker.log_artifact(run_dir / ".hydra", "hydra")
    from runner.report.artifacts import log_run_story  # matplotlib and pandas load only now, after training

    log_run_story(tracker, built.model, built.loss, built.splits, cfg, run_dir, built.initial_kernels, watch, early)
    if (run_dir / "runner.log").is_file():
        tracker.log_artifact(run_dir / "runner.log")
