"""The Hydra task: one run as a pipeline, each step in the module that owns it.

    compose (runner.run.compose)   what the config says: seed, dtype, threads, where to record
    build   (runner.run.build)     plugins, data, model, loss, optimizer, schedule
    record  (runner.run.record)    the run in the store: new, or continued from a checkpoint; params, tags
    check   (runner.run.record)    the gradient check of every layer, the loss, every parameter
    train   (runner.run.training)  the loop, with checkpoints, signals and a store that may fail
    report  (runner.run.record)    weights, config, pictures, tables, the pyfunc model; the run's end

``task`` decides what a failure looks like: one line and exit 1 for a single run's mistake, a FAILED
child and NaN for a sweep's job, KILLED with a checkpoint for an interrupt.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import traceback
from pathlib import Path

import numpy as np
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict
from threadpoolctl import threadpool_limits

from runner.api import RunnerError
from runner.run import clock, record, resume
from runner.run.build import build
from runner.run.compose import blas_threads, dtype_of, model_as_chosen, painter_allowed, ray_tags
from runner.run.interrupt import Interrupted, Signals
from runner.run.preflight import seed_of
from runner.run.sweep_job import finished_job, interrupted_job, read_note, record_failed_job
from runner.run.training import artifacts_refused, train, training_of
from runner.tracking.recorder import RunRecorder
from runner.tracking.store import Target, target
from runner.tracking.writer import prepare

log = logging.getLogger("runner")


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
            return execute(cfg, hydra_cfg)
    except Interrupted as e:  # the run is KILLED, with a checkpoint to continue from
        print(f"runner: {e}", file=sys.stderr)
        record.print_run(e)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        print("runner: interrupted", file=sys.stderr)
        record.print_run(e)
        sys.exit(130)
    except Exception as e:
        if hydra_cfg.mode == RunMode.MULTIRUN and os.environ.get("HYDRA_FULL_ERROR") != "1":
            what = str(e) if isinstance(e, RunnerError) else f"{type(e).__name__}: {e}"
            log.error("job %s failed: %s", hydra_cfg.job.num, what, exc_info=not isinstance(e, RunnerError))
            note = read_note(hydra_cfg.sweep.dir)
            if note and not record.recorded(e):  # failed before its run started: record it
                record_failed_job(note, hydra_cfg.job.num, list(hydra_cfg.overrides.task), what)
            run = record.recorded(e)
            which = f" (run {run[0]})" if run else ""
            print(
                f"runner: job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}) failed{which}: {what}",
                file=sys.stderr,
            )
            return float("nan")
        if not isinstance(e, RunnerError) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            if record.recorded(e):  # after the traceback Hydra prints: the run's id stays the last line
                atexit.register(record.print_run, e)
            raise
        print(f"runner: error: {e}", file=sys.stderr)
        record.print_run(e)
        sys.exit(1)


def execute(cfg: DictConfig, hydra_cfg) -> float:
    """One run (or a sweep's job); returns the objective (``runner.run.compose.objective``) for Hydra's sweepers."""
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
    where = target(cfg.tracking, hydra_cfg.runtime.choices.get("experiment"), Path.cwd())
    if note:  # a job of a sweep: a child of the sweep's parent run, in the same store and experiment
        where = Target(note.uri, None, note.experiment)
    # MLflow in a process of its own, started now: its import overlaps everything up to training
    run_dir = Path(hydra_cfg.runtime.output_dir)  # a spill file goes there if the store stops answering
    child = cfg.tracking.get("sidecar", True) and not cfg.get("resume")
    sidecar = RunRecorder.child_process(where, spill_dir=run_dir, painter=painter_allowed(cfg, hydra_cfg)) if child else None
    try:
        return run(cfg, hydra_cfg, note, where, sidecar, seed, started_ms)
    finally:
        if sidecar is not None:
            sidecar.close()  # ended already, unless the run failed before it started: then nothing was sent


def run(cfg: DictConfig, hydra_cfg, note, where: Target, sidecar: RunRecorder | None, seed: int, started_ms=None) -> float:
    """compose -> build -> record -> check -> train -> report, recorded in ``where`` (through ``sidecar`` when given)."""
    dtype = dtype_of(cfg)
    init_seed, batch_seed, check_seed, watch_seed = np.random.SeedSequence(seed).spawn(4)  # the first three as ever
    in_process = not cfg.get("resume") and sidecar is None  # MLflow's import and the store go on while the data loads
    store = (lambda: prepare(where)) if in_process else (lambda: None)
    built = build(cfg, seed, dtype, init_seed, before_data=store, reuse_data=note is not None)
    run_dir = Path(hydra_cfg.runtime.output_dir)
    tracker, resumed = record.open_run(cfg, hydra_cfg, note, where, sidecar, built, started_ms, run_dir)
    training = training_of(built, tracker, resumed, batch_seed, watch_seed)
    early = False  # the report's parts known before training: handed over then (a continued run draws them at its end)
    with Signals() as signals:
        try:
            if resumed:
                resume.restore(resumed, built.model, built.optimizer, training)
                tracker.set_tags({"runner.resumed_after_step": training.step, **ray_tags()})  # where it runs now
            else:
                record.record_start(cfg, hydra_cfg, tracker, built, seed)
                checked = None
                if cfg.gradcheck.enabled:
                    checked = record.gradient_check(cfg, built, int(check_seed.generate_state(1)[0]), tracker)
                early = record.early_story(cfg, run_dir, tracker, built, checked)  # drawn while it trains
            handed: list = []  # the watch, once its pictures were handed over at the last step

            def watch_done(watch) -> None:
                record.watch_story(cfg, run_dir, tracker, watch)
                handed.append(watch)

            if early and training.watch is not None:  # (a continued run draws them at its end, after the warm-up)
                training.watch_done = watch_done
            final = train(cfg, hydra_cfg, training, built, tracker, run_dir, signals)
            record.finish_artifacts(cfg, run_dir, tracker, built, None if handed else training.watch, early)
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
            record.end_run(tracker, run_dir, "KILLED", f"{e} at step {training.step}")
            record.mark(e, tracker, "KILLED")
            raise
        except KeyboardInterrupt as e:
            record.end_run(tracker, run_dir, "KILLED", f"interrupted at step {training.step}")
            record.mark(e, tracker, "KILLED")
            raise
        except BaseException as e:
            record.end_run(tracker, run_dir, "FAILED", f"{type(e).__name__}: {e}", traceback.format_exc())
            record.mark(e, tracker, "FAILED")  # recorded: the caller need not record it again
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
    return final[built.metric]
