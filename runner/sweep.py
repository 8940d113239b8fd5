"""Sweeps in MLflow: one parent run per ``--multirun``, one child run per job, a summary at the end.

``SweepTracking`` is a Hydra callback (conf/config.yaml: ``hydra.callbacks``). In the launching
process ``on_multirun_start`` creates the store, the experiment and the parent run *before* any job
starts (so parallel jobs never race to create a fresh SQLite store), and leaves a note in the sweep
directory; each job (any launcher, any process) reads that note and records itself as a child run.
``on_multirun_end`` builds the summary table from the children, tags the best, and ends the parent.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.tracking import Target, Tracker, flatten, open_client, target

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

    def job_name(self, job_num: int, overrides: list[str]) -> str:
        own = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in self.swept]
        return f"{self.experiment}-{job_num} {' '.join(own)}".strip()[:250]


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
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        choices = config.hydra.runtime.choices
        where: Target = target(config.tracking, choices.get("experiment"), Path.cwd())
        overrides = list(config.hydra.overrides.task)
        params_node = config.hydra.sweeper.get("params")
        sweep_params = OmegaConf.to_container(params_node, resolve=True) if params_node else {}
        name = f"{where.experiment}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
        self.parent = Tracker.start(where, name, tags={
            "runner.sweep": "parent",
            "runner.overrides": " ".join(overrides),
            "runner.sweeper": choices.get("hydra/sweeper", ""),
            "runner.launcher": choices.get("hydra/launcher", ""),
        })
        params = {f"sweep.{i}": o for i, o in enumerate(overrides)}
        params.update({f"sweep.params.{k}": v for k, v in flatten(sweep_params).items()})
        if params:
            self.parent.log_params(params)
        metric, direction = objective_of(config)
        swept = [o.get_key_element().lstrip("+~") for o in OverridesParser.create().parse_overrides(overrides) if o.is_sweep_override()]
        note = SweepNote(where.uri, where.experiment, self.parent.run_id, metric, direction, swept + list(sweep_params))
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / NOTE).write_text(json.dumps(asdict(note)))
        self.started = time.time()
        log.info("sweep recorded as parent run %s in experiment %r of %s", self.parent.run_id, where.experiment, where.uri)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or self.parent is None:
            return
        note = read_note(config.hydra.sweep.dir)
        failed = summarize(self.parent, note)
        if failed:
            log.warning("%d job(s) of the sweep failed: see the summary's status and error columns", failed)
        self.parent.end("FINISHED")  # the sweep itself ran; its failed jobs are FAILED children
        log.info("sweep summary logged to parent run %s; browse it with: %s", self.parent.run_id, self.parent.ui_command())


def record_failed_job(note: SweepNote, job_num: int, overrides: list[str], error: str) -> None:
    """A FAILED child run for a job that failed before its run started (e.g. a bad value in the sweep)."""
    tracker = Tracker.start(Target(note.uri, None, note.experiment), note.job_name(job_num, overrides), {
        "mlflow.parentRunId": note.parent_run_id, "runner.job.num": job_num, "runner.job.overrides": " ".join(overrides),
        "runner.error": error,
    })
    tracker.end("FAILED")


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
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10000)
    rows = []
    for run in runs:
        tags, info = run.data.tags, run.info
        row = {
            "job": int(tags.get("runner.job.num", -1)),
            "overrides": tags.get("runner.job.overrides", ""),
            "status": info.status,
            "objective": tags.get("runner.objective", ""),
            "wall_time_s": round((info.end_time - info.start_time) / 1000, 2) if info.end_time else None,
            "error": tags.get("runner.error", ""),
            "run_id": info.run_id,
        }
        row.update({f"metrics.{k}": v for k, v in sorted(run.data.metrics.items()) if not k.startswith("gradcheck/") or k == "gradcheck/max_rel_error"})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("job").reset_index(drop=True) if rows else pd.DataFrame()
