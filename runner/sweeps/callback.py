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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.api import RunnerError
from runner.run.interrupt import Interrupted
from runner.tracking.tracker import Target, Tracker, _retrying, flatten, open_client, target

log = logging.getLogger("runner.sweep")

NOTE = "mlflow_sweep.json"


@dataclass(frozen=True)
class SweepNote:
    """What a job needs to find its parent run."""

    uri: str
    experiment: str
    parent_run_id: str
    metric: str | None
    direction: str | None
    swept: list[str]  # the keys the sweep varies, to name each job's run by its own values
    resuming: bool = False  # jobs already FINISHED under this parent (same overrides) are skipped, interrupted ones resumed
    command: str = ""  # the sweep's command line, ``python -m runner --multirun ...`` (without +resume_sweep)

    def job_name(self, job_num: int, overrides: list[str]) -> str:
        own = [o for o in without_resume(overrides) if o.split("=", 1)[0].lstrip("+~") in self.swept]
        return f"{self.experiment}-{job_num} {' '.join(own)}".strip()[:250]

    def resume_command(self) -> str:
        """The command that continues this sweep: the same overrides, ``+resume_sweep=<parent run id>``."""
        return f"{self.command or 'python -m runner --multirun <same overrides>'} +resume_sweep={self.parent_run_id}"


def read_note(sweep_dir: str | Path) -> SweepNote | None:
    path = Path(sweep_dir) / NOTE
    return SweepNote(**json.loads(path.read_text())) if path.is_file() else None


def objective_of(config: DictConfig) -> tuple[str | None, str | None]:
    objective = config.get("objective") or {}
    return objective.get("metric"), objective.get("direction")


class SweepTracking(Callback):
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.parent: Tracker | None = None
        self.note: SweepNote | None = None
        self.ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
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
        sweep_params = OmegaConf.to_container(params_node, resolve=True) if params_node else {}
        resume_id = config.get("resume_sweep")
        if resume_id:
            self.parent = resumed_parent(where, str(resume_id))
        else:
            name = f"{where.experiment}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
            self.parent = Tracker.start(
                where,
                name,
                tags={
                    "runner.sweep": "parent",
                    "runner.overrides": " ".join(overrides),
                    "runner.sweeper": choices.get("hydra/sweeper", ""),
                    "runner.launcher": choices.get("hydra/launcher", ""),
                },
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
        sweep_dir = Path(config.hydra.sweep.dir)
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
            command = self.note.resume_command() if self.note else f"+resume_sweep={self.parent.run_id} and the same overrides"
            print(f"runner: sweep {self.parent.run_id} stopped before its end; continue it with: {command}", file=sys.stderr)
            self.parent.set_tags({"runner.error": f"the sweep stopped before its end; continue it with: {command}"})
            self.parent.end("FAILED")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or self.parent is None:
            return
        note = read_note(config.hydra.sweep.dir)
        failed = summarize(self.parent, note)
        if failed:
            log.warning("%d job(s) of the sweep failed: see the summary's status and error columns", failed)
        self.parent.end("FINISHED")  # the sweep itself ran; its failed jobs are FAILED children
        self.ended = True
        log.info("sweep summary logged to parent run %s; browse it with: %s", self.parent.run_id, self.parent.ui_command())


def raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


def without_resume(overrides) -> list[str]:
    """A job's overrides as its identity: ``+resume_sweep=...`` is how it was started, not what it is."""
    return [o for o in overrides if not o.lstrip("+").startswith("resume_sweep=")]


def sweep_command(config: DictConfig) -> str:
    """``python -m runner --multirun <the sweep's overrides>``, quoted for a POSIX shell, as the user can type it again."""
    hydra_overrides = [o for o in config.hydra.overrides.hydra if not o.startswith("hydra.mode=")]
    words = [*hydra_overrides, *without_resume(config.hydra.overrides.task)]
    return " ".join(["python -m runner --multirun", *(shlex.quote(w) for w in words)])


def resumed_parent(where: Target, run_id: str) -> Tracker:
    client = open_client(where.uri)
    try:
        run = client.get_run(run_id)
    except Exception:
        raise RunnerError(f"resume_sweep={run_id}: no such run in {where.uri}") from None
    if run.data.tags.get("runner.sweep") != "parent":
        raise RunnerError(f"resume_sweep={run_id}: run {run.info.run_name!r} is not a sweep's parent run")
    parent = Tracker.attach(where.uri, run_id)
    parent.reopen()
    return parent


def job_runs(note: SweepNote, overrides: list[str]) -> list:
    """The child runs of the sweep's parent with these overrides (the earlier attempts at this job of a
    resumed sweep), newest first, without those another attempt superseded."""
    key = " ".join(without_resume(overrides))
    client = open_client(note.uri)
    experiment = client.get_experiment_by_name(note.experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{note.parent_run_id}'",
        max_results=10000,
        order_by=["attributes.start_time DESC"],
    )
    return [r for r in runs if r.data.tags.get("runner.job.overrides") == key and SUPERSEDED not in r.data.tags]


def finished_job(note: SweepNote, overrides: list[str]):
    """The FINISHED child run of a resumed sweep with these overrides, if there is one."""
    return next((r for r in job_runs(note, overrides) if r.info.status == "FINISHED"), None)


def interrupted_job(note: SweepNote, overrides: list[str]) -> str | None:
    """The id of the child run of a resumed sweep with these overrides that a signal stopped (KILLED), or
    whose process died (still RUNNING, or marked KILLED by a later start), and that has a checkpoint to
    continue from: the newest such attempt, if the job has no FINISHED one."""
    from runner.run.checkpoint import FILE
    from runner.run.resume import ARTIFACT_DIR, alive

    client = open_client(note.uri)
    for run in job_runs(note, overrides):
        if run.info.status == "FINISHED":
            return None
        pid = int(run.data.tags.get("runner.pid") or 0)
        gone = run.info.status == "KILLED" or (run.info.status == "RUNNING" and pid and not alive(pid))
        if gone and f"{ARTIFACT_DIR}/{FILE}" in {a.path for a in client.list_artifacts(run.info.run_id, ARTIFACT_DIR)}:
            return run.info.run_id
    return None


#: the tag of a child run that a later attempt at the same job (``+resume_sweep``) replaced: its value is
#: that attempt's run id. The sweep's summary leaves such runs out: each job counts once.
SUPERSEDED = "runner.superseded_by"


def supersede(note: SweepNote, overrides: list[str], run_id: str) -> None:
    """Tag the earlier attempts at this job that did not finish as superseded by ``run_id``."""
    client = open_client(note.uri)
    for run in job_runs(note, overrides):
        if run.info.run_id != run_id and run.info.status != "FINISHED":
            _retrying(lambda: client.set_tag(run.info.run_id, SUPERSEDED, run_id), "mark a superseded run")
            log.info(
                "run %s (%s, an earlier attempt at this job) is superseded by run %s", run.info.run_id, run.info.status, run_id
            )


def record_failed_job(note: SweepNote, job_num: int, overrides: list[str], error: str) -> None:
    """A FAILED child run for a job that failed before its run started (e.g. a bad value in the sweep)."""
    tracker = Tracker.start(
        Target(note.uri, None, note.experiment),
        note.job_name(job_num, overrides),
        {
            "mlflow.parentRunId": note.parent_run_id,
            "runner.job.num": job_num,
            "runner.job.overrides": " ".join(without_resume(overrides)),
            "runner.error": error,
        },
    )
    tracker.end("FAILED")
    if note.resuming:
        supersede(note, overrides, tracker.run_id)


def summarize(parent: Tracker, note: SweepNote) -> int:
    """The table of every child run as CSV and markdown artifacts; the best child tagged. Returns #failed."""
    table = sweep_table(parent.uri, parent.run_id)
    if table.empty:
        log.warning("the sweep recorded no job runs")
        return 0
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
            Tracker.attach(parent.uri, best_run).set_tags({"runner.best": "true"})
            parent.set_tags({"runner.best_run_id": best_run, "runner.best_job": table.loc[best, "job"]})
            parent.log_metrics({f"best/{metric}": float(values[best])}, 0)
            table["best"] = table["run_id"] == best_run
    parent.log_metrics({"sweep/jobs": len(table), "sweep/failed": int((table["status"] != "FINISHED").sum())}, 0)
    parent.log_text(table.to_csv(index=False), "summary.csv")
    parent.log_text(table.to_markdown(index=False), "summary.md")
    return int((table["status"] != "FINISHED").sum())


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
