"""The one writer of runs: ``Writer`` owns an MlflowClient and does every MLflow write runner makes.

A run's recorder (runner.tracking.recorder) sends it requests, ``(seq, op, args, kwargs)``: in the
run's own process (``InProcess``) or in the child process ``python -m runner.tracking.sidecar``
(``ChildProcess``), which calls this same class. ``Writer.apply`` carries one request out and
answers ``(seq, status, value)``, the status one of runner.tracking.outcomes's, each explained there:
``ok``, ``refused`` (the artifact store refused a write), ``part failed`` (a part of the run's report),
``error`` (a line for the user; the store is fine), ``failed`` / ``unreachable`` (the store failed; every
later request is then ``dropped`` but the run's ``end``, which is still tried: a run must not stay RUNNING).

No module but this one writes to MLflow (runner.tracking.store.open_client gives read-only uses a client),
besides the two it calls for its own work: runner.tracking.experiments (the experiment opened, dead runs
marked KILLED) and runner.tracking.rewind (a resumed run's points after its checkpoint). The statuses and
how an exception is read as one live in runner.tracking.outcomes; they are importable from here too.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from functools import partial
from typing import Any

from runner.api import RunnerError
from runner.tracking.experiments import experiment_of, reap_stale_runs
from runner.tracking.outcomes import (
    DROPPED,
    ERROR,
    FAILED,
    OK,
    PART_FAILED,
    REFUSED,
    UNREACHABLE,
    PartFailed,
    failure_text,
    refused,
    unreachable,
)
from runner.tracking.outcomes import REFUSED_ERRNOS as REFUSED_ERRNOS
from runner.tracking.outcomes import UNREACHABLE_SIGNS as UNREACHABLE_SIGNS
from runner.tracking.rewind import points_after, truncate
from runner.tracking.store import Target, alive, open_client, retrying

log = logging.getLogger("runner.tracking")

#: the requests a writer carries out (its methods of those names)
REQUESTS = frozenset(
    {
        "open",
        "create_run",
        "attach",
        "reopen",
        "status",
        "log_batch",
        "log_artifact",
        "log_dict",
        "log_text",
        "end",
        "report_part",
        "paint",
        "barrier",
        "continue_after",
    }
)
#: writes to the artifact store: one that raises an OSError of REFUSED_ERRNOS is the store refusing it (``refused``)
ARTIFACT_OPS = ("log_artifact", "log_dict", "log_text")
#: requests whose RunnerError is a line for the user, not the store failing
ANSWERS = ("reopen",)


class Writer:
    """The store, experiment and run the requests refer to, and every write to them. ``painter``: pictures may be
    drawn in a second process too (the sidecar's writer: runner.tracking.painter)."""

    def __init__(self, painter: bool = False) -> None:
        self._may_paint = painter
        self._painter: Any = None  # the painter's executor, once the first picture is drawn
        self._paintings: list[tuple[str, Future]] = []  # sent to the painter, not logged yet
        self._early: dict[int, tuple[str, Future]] = {}  # paint requests handed to the painters before their turn
        self.client: Any = None  # an MlflowClient, once open
        self.uri: str | None = None
        self.run_id: Any = None  # str, once the run is created or attached
        self.experiment_id: str | None = None
        #: the store's first failure: later requests are dropped (the run's end is still tried)
        self.failure: str | None = None

    # -- carrying out one request
    def apply(self, seq: int, op: str, args: tuple = (), kwargs: Mapping | None = None) -> tuple[int, str, Any]:
        if op not in REQUESTS:
            return seq, FAILED, f"unknown request {op!r}"
        if self.failure is not None and op != "end":
            return seq, DROPPED, f"an earlier request failed: {self.failure}"
        if op == "paint" and seq in self._early:  # drawing since it came in (``early``): logged at the next barrier
            self._paintings.append(self._early.pop(seq))
            return seq, OK, None
        try:
            result = getattr(self, op)(*args, **(kwargs or {}))
        except PartFailed as e:
            return seq, PART_FAILED, (e.name, e.reason)
        except Exception as e:
            if op in ARTIFACT_OPS and refused(e):
                return seq, REFUSED, refused(e)
            if op in ANSWERS and isinstance(e, RunnerError):
                return seq, ERROR, str(e)
            message = failure_text(e)
            self.failure = self.failure or message
            return seq, UNREACHABLE if unreachable(e) else FAILED, message
        return seq, OK, result

    # -- opening
    def open(self, uri: str, experiment: str | None, artifact_location: str | None) -> str | None:
        """The store (created or repaired when needed) and the experiment (created when missing); the runs of dead
        processes of this host marked KILLED. Returns the experiment's id. Without ``experiment``: the store alone,
        for an existing run (``attach``)."""
        where = Target(uri, artifact_location, experiment or "")
        client = open_client(uri)  # a server must answer; a SQLite store is created or repaired by one process at a time
        if not experiment:
            self.client, self.uri = client, uri
            return None
        try:
            experiment_id = experiment_of(client, where)
        except Exception as e:  # an unreachable server or an unusable store: say which
            raise RunnerError(f"tracking: cannot open the MLflow store {uri!r}: {type(e).__name__}: {e}") from None
        try:
            reap_stale_runs(client)
        except Exception as e:  # housekeeping: the run itself can still be recorded
            log.warning("tracking: could not look for runs left RUNNING by dead processes: %s: %s", type(e).__name__, e)
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        return experiment_id

    def create_run(self, run_name: str, tags: Mapping[str, str], start_time: int | None = None) -> str:
        run = retrying(
            lambda: self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags), start_time=start_time),
            "create run",
        )
        self.run_id = run.info.run_id
        return self.run_id

    def attach(self, run_id: str) -> str:
        """An existing run (a resumed one, a sweep's parent, a run the sweep tags)."""
        run = retrying(lambda: self.client.get_run(run_id), "find run")
        self.run_id, self.experiment_id = run_id, run.info.experiment_id
        return run_id

    def reopen(self, source: str, owner: Mapping[str, str]) -> None:
        """The run RUNNING again and owned by ``owner`` (the process tags of the process that continues it). A run still
        RUNNING in a live process of this host is refused; the reason it stopped moves from ``runner.error`` to
        ``runner.interrupted`` (a run whose process died without ending it, SIGKILL, says so there)."""
        try:
            run = self.client.get_run(self.run_id)
        except Exception as e:
            raise RunnerError(f"resume={source}: run {self.run_id} is not in {self.uri} ({type(e).__name__}: {e})") from None
        host, pid = run.data.tags.get("runner.host"), int(run.data.tags.get("runner.pid") or 0)
        running = run.info.status == "RUNNING"
        if running and host == socket.gethostname() and pid and str(pid) != owner.get("runner.pid") and alive(pid):
            raise RunnerError(
                f"resume={source}: run {self.run_id} is still running in process {pid} on {host}; "
                "stop it first (Ctrl-C writes a checkpoint)"
            )
        retrying(lambda: self.client.update_run(self.run_id, status="RUNNING"), "reopen run")
        previous = run.data.tags.get("runner.error")
        tags = dict(owner)
        if previous:
            tags["runner.interrupted"] = previous
        elif running:
            tags["runner.interrupted"] = f"process {pid} on {host} exited without ending the run (killed hard?)"
        self.log_batch(tags=list(tags.items()))
        if previous:
            retrying(lambda: self.client.delete_tag(self.run_id, "runner.error"), "reopen run")

    # -- reads a run needs from its store
    def status(self) -> tuple[str, str]:
        """(status, run name) of the run."""
        run = retrying(lambda: self.client.get_run(self.run_id), "find run")
        return run.info.status, run.info.run_name

    def continue_after(self, step: int) -> dict:
        """Before a run continues from a checkpoint of ``step``: the points the store holds after it deleted (a
        SQLAlchemy store) or returned to be left out (``later``; a tracking server cannot delete them); ``history``:
        every point the store then holds, metric key -> [(step, value)], and ``count``: how many came after ``step``."""
        later = points_after(self.client, self.run_id, step)
        deleted = bool(later) and truncate(self.client, self.run_id, step)
        keys = retrying(lambda: self.client.get_run(self.run_id), "find run").data.metrics
        history = {
            key: sorted((m.step, m.value) for m in retrying(partial(self.client.get_metric_history, self.run_id, key), "read"))
            for key in keys
        }
        return {
            "later": {} if deleted else later,
            "deleted": deleted,
            "count": sum(len(points) for points in later.values()),
            "keys": sorted(later),
            "history": history,
        }

    # -- writes
    def log_batch(self, metrics=(), params=(), tags=()) -> None:
        """``metrics``: (key, value, timestamp ms, step); ``params``, ``tags``: (key, value); at most MLflow's batch sizes."""
        from mlflow.entities import Metric, Param, RunTag

        entities = {
            "metrics": [Metric(k, v, t, s) for k, v, t, s in metrics],
            "params": [Param(k, v) for k, v in params],
            "tags": [RunTag(k, v) for k, v in tags],
        }
        retrying(lambda: self.client.log_batch(self.run_id, **entities), "log batch")

    def log_artifact(self, path: str, artifact_path: str | None, is_dir: bool) -> None:
        if is_dir:
            self.client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, path, artifact_path)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, obj, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def stop_painting(self) -> None:
        """The painter processes stopped (the sidecar's end of input: after the run's end, or without one when its run's
        process was killed hard), so that none outlives the sidecar."""
        if self._painter is not None:
            self._painter.shutdown()
        self._painter, self._may_paint = None, False

    def end(self, status: str, tags: Mapping[str, str] | None = None) -> None:
        """The run's end, with its tags (``runner.error``): tried even after an earlier request failed. The painters are
        stopped at the end of input that follows (``runner.tracking.sidecar``), off the run's path: killing and reaping
        two forks took 18 ms the run's end waited for."""
        try:
            self._collect()  # what the painter drew, logged (normally done at the barrier before the end)
        except PartFailed:
            pass  # said at that barrier; an end for a failure does not wait for its pictures to be right
        try:
            if tags:
                self.log_batch(tags=list(tags.items()))
        finally:
            retrying(lambda: self.client.set_terminated(self.run_id, status), "end run")

    def report_part(self, function: Callable, args: tuple = (), kwargs: Mapping | None = None) -> Any:
        """``function(client, run_id, experiment_id, *args, **kwargs)``: a part of the run's report that is MLflow's
        own work (dataset inputs, the pyfunc model). ``function`` is a module-level function (pickled by reference).
        A failure is ``PartFailed``: pictures are worth less than the run."""
        try:
            return function(self.client, self.run_id, self.experiment_id, *args, **(kwargs or {}))
        except Exception as e:
            raise PartFailed(getattr(function, "__name__", str(function)), f"{type(e).__name__}: {e}") from None

    def paint(self, function: Callable, kwargs: Mapping | None = None) -> None:
        """``function(**kwargs)`` draws pictures and returns (files, failure) (runner.tracking.painter.Drawn); its files
        are logged. The painter (started once the first painting is drawn here, where the writer may paint: the
        sidecar) takes it: forked workers always (they share one queue), a single spawned one when it is idle, and it is
        drawn here otherwise; what the painter drew is logged at the next barrier. A failure is ``PartFailed``."""
        name, kwargs = getattr(function, "__name__", str(function)), dict(kwargs or {})
        if self._painter is not None and (self._painter.workers > 1 or self._painter.idle()):
            try:
                self._paintings.append((name, self._painter.submit(function, **kwargs)))
                return
            except Exception as e:  # a broken painter: this process draws from now on
                log.debug("the painter is gone (%s: %s): drawing here", type(e).__name__, e)
                self._painter, self._may_paint = None, False
        try:
            drawn = function(**kwargs)
        except Exception as e:
            raise PartFailed(name, f"{type(e).__name__}: {e}") from None
        finally:
            if self._may_paint and self._painter is None:  # after the first painting (the warm-up): see painter.start
                from runner.tracking import painter

                self._painter = painter.start(first=(function, kwargs))
                self._may_paint = self._painter is not None
        self._log_drawn(name, drawn)

    def early(self, seq: int, op: str, args: tuple = (), kwargs: Mapping | None = None) -> None:
        """A request as it is read (the sidecar's reader thread), before its turn: a painting is handed to the painters
        now (their queue is shared, runner.tracking.painter), while this process carries out the writes before it (the
        last metrics, the pyfunc model). Its turn (``apply``) only takes note of it. Pictures depend on nothing written
        before them: plain data in, files out; their files are still logged in order, at the next barrier."""
        if op != "paint" or not args or self.failure is not None or self._painter is None or self._painter.workers < 2:
            return
        function, given = args[0], dict(args[1] if len(args) > 1 else {})
        try:
            self._early[seq] = (getattr(function, "__name__", str(function)), self._painter.submit(function, **given))
        except Exception as e:  # a broken painter: the painting is drawn in its turn, as it would have been
            log.debug("the painter is gone (%s: %s): drawing in turn", type(e).__name__, e)

    def _log_drawn(self, name: str, drawn) -> None:
        files, failure = drawn
        try:
            for path, folder in files:
                self.client.log_artifact(self.run_id, str(path), folder)
        except Exception as e:
            failure = "; ".join(filter(None, [failure, f"{type(e).__name__}: {e}"]))
        if failure:
            raise PartFailed(name, failure)

    def _collect(self) -> None:
        """Wait for what was sent to the painter, log it; the paintings that failed are one ``PartFailed``."""
        failed: list[PartFailed] = []
        while self._paintings:
            name, future = self._paintings.pop(0)
            try:
                drawn = future.result()
            except Exception as e:
                failed.append(PartFailed(name, f"{type(e).__name__}: {e}"))
                continue
            try:
                self._log_drawn(name, drawn)
            except PartFailed as e:
                failed.append(e)
        if failed:
            raise PartFailed(", ".join(e.name for e in failed), "; ".join(e.reason for e in failed))

    def barrier(self) -> None:
        """Its answer says every earlier request has been carried out (what the painter drew logged first)."""
        self._collect()


def prepare(where: Target, background: bool = True) -> Future:
    """A ``Writer`` with ``where``'s store and experiment open (created when missing, stale runs marked KILLED), as a
    future. In the background by default: ``import mlflow`` and a fresh SQLite store's schema take 1-2 s, overlapped
    with loading the data. The thread is not a daemon: a store being created is never cut off by the process exiting."""
    future: Future = Future()

    def fill() -> None:
        try:
            writer = Writer()
            writer.open(where.uri, where.experiment, where.artifact_location)
            future.set_result(writer)
        except BaseException as e:  # handed to whoever waits for the store
            future.set_exception(e)

    if background:
        threading.Thread(target=fill, name="runner-open-store").start()
    else:
        fill()
    return future
