"""A ``Tracker`` whose MLflow client lives in another process (``runner.sidecar``).

The run's process never imports MLflow: ``RemoteTracker(where)`` starts the sidecar at once (its
``import mlflow`` overlaps the run's data loading), ``start_run`` asks for the run, and every write
is a message on a pipe (microseconds), carried out in order on the other core. The run id is waited
for only when needed (a checkpoint, the last log line). A failure in the store comes back as a
``RunnerError`` at the next ``check`` (every epoch's end), ``flush`` (every few seconds of metrics)
or ``end``. The run's metric history is kept here as it is logged: ``history`` and
``latest_metrics`` never wait for the store.

If the sidecar dies (killed, the OOM killer), nothing is lost and the run goes on: every request
asks for a cheap acknowledgement (not waited for), the requests not yet acknowledged are kept in a
journal, and on the sidecar's death this process opens the store itself (``runner.sidecar.Session``,
in-process: MLflow is imported then), writes the journal again (the run too, if it was never created;
a metric point written twice is one point: MLflow's SQL store ignores exact duplicates) and carries
out every later request itself, as ``tracking.sidecar=false`` does. The run's tag ``runner.sidecar``
says when and why. An artifact the artifact store refuses is kept in ``artifact_failure`` for the
run to act on (``runner.app``): metrics are still written.
"""

from __future__ import annotations

import collections
import logging
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.api import RunnerError
from runner.tracking.tracker import _BATCH_METRICS, _BATCH_PARAMS, Target, bound_http_retries, process_tags

log = logging.getLogger("runner.tracking")


class RemoteTracker:
    """One MLflow run, written by the sidecar process: the same methods as ``runner.tracking.Tracker``."""

    def __init__(self, where: Target):
        self.uri, self.where = where.uri, where
        bound_http_retries()  # inherited by the sidecar
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "runner.tracking.sidecar"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        self._seq = 0
        # the replies, read by a thread as they come: a failure the sidecar reports is seen at the next
        # check even when it arrived with an earlier reply (a select() on the pipe misses what the
        # reader's buffer already holds)
        self._inbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_replies, daemon=True, name="runner-sidecar-replies").start()
        self._replies: dict[int, Any] = {}
        self._done = 0  # every request up to this one has been carried out (replies come in order)
        self._copying: dict[str, int] = {}  # file artifact -> its request: the sidecar copies it later
        self._run_seq: int | None = None
        self._run_id: str | None = None
        self._buffer: list[tuple[str, float, int, int]] = []
        self._history: dict[str, list[tuple[int, float]]] = {}  # key -> [(step, value)], as logged
        self._last_flush = time.monotonic()
        self._ended = False  # end() was called
        self._closed = False  # the pipe is closed: after the end, or the sidecar's exit
        self._failure: str | None = None
        self._journal: collections.deque = collections.deque()  # (seq, op, args, kwargs) not yet acknowledged
        self._acked = 0  # the last request the sidecar has acknowledged (set by the reader thread)
        self._wanted: set[int] = set()  # the requests whose reply is waited for
        self._local = None  # a runner.sidecar.Session in this process, once the sidecar has died
        self._last_step = 0
        #: (reason, folder) when the artifact store refused a write; the run stops at its next checkpoint
        self.artifact_failure: tuple[str, str] | None = None

    # -- the run
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None, start_time: int | None = None) -> RemoteTracker:
        """Open the store and experiment (created when missing) and a new run in it, begun at ``start_time``
        (ms since the epoch; None: when the sidecar creates it); returns at once."""
        self._send("open", self.where.uri, self.where.experiment, self.where.artifact_location)
        tags = {**process_tags(), **(tags or {})}
        self._run_seq = self._send("create_run", run_name, {k: str(v) for k, v in tags.items()}, start_time, reply=True)
        return self

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            try:
                self._run_id = self._wait(self._run_seq)
            except RunnerError:
                if self._failure is None:
                    raise
                return "(not created)"  # the store failed before the run was created (already said)
        return self._run_id

    # -- writes (in order, not waited for)
    def log_params(self, params: Mapping[str, str]) -> None:
        items = [(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH_PARAMS):
            self._send("log_batch", params=items[i : i + _BATCH_PARAMS])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._send("log_batch", tags=[(k, str(v)[:5000]) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffered, and sent every few seconds (or every 1000 values)."""
        now = int(time.time() * 1000)
        points = [(k, float(v), now, step) for k, v in metrics.items()]
        self._buffer += points
        for key, value, _, _ in points:  # every point of this run passes here: its history, without asking the store
            self._history.setdefault(key, []).append((step, value))
        self._last_step = max(self._last_step, step)
        if len(self._buffer) >= _BATCH_METRICS or time.monotonic() - self._last_flush > 5.0:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered; raise the store's failure, if one came back."""
        for i in range(0, len(self._buffer), _BATCH_METRICS):
            self._send("log_batch", metrics=self._buffer[i : i + _BATCH_METRICS])
        self._buffer.clear()
        self._last_flush = time.monotonic()
        self._poll()

    def check(self) -> None:
        """Raise the store's failure now if one came back (cheap: called at every epoch's end)."""
        self._poll()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copied into the store by the sidecar, later: a file that changes afterwards needs ``release``."""
        path = Path(path)
        is_dir = path.is_dir()
        seq = self._send("log_artifact", str(path.resolve()), artifact_path, is_dir)
        if not is_dir:
            self._copying[str(path.resolve())] = seq

    def release(self, path: Path) -> None:
        """Wait until the sidecar has copied ``path`` (logged earlier) into the store: the caller is about
        to replace it. A checkpoint is replaced every epoch; replaced under the sidecar's copy it vanished
        for a moment (FileNotFoundError), or the store got a newer file than the metrics it had."""
        seq = self._copying.pop(str(Path(path).resolve()), None)
        if seq is None or seq <= self._done or self._failure is not None or self._closed or self._local is not None:
            return  # copied already, or never will be (the store failed: later writes are dropped)
        self._wait(self._send("barrier", reply=True))

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self._send("log_dict", obj, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log_text", text, artifact_file)

    def end(self, status: str, tags: Mapping[str, Any] | None = None) -> None:
        """Flush, wait until the sidecar has written everything, mark the run FINISHED, FAILED or KILLED
        with ``tags`` (``runner.error``), let the sidecar go. The end and its tags are tried even after the
        store failed: a run never stays RUNNING, and a FAILED one says why. A failure already raised (the
        run is ending because of it) is not raised again; one found only now is, and a run that was to
        end FINISHED ends FAILED with it."""
        if self._ended:
            return
        self._ended = True
        known, found = self._failure, None
        try:
            self.flush()
            self._wait(self._send("barrier", reply=True))  # every write before the end: carried out, or failed
        except RunnerError as e:
            found = e
        if found is not None and known is None and status == "FINISHED":
            status, tags = "FAILED", {**(tags or {}), "runner.error": str(found)}
        try:
            self._send("set_terminated", status, {k: str(v)[:5000] for k, v in (tags or {}).items()})
            if found is None:
                self._wait(self._send("barrier", reply=True))
        except RunnerError as e:
            found = found or e
        if found is None:
            self._close(wait=False)  # everything is written: its interpreter's shutdown (~0.5 s) is not waited for
            return
        self._close()  # the sidecar tries the end, then exits
        if known is None:  # found only now: say it
            raise found

    # -- reads (waited for)
    def latest_metrics(self) -> dict[str, float]:
        """The value at the last step of every metric, from what this tracker logged (a new run's every point)."""
        return {key: max(points, key=lambda p: p[0])[1] for key, points in self._history.items()}

    def history(self, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
        """metric key -> [(step, value), ...] for the keys the run has, from what this tracker logged."""
        return {key: list(self._history[key]) for key in keys if key in self._history}

    def call(self, function: str, *args, **kwargs) -> Any:
        """``module:function(client, run_id, experiment_id, *args, **kwargs)`` run in the sidecar; its result."""
        return self._wait(self._send("call", function, args, kwargs, reply=True))

    def submit(self, function: str, *args, **kwargs) -> None:
        """As ``call``, not waited for; a part of the run story: its failure is the sidecar's warning and
        the tag ``runner.report.failed``, not the run's."""
        self._send("report_part", function, args, kwargs)

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.uri}"

    # -- the pipe
    def _send(self, op: str, *args, reply: bool = False, **kwargs) -> int:
        self._seq += 1
        if self._local is not None:  # the sidecar died: carried out here
            return self._here(self._seq, op, args, kwargs, reply)
        if self._closed:  # after the end, or the store's failure (already raised): nothing more is written
            if reply:
                self._failed(self._failure or "the run has ended")
            return self._seq
        while self._journal and self._journal[0][0] <= self._acked:  # confirmed: the sidecar wrote them
            self._journal.popleft()
        self._journal.append((self._seq, op, args, kwargs))
        if reply:
            self._wanted.add(self._seq)
        try:
            pickle.dump(
                (self._seq, op, args, kwargs, True if reply else "ack"), self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL
            )
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._take_over()  # the request is in the journal: written here
        return self._seq

    def _here(self, seq: int, op: str, args: tuple, kwargs: dict, reply: bool) -> int:
        """Carry out one request in this process (after the sidecar's death), as the sidecar would."""
        from runner.tracking.sidecar import ARTIFACT_OPS, _failure, refused

        if self._failure is not None and op != "set_terminated":
            return seq  # the store failed: later writes are dropped, the end is still tried
        try:
            result = getattr(self._local, op)(*args, **kwargs)
        except Exception as e:
            if op in ARTIFACT_OPS and refused(e):
                self.artifact_failure = self.artifact_failure or refused(e)
                return seq
            self._failed(_failure(e))
        self._done = seq
        if reply:
            self._replies[seq] = result
        return seq

    def _take_over(self) -> None:
        """The sidecar died: open the store here and write what it had not confirmed; later requests are carried out here."""
        from runner.tracking.sidecar import Session

        known = self._failure
        while True:  # the replies it sent before dying (the run's id among them)
            try:
                reply = self._inbox.get(timeout=10)
            except queue.Empty:
                break
            if reply is None:
                break
            try:
                self._note(reply)
            except RunnerError:  # the store failed just before: raised below, once the run's end can be written here
                pass
        self._inbox.put(None)
        self._closed = True
        try:
            self._proc.stdin.close()
            code = self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            code = self._proc.poll()
        how = f"signal {-code}, {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        cause = f"the MLflow sidecar process (runner.sidecar, pid {self._proc.pid}) died ({how}) after step {self._last_step}"
        pending = [entry for entry in self._journal if entry[0] > self._acked]
        self._journal.clear()
        log.warning("%s; recording goes on in this process (%d requests it had not confirmed written again)", cause, len(pending))
        session = Session()
        try:
            from runner.tracking.tracker import _retrying

            run_id = self._run_id or self._replies.get(self._run_seq)
            if run_id is not None:  # the run exists: attach to it
                session.open(self.where.uri, self.where.experiment, self.where.artifact_location)
                session.run_id = run_id
                session.experiment_id = _retrying(lambda: session.client.get_run(run_id), "find run").info.experiment_id
            elif self._run_seq is not None:  # never created (or never confirmed): created here, by the pending create_run
                session.open(self.where.uri, self.where.experiment, self.where.artifact_location)
        except Exception as e:
            self._failure = f"{cause}, and this process could not open the store either: {type(e).__name__}: {e}"
            raise RunnerError(f"tracking: {self._failure}") from None
        self._local = session
        for seq, op, args, kwargs in pending:
            if op != "open":
                self._here(seq, op, args, kwargs, seq in self._wanted)
        self._send("log_batch", tags=[("runner.sidecar", f"{cause}; the run went on with MLflow in its own process")])
        if self._failure is not None and known is None:
            self._failed(self._failure)

    def _read_replies(self) -> None:
        try:
            while True:
                reply = pickle.load(self._proc.stdout)
                self._acked = reply[0]  # replies come in order: everything up to it is carried out
                self._inbox.put(reply)
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            self._inbox.put(None)  # the sidecar is gone

    def _receive(self, block: bool = True) -> bool:
        """Take one reply (waiting for it when ``block``); False when none has come. A failure is raised."""
        if self._local is not None:
            return False  # nothing more comes from the sidecar
        try:
            reply = self._inbox.get(block=block)
        except queue.Empty:
            return False
        if reply is None:
            self._inbox.put(None)  # every later read sees it too
            if self._closed:
                self._failed(self._failure or "the run has ended")
            self._take_over()
            return True
        self._note(reply)
        return True

    def _note(self, reply) -> None:
        seq, ok, value = reply
        if ok is None:  # the artifact store refused a write: the run decides when to stop (runner.app)
            self.artifact_failure = self.artifact_failure or tuple(value)
        elif not ok:
            self._failed(value)
        self._done = max(self._done, seq)
        if seq in self._wanted:
            self._wanted.discard(seq)
            self._replies[seq] = value

    def _wait(self, seq: int) -> Any:
        while seq not in self._replies:
            if self._local is not None:
                return None  # carried out here (its result, if any, is in _replies)
            self._receive()
        return self._replies.pop(seq)

    def _poll(self) -> None:
        """Read what came back without waiting: a failure is raised here."""
        while self._receive(block=False):
            pass

    def _failed(self, message: str):
        """Raise the store's failure. The pipe stays open while the sidecar lives: it drops later writes
        but still tries the run's end (see ``end``)."""
        self._failure = self._failure or message
        raise RunnerError(f"tracking: cannot record in the MLflow store {self.uri!r}: {message}")

    def close(self) -> None:
        """Let the sidecar go: after ``end``, nothing to do; with nothing ever sent (the run failed before it
        started), it is stopped at once; else it exits when it has written what it was sent."""
        if self._seq == 0 and self._proc.poll() is None:
            self._proc.kill()
        self._close()

    def _close(self, wait: bool = True) -> None:
        self._closed = True
        try:
            if self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.close()
        except OSError:
            pass
        if not wait:
            return
        try:
            self._proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log.warning("the MLflow process (runner.sidecar, pid %d) is still writing; left to finish on its own", self._proc.pid)
