"""Runs recorded from this process (the in-process transport): a new one, or one that exists.

The run's own recording usually goes through the child process (``RunRecorder.child_process``); a sweep's
parent, a job that failed before its run started, a tag on another run and a resumed run use these.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from runner.tracking.recorder import RunRecorder
from runner.tracking.store import Target
from runner.tracking.writer import Writer, prepare


def start_run(
    where: Target,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
    prepared: Future | None = None,
    start_time: int | None = None,
    spill_dir: Path | None = None,
) -> RunRecorder:
    """A new run in ``where`` (the experiment, and a fresh store, are created when missing); ``prepared``: a
    ``prepare(where)`` begun earlier; ``start_time``: the run's start in ms since the epoch (None: now). A store
    that cannot be opened, or a run that cannot be created, is a ``RunnerError`` here."""
    writer = (prepared or prepare(where, background=False)).result()
    recorder = RunRecorder.in_process(where, writer, spill_dir).start_run(run_name, tags, start_time)
    recorder.run_id  # noqa: B018  (created now: a failure is said here)
    recorder.check()
    return recorder


def attach_run(uri: str, run_id: str, spill_dir: Path | None = None) -> RunRecorder:
    """An existing run of ``uri`` (a resumed run, a sweep's parent); a store that cannot be opened is a
    ``RunnerError`` here."""
    writer = Writer()
    writer.open(uri, None, None)
    return RunRecorder.in_process(Target(uri, None, ""), writer, spill_dir).attach_run(run_id)
