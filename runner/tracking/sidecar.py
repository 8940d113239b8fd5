"""The MLflow side of a run, in a process of its own: ``python -m runner.sidecar``.

A run's process starts it first thing (``runner.tracking.RemoteTracker``), so that ``import mlflow``
(~1 s), a fresh SQLite store's schema (~1 s) and every write to the store happen on the other core
while the run loads its data and trains. The run's process sends requests, pickled, one after
another on stdin: ``(seq, op, args, kwargs, reply)``. They are carried out in order. A reply
``(seq, True, result)`` goes back on stdout when asked for; a failure is always reported,
``(seq, False, "<Type>: <message>")``, once: after the first failure the store is assumed unusable
and later writes are dropped (their replies, when asked for, fail too), except the run's end (with
its tags, e.g. ``runner.error``), which is still tried. ``reply="ack"`` asks for the reply on success
only: the run's process keeps what the sidecar has not confirmed, to write it itself if the sidecar
dies. A part of the run story (``report_part``) that fails is a warning, not a failure; so is an
artifact the artifact store refuses (permissions, a full disk: ``(seq, None, (message, folder))``):
metrics live elsewhere and are still written, and the run decides when to stop.

Ctrl-C reaches every process of the terminal's group: the sidecar ignores SIGINT and SIGTERM and
lets the run's process decide (it records KILLED, then closes the pipe). At end of input it has
carried out everything it was sent, and exits.
"""

from __future__ import annotations

import errno
import importlib
import os
import pickle
import queue
import signal
import sys
import threading
from typing import Any

#: end of input
_EOF = object()

#: Writes to the artifact store, and the errors that mean the store refuses them (not a missing source file)
ARTIFACT_OPS = ("log_artifact", "log_dict", "log_text")
REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


class Session:
    """The store, experiment and run the requests refer to, and the operations on them."""

    def __init__(self) -> None:
        self.client = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None

    # -- opening
    def open(self, uri: str, experiment: str, artifact_location: str | None) -> str:
        from runner.tracking.tracker import Target, prepare

        self.client, self.experiment_id = prepare(Target(uri, artifact_location, experiment), background=False).result()
        return self.experiment_id

    def create_run(self, run_name: str, tags: dict[str, str], start_time: int | None = None) -> str:
        from runner.tracking.tracker import _retrying

        run = _retrying(
            lambda: self.client.create_run(self.experiment_id, run_name=run_name, tags=tags, start_time=start_time), "create run"
        )
        self.run_id = run.info.run_id
        return self.run_id

    # -- writes
    def log_batch(self, metrics=(), params=(), tags=()) -> None:
        from mlflow.entities import Metric, Param, RunTag

        from runner.tracking.tracker import _retrying

        entities = {
            "metrics": [Metric(k, v, t, s) for k, v, t, s in metrics],
            "params": [Param(k, v) for k, v in params],
            "tags": [RunTag(k, v) for k, v in tags],
        }
        _retrying(lambda: self.client.log_batch(self.run_id, **entities), "log batch")

    def log_artifact(self, path: str, artifact_path: str | None, is_dir: bool) -> None:
        if is_dir:
            self.client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, path, artifact_path)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, obj, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def set_terminated(self, status: str, tags: dict[str, str] | None = None) -> None:
        """The run's end, with its tags (``runner.error``): tried even after an earlier request failed."""
        from runner.tracking.tracker import _retrying

        try:
            if tags:
                self.log_batch(tags=list(tags.items()))
        finally:
            _retrying(lambda: self.client.set_terminated(self.run_id, status), "end run")

    def call(self, function: str, args: tuple, kwargs: dict) -> Any:
        """``module:function(client, run_id, experiment_id, *args, **kwargs)``: MLflow work done here, not in the run's process."""
        module, name = function.split(":")
        return getattr(importlib.import_module(module), name)(self.client, self.run_id, self.experiment_id, *args, **kwargs)

    def report_part(self, function: str, args: tuple, kwargs: dict) -> None:
        """``call`` for a part of the run story: pictures are worth less than the run, so a failure is a
        warning and the tag ``runner.report.failed``, and the sidecar goes on (as runner.story does)."""
        try:
            self.call(function, args, kwargs)
        except Exception as e:
            name = function.split(":")[1]
            print(f"runner.sidecar: report part {name} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            try:
                self.client.set_tag(self.run_id, "runner.report.failed", name)
            except Exception:  # the store itself is failing: what follows will say so
                pass

    def barrier(self) -> None:
        """Nothing: its reply says every earlier request has been carried out."""


def _read(stream, requests: queue.Queue) -> None:
    """Read requests as fast as they come (the run's process never waits on a full pipe), into ``requests``."""
    try:
        while True:
            requests.put(pickle.load(stream))
    except (EOFError, OSError, pickle.UnpicklingError):
        requests.put(_EOF)


def serve(stdin, stdout) -> None:
    requests: queue.Queue = queue.Queue()
    # NumPy first, whole, in this thread: requests carry arrays, and unpickling one in the reader thread
    # while this thread's ``import mlflow`` is importing NumPy would see it half-initialised
    # ("module 'numpy._core' has no attribute '_multiarray_umath'": seen when a tiny run's story
    # arrived before MLflow's import had finished)
    import numpy  # noqa: F401

    threading.Thread(target=_read, args=(stdin, requests), daemon=True, name="runner-sidecar-reader").start()
    _warm()  # while the run's process loads its data
    session, failed = Session(), None
    while True:
        request = requests.get()
        if request is _EOF:
            stdout.flush()
            os._exit(0)  # everything asked for is written: skip MLflow's exit handlers (~0.5 s)
        seq, op, args, kwargs, reply = request
        if failed is not None and op != "set_terminated":  # the run's end is still tried: it must not stay RUNNING
            if reply is True:  # an "ack" is for success only
                _send(stdout, (seq, False, f"an earlier request failed: {failed}"))
            continue
        try:
            result = getattr(session, op)(*args, **kwargs)
        except Exception as e:
            if op in ARTIFACT_OPS and refused(e):  # the metrics still go on: the run stops at its next checkpoint
                _send(stdout, (seq, None, refused(e)))
                continue
            if failed is None:
                failed = _failure(e)
                _send(stdout, (seq, False, failed))
            continue
        if reply:
            _send(stdout, (seq, True, result))


def refused(e: Exception) -> tuple[str, str] | None:
    """(the reason, the folder to fix) when ``e`` is the artifact store refusing a write; None otherwise. The folder:
    the outermost unwritable one around the refused path (``chmod -R a-w`` on the artifact root refuses the run's
    folder and the models' beside it: fixing only the deepest one would fail the next write)."""
    if not isinstance(e, OSError) or e.errno not in REFUSED:
        return None
    folder = os.path.abspath(e.filename) if e.filename else ""
    while folder and not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # the deepest folder that exists
    while folder and os.path.dirname(folder) != folder and not os.access(os.path.dirname(folder), os.W_OK):
        folder = os.path.dirname(folder)
    return f"{type(e).__name__}: {e}", folder


def _failure(e: Exception) -> str:
    """The reason a request failed, one line: runner's own errors (e.g. a half-created store and its fix) as they are."""
    from runner.api import RunnerError

    if isinstance(e, RunnerError):
        return str(e).removeprefix("tracking: ")
    return f"{type(e).__name__}: {e}"


def _warm() -> None:
    """``import mlflow`` (and its client): the bulk of the sidecar's start-up."""
    from mlflow.tracking import MlflowClient  # noqa: F401


def _send(stdout, message) -> None:
    try:
        pickle.dump(message, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()
    except (BrokenPipeError, OSError, ValueError):  # the run's process is gone (killed hard): what it sent is still written
        pass


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to the terminal, not into the replies
    serve(stdin, stdout)


if __name__ == "__main__":
    main()
