"""When a run began, for its MLflow ``start_time``: the process's start for a single run, the job's
start for a sweep's job.

MLflow stamps a run with the time it is created, which comes late (after Hydra's composition, the
data, the model and, with the sidecar, MLflow's own import): a 3.0 s run showed 0.78 s, in MLflow and
in a sweep summary's ``wall_time_s``. The run is created with ``start_time=start_ms(...)`` instead.
"""

from __future__ import annotations

import os
import sys
import time

#: When this module was first imported (``runner.__main__`` imports it first): the fallback of ``process_start``.
IMPORTED = time.time()

_job_started: float | None = None


def process_start() -> float:
    """The time this process started, from ``/proc/self/stat`` (to a clock tick, ~10 ms), or, where
    that is not available, when this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return IMPORTED
    started = time.time() - age
    return started if 0 <= age and started <= IMPORTED else IMPORTED


def job_started() -> None:
    """Called as a Hydra job starts (runner.preflight's ``on_job_start``), in the job's process."""
    global _job_started
    _job_started = time.time()


def start_ms(multirun: bool) -> int:
    """The run's start in milliseconds since the epoch, as MLflow wants it: a single run of
    ``python -m runner`` began with its process; a sweep's job when Hydra started the job (a launcher's
    worker process lives across jobs), as does a run started inside another program."""
    program = getattr(sys.modules.get("__main__"), "__spec__", None)
    whole_process = not multirun and program is not None and program.name in ("runner", "runner.__main__")
    started = process_start() if whole_process else (_job_started or time.time())
    return int(started * 1000)
