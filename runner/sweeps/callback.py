"""Sweeps in MLflow: one parent run per ``--multirun``, one child run per job, a summary at the end.

``SweepTracking`` is a Hydra callback (conf/config.yaml: ``hydra.callbacks``). In the launching
process ``on_multirun_start`` creates the store, the experiment and the parent run *before* any job
starts (so parallel jobs never race to create a fresh SQLite store), and leaves a note in the sweep
directory; each job (any launcher, any process) reads that note and records itself as a child run.
``on_multirun_end`` builds the summary table from the children, tags the best, and ends the parent.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import shlex
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.api import RunnerError
from runner.run.interrupt import Interrupted
from runner.run.sweep_job import NOTE, SUPERSEDED, SweepNote, read_note, tag_run, without_resume
from runner.tracking import runs, zygote
from runner.tracking.recorder import Recorder
from runner.tracking.store import Target, flatten, open_client, target

log = logging.getLogger("runner.sweep")


def objective_of(config: DictConfig) -> tuple[str | None, str | None]:
    objective = config.get("objective") or {}
    return objective.get("metric"), objective.get("direction")


class SweepTracking(Callback):
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.parent: Recorder | None = None
        self.note: SweepNote | None = None
        self.ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        if sidecars_here(config):  # its imports overlap the parent run's start, here
            zygote.start()
        try:
            self._start(config)
        except Exception as e:  # Hydra would only warn and run the jobs unrecorded: stop instead
            print(f"runner: error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        atexit.register(self._abandoned)
        signal.signal(signal.SIGTERM, raise_interrupted)  # end like Ctrl-C, so the parent run is ended too

    def _start(self, config: DictConfig) -> None:
        choices = config.hydra.runtime.choices
        where: Target = target(config.tracking, choices.get("experiment"), Path.cwd())
        overrides = without_resume(config.hydra.overrides.task)
        params_node = config.hydra.sweeper.get("params")
        sweep_params: dict[str, Any] = OmegaConf.to_container(params_node, resolve=True) if params_node else {}  # type: ignore[assignment]
        resume_id = config.get("resume_sweep")
        sweep_dir = Path(config.hydra.sweep.dir)  # a spill file of the parent run goes there, if its store stops answering
        if resume_id:
            self.parent = resumed_parent(where, str(resume_id), sweep_dir)
        else:
            name = f"{where.experiment}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
            self.parent = runs.start_run(
                where,
                name,
                tags={
                    "runner.sweep": "parent",
                    "runner.overrides": " ".join(overrides),
                    "runner.sweeper": choices.get("hydra/sweeper", ""),
                    "runner.launcher": choices.get("hydra/launcher", ""),
                },
                spill_dir=sweep_dir,
            )
            params = {f"sweep.{i}": o for i, o in enumerate(overrides)}
            params.update({f"sweep.params.{k}": v for k, v in flatten(sweep_params).items()})
            if params:
                self.parent.log_params(params)
        metric, direction = objective_of(config)
        swept = [
            o.get_key_element().lstrip("+~") for o in OverridesParser.create().parse_overrides(overrides) if o.is_sweep_override()
        ]
        note = SweepNote(
            where.uri,
            where.experiment,
            self.parent.run_id,
            metric,
            direction,
            swept + list(sweep_params),
            bool(resume_id),
            sweep_command(config),
        )
        self.note = note
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / NOTE).write_text(json.dumps(asdict(note)))
        log.info(
            "sweep recorded as parent run %s in experiment %r of %s%s",
            self.parent.run_id,
            where.experiment,
            where.uri,
            " (resumed: jobs already FINISHED are skipped)" if resume_id else "",
        )

    def _abandoned(self) -> None:
        """At exit, a sweep that never reached its end (a job's process died, the launcher raised) says so."""
        if self.parent is not None and not self.ended:
            self._stopped()

    def _stopped(self, why: str = "") -> None:
        """The parent run FAILED with the command that continues the sweep (``+resume_sweep``), said in one line."""
        assert self.parent is not None
        command = self.note.resume_command() if self.note else f"+resume_sweep={self.parent.run_id} and the same overrides"
        print(f"runner: sweep {self.parent.run_id} stopped before its end{why}; continue it with: {command}", file=sys.stderr)
        self.parent.set_tags({"runner.error": f"the sweep stopped before its end{why}; continue it with: {command}"})
        self.parent.end("FAILED")
        self.ended = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or self.parent is None:
            return
        note = read_note(config.hydra.sweep.dir) or self.note  # the note this process left, if the folder lost it
        table = summarize(self.parent, note) if note else None
        killed = killed_jobs(table)
        if killed:  # e.g. a lost Ray worker (runner.sweeps.ray_launch): the sweep is not done, +resume_sweep continues them
            self._stopped(f" ({'; '.join(killed)}; the other jobs' results are kept)")
            raise SystemExit(1)
        failed = 0 if table is None or table.empty else int((table["status"] != "FINISHED").sum())
        if failed:
            log.warning("%d job(s) of the sweep failed: see the summary's status and error columns", failed)
        self.parent.end("FINISHED")  # the sweep itself ran; its failed jobs are FAILED children
        self.ended = True
        log.info("sweep summary logged to parent run %s; browse it with: %s", self.parent.run_id, self.parent.ui_command())


#: Hydra's launcher that runs every job in the sweep's process, one after another
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def sidecars_here(config: DictConfig) -> bool:
    """Whether the sweep's jobs start their sidecars from this process: Hydra's basic launcher (an Optuna search's
    too), with the sidecar on. Their sidecars are then forked from a warm zygote (runner.tracking.zygote)."""
    launcher = config.hydra.get("launcher") or {}
    return launcher.get("_target_") == BASIC_LAUNCHER and bool(config.get("tracking", {}).get("sidecar", True))


def raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


def killed_jobs(table) -> list[str]:
    """``job N KILLED: <why>`` for each job of the summary stopped from outside before its end (a lost Ray worker)."""
    if table is None or table.empty:
        return []
    return [f"job {row.job} KILLED: {row.error}" for row in table[table["status"] == "KILLED"].itertuples()]


def sweep_command(config: DictConfig) -> str:
    """``python -m runner --multirun <the sweep's overrides>``, quoted for a POSIX shell, as the user can type it again."""
    hydra_overrides = [o for o in config.hydra.overrides.hydra if not o.startswith("hydra.mode=")]
    words = [*hydra_overrides, *without_resume(config.hydra.overrides.task)]
    return " ".join(["python -m runner --multirun", *(shlex.quote(w) for w in words)])


def resumed_parent(where: Target, run_id: str, spill_dir: Path | None = None) -> Recorder:
    client = open_client(where.uri)
    try:
        run = client.get_run(run_id)
    except Exception:
        raise RunnerError(f"resume_sweep={run_id}: no such run in {where.uri}") from None
    if run.data.tags.get("runner.sweep") != "parent":
        raise RunnerError(f"resume_sweep={run_id}: run {run.info.run_name!r} is not a sweep's parent run")
    parent = runs.attach_run(where.uri, run_id, spill_dir)
    parent.reopen(f"resume_sweep={run_id}")
    return parent


def summarize(parent: Recorder, note: SweepNote):
    """The table of every child run (``sweep_table``) as CSV and markdown artifacts; the best child tagged. Returns the table."""
    table = sweep_table(parent.uri, parent.run_id)
    if table.empty:
        log.warning("the sweep recorded no job runs")
        return table
    metric, direction = note.metric, note.direction
    if not metric and table["objective"].any():  # auto: what the jobs reported they optimise
        direction, metric = table.loc[table["objective"] != "", "objective"].iloc[0].split(" ", 1)
    objective_column = f"metrics.{metric}" if metric else None
    finished = table[table["status"] == "FINISHED"]
    if objective_column in table.columns:
        values = finished[objective_column].dropna()
        values = values[values.map(math.isfinite)]
        if len(values):
            best = values.idxmax() if direction == "maximize" else values.idxmin()
            best_run = table.loc[best, "run_id"]
            tag_run(parent.uri, best_run, {"runner.best": "true"})
            parent.set_tags({"runner.best_run_id": best_run, "runner.best_job": table.loc[best, "job"]})
            parent.log_metrics({f"best/{metric}": float(values[best])}, 0)
            table["best"] = table["run_id"] == best_run
    parent.log_metrics({"sweep/jobs": len(table), "sweep/failed": int((table["status"] != "FINISHED").sum())}, 0)
    parent.log_text(table.to_csv(index=False), "summary.csv")
    parent.log_text(table.to_markdown(index=False), "summary.md")
    return table


def sweep_table(uri: str, parent_run_id: str):
    """A pandas table of a sweep's child runs: job, overrides, status, wall time, final metrics."""
    import pandas as pd

    client = open_client(uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10000
    )
    rows = []
    for run in runs:
        tags, info = run.data.tags, run.info
        if SUPERSEDED in tags:  # an earlier attempt at a job that a resumed sweep ran again: the job counts once
            continue
        row = {
            "job": int(tags.get("runner.job.num", -1)),
            "overrides": tags.get("runner.job.overrides", ""),
            "status": info.status,
            "objective": tags.get("runner.objective", ""),
            "wall_time_s": round((info.end_time - info.start_time) / 1000, 2) if info.end_time else None,
            "error": tags.get("runner.error", ""),
            "run_id": info.run_id,
        }
        row.update(
            {
                f"metrics.{k}": v
                for k, v in sorted(run.data.metrics.items())
                if not k.startswith("gradcheck/") or k == "gradcheck/max_rel_error"
            }
        )
        rows.append(row)
    return pd.DataFrame(rows).sort_values("job").reset_index(drop=True) if rows else pd.DataFrame()
