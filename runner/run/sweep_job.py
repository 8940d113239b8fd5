"""A sweep's job, as the job sees it: the note the sweep's parent left (``SweepNote``), the job's earlier
attempts under a resumed sweep (FINISHED: skipped; interrupted: continued from its checkpoint; the rest
superseded), and a FAILED child for a job that failed before its run started.

The launching process's side (the parent run, the summary) is runner.sweeps.callback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from runner.run.checkpoint import FILE
from runner.run.resume import ARTIFACT_DIR
from runner.tracking import runs
from runner.tracking.store import Target, alive, open_client

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


def without_resume(overrides) -> list[str]:
    """A job's overrides as its identity: ``+resume_sweep=...`` is how it was started, not what it is."""
    return [o for o in overrides if not o.lstrip("+").startswith("resume_sweep=")]


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
    for run in job_runs(note, overrides):
        if run.info.run_id != run_id and run.info.status != "FINISHED":
            tag_run(note.uri, run.info.run_id, {SUPERSEDED: run_id})
            log.info(
                "run %s (%s, an earlier attempt at this job) is superseded by run %s", run.info.run_id, run.info.status, run_id
            )


def record_failed_job(note: SweepNote, job_num: int, overrides: list[str], error: str, status: str = "FAILED") -> None:
    """A FAILED child run for a job that failed before its run started (e.g. a bad value in the sweep); KILLED for one
    whose process died before (runner.sweeps.ray_launch)."""
    tracker = runs.start_run(
        Target(note.uri, None, note.experiment),
        note.job_name(job_num, overrides),
        {
            "mlflow.parentRunId": note.parent_run_id,
            "runner.job.num": job_num,
            "runner.job.overrides": " ".join(without_resume(overrides)),
            "runner.error": error,
        },
    )
    tracker.end(status)
    if note.resuming:
        supersede(note, overrides, tracker.run_id)


def tag_run(uri: str, run_id: str, tags: dict) -> None:
    """Tags on another run of the store (the sweep's best child, a superseded attempt), written as every write is."""
    recorder = runs.attach_run(uri, run_id)
    try:
        recorder.set_tags(tags)
        recorder.in_store()
    finally:
        recorder.close()
