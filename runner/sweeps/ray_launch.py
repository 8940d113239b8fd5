"""A sweep on a Ray cluster (``hydra/launcher=ray_cluster``): each job a Ray task, as hydra-ray-launcher runs it, with
what runner's sweeps need on a cluster. The launcher class is hydra_plugins.runner_ray_launcher; this is its work.

- **Every job is waited for.** hydra-ray-launcher takes the jobs' results in order and raises at the first job whose
  worker died; the launching process then exits, and Ray kills the jobs still running with it.
- **A job whose worker died** (SIGKILL, the OOM killer, its node lost) ends KILLED with the reason in ``runner.error``
  and returns NaN to the sweeper, as a failed job does; the sweep's end (runner.sweeps.callback) then ends the parent
  run FAILED with the command that continues the sweep (``+resume_sweep``), from the job's last checkpoint.
- **Each job carries the sweep's note** (runner.run.sweep_job.NOTE) to its node: a Ray worker runs in the directory its
  node's ``ray start`` ran in, perhaps on another machine, where the launching process's sweep directory is not.
- **ray.init gets only what the config says**: hydra-ray-launcher adds ``object_store_memory`` (75 MB), which Ray
  refuses when joining a running cluster.

Ray is imported only here, when a sweep is launched on it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.run.sweep_job import NOTE, SweepNote, job_runs, read_note, record_failed_job
from runner.tracking import runs

log = logging.getLogger("runner.sweep")


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Every job submitted at once (Ray places them on the cluster's free CPUs); their returns once every one has ended."""
    try:
        import ray

        from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray
    except ImportError as e:
        raise SystemExit(
            f"runner: error: hydra/launcher=ray_cluster needs Ray and hydra-ray-launcher: pip install 'runner[ray]' ({e})"
        ) from None
    config = launcher.config
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    note = read_note(sweep_dir)  # left by runner.sweeps.callback before the launch (None: sweep_tracking disabled)
    note_text = json.dumps(asdict(note)) if note else None
    try:
        start_ray(launcher.ray.init)
    except (ConnectionError, ValueError) as e:  # no cluster at that address; an argument Ray refuses
        raise SystemExit(f"runner: error: hydra.launcher.ray.init: {e}") from None
    remote = options(launcher.ray.remote)
    task = ray.remote(**remote)(run_job) if remote else ray.remote(run_job)  # ray.remote() without options refuses
    submitted = []
    for num, overrides in enumerate(job_overrides, initial_job_idx):
        log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"job_id_for_{num}"
            sweep_config.hydra.job.num = num
        ref = task.remote(note_text, launcher.hydra_context, sweep_config, launcher.task_function, Singleton.get_state())
        submitted.append((num, list(overrides), ref))
    return [job_return(ray, note, num, overrides, ref) for num, overrides, ref in submitted]


def options(remote: DictConfig | None) -> dict[str, Any]:
    """``ray.remote``'s options from ``hydra.launcher.ray.remote`` (num_cpus, max_retries, ...)."""
    return OmegaConf.to_container(remote, resolve=True) if remote else {}  # type: ignore[return-value]


def run_job(note: str | None, hydra_context, sweep_config: DictConfig, task_function, singleton_state) -> JobReturn:
    """A job, in its Ray worker: the sweep's note left in its sweep directory on this node, then hydra-ray-launcher's job."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job

    if note is not None:
        setup_globals()  # the ${now:...} of hydra.sweep.dir: its value travels with the config, its resolver does not
        leave_note(Path(str(sweep_config.hydra.sweep.dir)), note)
    return _run_job(hydra_context, sweep_config, task_function, singleton_state)


def leave_note(sweep_dir: Path, note: str) -> None:
    """Written whole or not at all: the jobs of a node, or of a shared file system, write the same note while others read it."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=sweep_dir, prefix=f".{NOTE}.")
    with os.fdopen(fd, "w") as f:
        f.write(note)
    os.replace(part, sweep_dir / NOTE)


def job_return(ray, note: SweepNote | None, num: int, overrides: list[str], ref) -> JobReturn:
    """The job's own return; for a job that Ray lost (no return came back), its run KILLED and NaN, so the sweep goes on."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        reason = f"its Ray worker died ({ray_reason(ray, e)})"
        log.error("job %d (%s): %s", num, " ".join(overrides), reason)
        if note is not None:
            lost(note, num, overrides, reason)
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=float("nan"))


def ray_reason(ray, error: Exception) -> str:
    """One line of what Ray raised: what happened to the worker, or the last line of a task's own exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    return f"{type(error).__name__}: {lines[-1] if isinstance(error, ray.exceptions.RayTaskError) else lines[0]}"


def lost(note: SweepNote, num: int, overrides: list[str], reason: str) -> None:
    """The job's run, left RUNNING by its dead process, ended KILLED with ``reason``; a KILLED child for a job that died
    before its run started. A run the job ended itself is left as it is."""
    attempts = job_runs(note, overrides)  # newest first
    if not attempts:
        record_failed_job(note, num, overrides, reason, status="KILLED")
    elif attempts[0].info.status == "RUNNING":
        runs.attach_run(note.uri, attempts[0].info.run_id).end("KILLED", {"runner.error": reason})
