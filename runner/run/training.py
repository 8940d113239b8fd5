"""Train: the loop of runner.core.train inside a run, with checkpoints, signals and a store that may fail.

A checkpoint is written every ``checkpoint.every`` epochs (at most one per ``checkpoint.min_interval_s``)
and whenever a signal stops the run; an artifact store that refuses writes stops training at the next
epoch's end with a local checkpoint and the command that continues it.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from runner.api import RunnerError
from runner.core.train import Training
from runner.core.watch import Watch
from runner.run import checkpoint, resume
from runner.run.build import Built
from runner.run.compose import plain
from runner.run.interrupt import Signals

log = logging.getLogger("runner")


def training_of(
    built: Built,
    tracker,
    resumed: dict | None,
    batch_seed: np.random.SeedSequence,
    watch_seed: np.random.SeedSequence | None = None,
) -> Training:
    """The loop's state: a fresh one, or the checkpoint's (its metrics continue the stored history exactly). With
    ``watch.enabled`` a Watch looks at about 50 of its steps, sampling with a generator of its own (``watch_seed``)."""
    sink = resume.continue_history(tracker, resumed["training"]["step"]) if resumed else tracker.log_metrics
    training = Training(
        built.model,
        built.loss,
        built.optimizer,
        built.splits,
        built.trainer,
        np.random.default_rng(batch_seed),
        sink,
        built.learning_rate,
    )
    if built.watch.enabled:
        seed = int((watch_seed or np.random.SeedSequence(0)).generate_state(1)[0])
        training.watch = Watch(built.watch, built.model, training.total, seed)
    return training


def train(cfg: DictConfig, hydra_cfg, training: Training, built: Built, tracker, run_dir: Path, signals: Signals) -> dict:
    """Run the loop to its end; returns the final metrics."""
    save = Checkpointer(cfg, run_dir, tracker, built, training, plain(cfg))

    def after_epoch(t: Training) -> None:
        tracker.check()  # a store that failed stops the run here, not after it
        if save.due(t) or tracker.artifact_failure:
            save()  # the artifact store refused a write: the metrics went on to here, the checkpoint is kept locally
        if tracker.artifact_failure:
            raise artifacts_refused(tracker, run_dir, hydra_cfg, t.step if cfg.checkpoint.enabled else None)

    def stop_on_signal(t: Training) -> None:
        if signals.pending is not None:
            save()
            signals.check()

    training.after_epoch, training.after_step = after_epoch, stop_on_signal
    gc.freeze()  # the imports' objects live on: the collector need not scan them (docs/benchmarks.md)
    try:
        with signals.deferred():
            final = training.run()
    finally:
        gc.unfreeze()  # back to the collector (a sweep runs jobs one after another in this process)
    tag_warnings(tracker, training)
    return final


def tag_warnings(tracker, training: Training) -> None:
    """The watch's warnings (each logged as a line when raised) as the run's tag ``runner.watch.warnings``:
    ``dead_relu 1.relu (step 1200); vanishing 0.linear.W vs 10.linear.W (step 30)``."""
    if training.watch is not None and training.watch.warnings:
        found = "; ".join(f"{w['kind']} {w['name']} (step {w['step']})" for w in training.watch.warnings)
        tracker.set_tags({"runner.watch.warnings": found[:5000]})


class Checkpointer:
    """``save()``: write the run's checkpoint atomically and log it as an artifact. ``due(training)``:
    whether an epoch's end calls for one (every ``checkpoint.every`` epochs, at most one per
    ``checkpoint.min_interval_s`` seconds; an interrupt always saves)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, tracker, built: Built, training: Training, config: dict):
        self.enabled = bool(cfg.checkpoint.enabled)
        self.every, self.min_interval = int(cfg.checkpoint.every or 0), float(cfg.checkpoint.get("min_interval_s") or 0)
        self.run_dir, self.tracker, self.built, self.training, self.config = run_dir, tracker, built, training, config
        self.last = time.monotonic()

    def __call__(self) -> None:
        if not self.enabled:
            return
        tracker, training = self.tracker, self.training
        tracker.release(self.run_dir / "checkpoints" / checkpoint.FILE)  # the sidecar may still be copying the last one
        tracker.flush()  # every metric up to this step is in the store before the checkpoint exists: a resume never misses one
        resume.in_store(tracker)
        state = resume.state_of(self.built.model, self.built.optimizer, training, self.config, tracker.run_id, tracker.uri)
        path = checkpoint.save(self.run_dir / "checkpoints", state)
        tracker.log_artifact(path, resume.ARTIFACT_DIR)
        self.last = time.monotonic()
        log.debug("checkpoint after step %d: %s", training.step, path)

    def due(self, t: Training) -> bool:
        return bool(self.every) and t.epoch % self.every == 0 and time.monotonic() - self.last >= self.min_interval


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
