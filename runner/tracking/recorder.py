"""How a run records itself: the ``Recorder`` protocol, implemented once by ``RunRecorder`` over a transport.

::

    the run's code ──> RunRecorder (run side: buffering, truncation, history, the journal, the spill file)
                           │ requests (seq, op, args, kwargs), answers (seq, status, value)
                           ├── InProcess (runner.tracking.transport): the Writer, here (tracking.sidecar=false,
                           │                                                         a sweep's parent, failed jobs)
                           └── ChildProcess: pickles them to ``python -m runner.tracking.sidecar``, which calls
                                the same Writer (runner.tracking.child_process)     (a run, by default)
    Writer (runner.tracking.writer): owns the MlflowClient, the only code that writes to MLflow

Both transports behave the same: requests are carried out in order; a failure of the store comes back as an
answer and is raised at the next ``check`` (every epoch's end), ``flush`` (every few seconds of metrics), wait
for an answer, or ``end``; after it the writer drops later requests but still tries the run's end. The history
(``history``, ``latest_metrics``) is what this recorder logged (and, for a resumed run, what the store held).

The requests, their answers and their journal, taking over from a dead child process and the spill file:
runner.tracking.exchange, which ``RunRecorder`` is built on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from runner.api import RunnerError
from runner.tracking.exchange import Exchange
from runner.tracking.exchange import continue_command as continue_command
from runner.tracking.store import BATCH_METRICS, BATCH_PARAMS, PARAM_CHARS, TAG_CHARS, Target, process_tags
from runner.tracking.transport import InProcess

log = logging.getLogger("runner.tracking")

#: how long metrics may wait in the buffer before they are sent
FLUSH_EVERY_S = 5.0


@runtime_checkable
class Recorder(Protocol):
    """What a run, a sweep's parent run or a failed job's run is recorded through."""

    uri: str
    #: (reason, folder) when the artifact store refused a write: the run stops at its next checkpoint
    artifact_failure: tuple[str, str] | None

    @property
    def run_id(self) -> str: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def flush(self) -> None: ...
    def check(self) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def release(self, path: Path) -> None: ...
    def log_dict(self, obj: Any, artifact_file: str) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def submit(self, part: Callable, *args: Any, **kwargs: Any) -> None: ...
    def paint(self, function: Callable, **kwargs: Any) -> None: ...
    def report_failed(self, name: str, reason: str | None = None) -> None: ...
    def in_store(self) -> None: ...
    def latest_metrics(self) -> dict[str, float]: ...
    def history(self, keys: list[str]) -> dict[str, list[tuple[int, float]]]: ...
    def reopen(self, source: str) -> None: ...
    def continue_after(self, step: int) -> dict: ...
    def status(self) -> tuple[str, str]: ...
    def end(self, status: str, tags: Mapping[str, Any] | None = None) -> None: ...
    def close(self) -> None: ...
    def ui_command(self) -> str: ...


class RunRecorder(Exchange):
    """One MLflow run, recorded through a transport (``InProcess`` or ``ChildProcess``): see the module's docstring."""

    def __init__(self, transport, where: Target, spill_dir: Path | None = None, opened: bool = False):
        super().__init__(transport, where, spill_dir)
        self._opened = opened  # the writer has the store open already (an InProcess one opened beforehand)
        self._copying: dict[str, int] = {}  # file artifact -> its request: a child process copies it later
        self._buffer: list[tuple[str, float, int, int]] = []
        self._history: dict[str, list[tuple[int, float]]] = {}  # key -> [(step, value)], as logged
        self._last_flush = time.monotonic()
        self._parts_failed: list[str] = []
        self._ended = False

    # -- the transports
    @classmethod
    def in_process(cls, where: Target, writer=None, spill_dir: Path | None = None) -> RunRecorder:
        """Recording in this process; ``writer``: a ``Writer`` with the store already open (runner.tracking.writer.prepare)."""
        return cls(InProcess(writer), where, spill_dir, opened=writer is not None and writer.client is not None)

    @classmethod
    def child_process(cls, where: Target, spill_dir: Path | None = None, painter: bool = True) -> RunRecorder:
        """Recording in a child process, started now: its ``import mlflow`` overlaps whatever the run does next.
        ``painter``: it may start a second process to draw pictures in (runner.tracking.painter)."""
        from runner.tracking.child_process import ChildProcess

        return cls(ChildProcess(painter), where, spill_dir)

    @property
    def client(self):
        """The in-process writer's MlflowClient (None through a child process): for reading only."""
        return getattr(getattr(self._transport, "writer", None), "client", None)

    # -- the run
    def _open(self) -> None:
        if not self._opened:
            self._opened = True
            self._send("open", self.where.uri, self.where.experiment, self.where.artifact_location)

    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None, start_time: int | None = None) -> RunRecorder:
        """A new run in the experiment (created when missing) begun at ``start_time`` (ms since the epoch; None: now);
        returns at once: the run's id is waited for when it is needed."""
        self._open()
        tags = {**process_tags(), **(tags or {})}
        self._run_seq = self._send(
            "create_run", run_name, {k: str(v)[:TAG_CHARS] for k, v in tags.items()}, start_time, reply=True
        )
        return self

    def attach_run(self, run_id: str, uri: str | None = None) -> RunRecorder:
        """An existing run (a resumed run, a sweep's parent, a child run the sweep tags), in ``uri`` when given (a
        checkpoint's store); a store that cannot be opened, or a run not in it, is a ``RunnerError`` here."""
        if uri is not None and not self._opened:
            self.where, self.uri = Target(uri, None, ""), uri
        self._open()
        self._run_seq = self._send("attach", run_id, reply=True)
        self._wait(self._run_seq)
        return self

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            try:
                self._wait(self._run_seq)
            except RunnerError:
                if self._failure is None:
                    raise
            if self._run_id is None:
                return "(not created)"  # the store failed before the run was created (already said)
        return self._run_id

    # -- writes (in order; through a child process, not waited for)
    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [(k, str(v)[:PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), BATCH_PARAMS):
            self._send("log_batch", params=items[i : i + BATCH_PARAMS])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._send("log_batch", tags=[(k, str(v)[:TAG_CHARS]) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffered, and sent every few seconds (or every 1000 values)."""
        now = int(time.time() * 1000)
        points = [(k, float(v), now, step) for k, v in metrics.items()]
        self._buffer += points
        for key, value, _, _ in points:  # every point of this run passes here: its history, without asking the store
            self._history.setdefault(key, []).append((step, value))
        self._last_step = max(self._last_step, step)
        if len(self._buffer) >= BATCH_METRICS or time.monotonic() - self._last_flush > FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered; raise the store's failure, if one came back."""
        for i in range(0, len(self._buffer), BATCH_METRICS):
            self._send("log_batch", metrics=self._buffer[i : i + BATCH_METRICS])
        self._buffer.clear()
        self._last_flush = time.monotonic()
        self._poll()

    def check(self) -> None:
        """Raise the store's failure now if one came back (cheap: called at every epoch's end)."""
        self._poll()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copied into the store in order with the other requests: a file that changes afterwards needs ``release``."""
        path = Path(path)
        is_dir = path.is_dir()
        seq = self._send("log_artifact", str(path.resolve()), artifact_path, is_dir)
        if not is_dir:
            self._copying[str(path.resolve())] = seq

    def release(self, path: Path) -> None:
        """Return once ``path`` (logged earlier) is copied into the store: the caller is about to replace it. A
        checkpoint is replaced every epoch; replaced under the child process's copy it vanished for a moment
        (FileNotFoundError), or the store got a newer file than the metrics it had."""
        seq = self._copying.pop(str(Path(path).resolve()), None)
        if seq is None or self._failure is not None or self._closed or self._spill is not None:
            return  # copied already, or never will be (the store failed: later writes are dropped)
        if isinstance(self._transport, InProcess):
            return  # copied when it was sent
        self._poll()
        if seq > self._done:
            self._wait(self._send("barrier", reply=True))

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self._send("log_dict", obj, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log_text", text, artifact_file)

    def submit(self, part: Callable, *args: Any, **kwargs: Any) -> None:
        """``part(client, run_id, experiment_id, *args, **kwargs)`` where the writer is: a part of the run's report
        that is MLflow's own work. ``part`` is a module-level function (a child process gets it by reference). Not
        waited for; its failure is a warning and a name in the tag ``runner.report.failed``, not the run's."""
        self._send("report_part", part, args, kwargs)

    def paint(self, function: Callable, **kwargs: Any) -> None:
        """``function(**kwargs)`` draws pictures where the writer is and returns (files, failure); the files are logged
        (runner.tracking.writer.Writer.paint: in the sidecar, beside a painter process). ``function``: module-level,
        plain data in. Not waited for; a failure is a warning and a name in the tag ``runner.report.failed``."""
        self._send("paint", function, kwargs)

    def report_failed(self, name: str, reason: str | None = None) -> None:
        """A part of the run's report failed (here or where the writer is): named in the tag ``runner.report.failed``
        at the run's end; ``reason``: warned about here (None: already said)."""
        if reason is not None:
            log.warning("report: %s failed: %s", name, reason)
        self._parts_failed.append(name)

    def in_store(self) -> None:
        """Return once every request sent so far is carried out (the writer carries them out in order)."""
        if self._spill is None:
            self._wait(self._send("barrier", reply=True))

    def end(self, status: str, tags: Mapping[str, Any] | None = None) -> None:
        """Flush, wait until everything is written, mark the run FINISHED, FAILED or KILLED with ``tags``
        (``runner.error``), let the transport go. The end and its tags are tried even after the store failed: a
        run never stays RUNNING, and a FAILED one says why. A failure already raised (the run is ending because of
        it) is not raised again; one found only now is, and a run that was to end FINISHED ends FAILED with it."""
        if self._ended:
            return
        self._ended = True
        known, found = (self._failure if self._said else None), None
        try:
            self.flush()
            self.in_store()  # every write before the end: carried out, or failed; the report parts' outcomes known
        except RunnerError as e:
            found = e
        tags = dict(tags or {})
        if found is not None and known is None and status == "FINISHED":
            status, tags = "FAILED", {**tags, "runner.error": str(found)}
        if self._parts_failed:
            tags["runner.report.failed"] = ", ".join(dict.fromkeys(self._parts_failed))
        try:
            self._send("end", status, {k: str(v)[:TAG_CHARS] for k, v in tags.items()})
            if found is None:
                self.in_store()
        except RunnerError as e:
            found = found or e
        if self._spill is not None:
            self._spill.close()
            log.info("tracking: the run's end (%s) is kept in %s with what was not written", status, self._spill.path)
        self._close(wait=found is not None)  # all written: the child's interpreter shutdown (~0.5 s) is not waited for
        if found is not None and known is None:  # found only now: say it
            raise found

    # -- reads
    def latest_metrics(self) -> dict[str, float]:
        """The value at the last step of every metric, from what this recorder logged (and the store held, resumed)."""
        return {key: max(points, key=lambda p: p[0])[1] for key, points in self._history.items() if points}

    def history(self, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
        """metric key -> [(step, value), ...] for the keys the run has, from what this recorder logged."""
        return {key: sorted(self._history[key]) for key in keys if self._history.get(key)}

    def reopen(self, source: str) -> None:
        """The run RUNNING again, owned by this process (runner.tracking.writer.Writer.reopen); a run still running
        in a live process is refused with one line."""
        self._wait(self._send("reopen", source, process_tags(), reply=True))

    def continue_after(self, step: int) -> dict:
        """Before continuing from a checkpoint of ``step`` (runner.run.resume.continue_history): see
        ``Writer.continue_after``. The run's history here becomes what the store holds."""
        found = self._wait(self._send("continue_after", step, reply=True)) or {}
        self._history = {key: [tuple(p) for p in points] for key, points in found.get("history", {}).items()}
        return found

    def status(self) -> tuple[str, str]:
        """(status, name) of the run in the store."""
        return tuple(self._wait(self._send("status", reply=True)) or ("UNKNOWN", ""))

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.uri}"

    def close(self) -> None:
        """Let the transport go: after ``end``, nothing to wait for (everything sent was carried out before the end
        returned; the child process's own exit, about 30 ms, is not waited for); with nothing ever sent (the run
        failed before it started) a child process is stopped at once; else it exits when it has written what it was
        sent, and that is waited for."""
        if self._seq == 0 and hasattr(self._transport, "kill"):
            self._transport.kill()
        self._close(wait=not self._ended)
