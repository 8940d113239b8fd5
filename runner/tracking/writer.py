"""The one writer of runs: ``Writer`` owns an MlflowClient and does every MLflow write runner makes.

A run's recorder (runner.tracking.recorder) sends it requests, ``(seq, op, args, kwargs)``: in the
run's own process (``InProcess``) or in the child process ``python -m runner.tracking.sidecar``
(``ChildProcess``), which calls this same class. ``Writer.apply`` carries one request out and
answers ``(seq, status, value)``:

- ``ok``: done, ``value`` its result;
- ``refused``: the artifact store refused a write (permissions, a full disk), ``value`` (reason,
  folder): metrics live elsewhere and are still written; the run decides when to stop;
- ``part failed``: a part of the run's report failed, ``value`` (name, reason): a warning;
- ``error``: a request the user's situation refuses (``reopen`` of a run still running), ``value`` the
  line to show; the store is fine;
- ``failed`` / ``unreachable``: the store failed (unreachable: it does not answer, so what was not
  written can be kept and written later, runner.tracking.spill); the writer then drops every later
  request (``dropped``) but the run's ``end``, which is still tried: a run must not stay RUNNING.

No module but this one writes to MLflow (runner.tracking.store.open_client gives read-only uses a client).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from functools import partial
from typing import Any

from runner.api import RunnerError
from runner.tracking.store import Target, alive, open_client, retrying

log = logging.getLogger("runner.tracking")

OK, REFUSED, PART_FAILED, ERROR, FAILED, UNREACHABLE, DROPPED = (
    "ok",
    "refused",
    "part failed",
    "error",
    "failed",
    "unreachable",
    "dropped",
)

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
        "barrier",
        "continue_after",
    }
)
#: writes to the artifact store, and the errors that mean the store refuses them (not a missing source file)
ARTIFACT_OPS = ("log_artifact", "log_dict", "log_text")
REFUSED_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
#: requests whose RunnerError is a line for the user, not the store failing
ANSWERS = ("reopen",)


class PartFailed(Exception):
    """A part of the run's report failed: a warning, the run goes on."""

    def __init__(self, name: str, reason: str):
        super().__init__(name, reason)
        self.name, self.reason = name, reason


class Writer:
    """The store, experiment and run the requests refer to, and every write to them."""

    def __init__(self) -> None:
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

    def end(self, status: str, tags: Mapping[str, str] | None = None) -> None:
        """The run's end, with its tags (``runner.error``): tried even after an earlier request failed."""
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

    def barrier(self) -> None:
        """Nothing: its answer says every earlier request has been carried out."""


def refused(e: BaseException) -> tuple[str, str] | None:
    """(the reason, the folder to fix) when ``e`` is the artifact store refusing a write; None otherwise. The folder:
    the outermost unwritable one around the refused path (``chmod -R a-w`` on the artifact root refuses the run's
    folder and the models' beside it: fixing only the deepest one would fail the next write)."""
    if not isinstance(e, OSError) or e.errno not in REFUSED_ERRNOS:
        return None
    folder = os.path.abspath(e.filename) if e.filename else ""
    while folder and not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # the deepest folder that exists
    while folder and os.path.dirname(folder) != folder and not os.access(os.path.dirname(folder), os.W_OK):
        folder = os.path.dirname(folder)
    return f"{type(e).__name__}: {e}", folder


#: what a store that does not answer (a server down, behind a failing proxy; a database file gone) says
UNREACHABLE_SIGNS = (
    "does not answer",
    "max retries exceeded",
    "connection refused",
    "connectionerror",
    "connection aborted",
    "remotedisconnected",
    "too many 50",
    "answers 50",
    "service unavailable",
    "bad gateway",
    "gateway timeout",
    "timed out",
    "unable to open database file",
    "disk i/o error",
    "name or service not known",
    "temporary failure in name resolution",
)


def unreachable(e: BaseException) -> bool:
    """Whether ``e`` says the store does not answer (so the same requests can be written once it does)."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(sign in text for sign in UNREACHABLE_SIGNS)


def failure_text(e: BaseException) -> str:
    """The reason a request failed, one line: runner's own errors (e.g. a half-created store and its fix) as they are."""
    if isinstance(e, RunnerError):
        return str(e).removeprefix("tracking: ")
    return f"{type(e).__name__}: {e}"


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


def experiment_of(client, where: Target) -> str:
    """The id of ``where.experiment``, created when missing: several processes may create it at once (the
    losers' unique-constraint error, RESOURCE_ALREADY_EXISTS, means it is there now: it is looked up again)."""
    for attempt in range(5):
        found = retrying(lambda: client.get_experiment_by_name(where.experiment), "find experiment")
        if found:
            return found.experiment_id
        try:
            return retrying(
                lambda: client.create_experiment(where.experiment, artifact_location=where.artifact_location), "create experiment"
            )
        except Exception as e:
            if getattr(e, "error_code", None) != "RESOURCE_ALREADY_EXISTS" or attempt == 4:
                raise
            log.debug("experiment %r created by another process meanwhile", where.experiment)
            time.sleep(0.05 * random.random())
    raise AssertionError("unreachable")


def reap_stale_runs(client) -> None:
    """Mark KILLED the RUNNING runs of this host whose process no longer exists (killed hard, e.g. SIGKILL),
    in every experiment of the store: one search, filtered by status and the host tag."""
    from mlflow.entities import ViewType

    host = socket.gethostname()
    experiment_ids, token = [], None
    while True:  # pages of 1000
        page = retrying(
            partial(client.search_experiments, view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token),
            "list experiments",
        )
        experiment_ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    if not experiment_ids:
        return
    stale = retrying(
        lambda: client.search_runs(
            experiment_ids,
            f"attributes.status = 'RUNNING' and tags.`runner.host` = '{host}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
        ),
        "find stale runs",
    )
    for run in stale:
        pid = int(run.data.tags.get("runner.pid", "0") or 0)
        if pid and not alive(pid):
            reason = f"process {pid} on {host} exited without ending the run (killed hard?)"
            try:
                retrying(partial(client.set_tag, run.info.run_id, "runner.error", reason), "mark stale run")
                retrying(partial(client.set_terminated, run.info.run_id, "KILLED"), "mark stale run")
            except Exception as e:  # e.g. deleted meanwhile: the others are still looked at
                log.warning(
                    "run %s was left RUNNING by process %d, which is gone; marking it KILLED failed: %s", run.info.run_id, pid, e
                )
                continue
            log.warning("run %s was left RUNNING by process %d, which is gone: marked KILLED", run.info.run_id, pid)


def points_after(client, run_id: str, step: int) -> dict[str, dict[int, float]]:
    """metric key -> {step: value} of the run's points after ``step``."""
    run = client.get_run(run_id)
    latest = getattr(run.data, "_metric_objs", None)  # each key's latest point, with its step
    keys = [m.key for m in latest if m.step > step] if latest is not None else list(run.data.metrics)
    found: dict[str, dict[int, float]] = {}
    for key in keys:
        points = {m.step: m.value for m in client.get_metric_history(run_id, key) if m.step > step}
        if points:
            found[key] = points
    return found


def truncate(client, run_id: str, step: int) -> bool:
    """Delete the run's metric points after ``step``, and set each key's latest value back to its
    last point left, in one transaction, where the store is MLflow's SQLAlchemy store (SQLite,
    PostgreSQL, MySQL). False where it is not (a tracking server: its API cannot delete a point)."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
    except (ImportError, AttributeError):
        return False
    if not isinstance(store, SqlAlchemyStore):
        return False

    def session():
        try:
            return store.ManagedSessionMaker(read_only=False)
        except TypeError:  # an MLflow whose sessions have no read_only flag
            return store.ManagedSessionMaker()

    def delete() -> None:
        with session() as s:
            ours: Any = SqlMetric.run_uuid == run_id
            keys = [k for (k,) in s.query(SqlMetric.key).filter(ours, SqlMetric.step > step).distinct()]
            s.query(SqlMetric).filter(ours, SqlMetric.step > step).delete(synchronize_session=False)
            for key in keys:
                s.query(SqlLatestMetric).filter(SqlLatestMetric.run_uuid == run_id, SqlLatestMetric.key == key).delete(
                    synchronize_session=False
                )
                last = (
                    s.query(SqlMetric)
                    .filter(ours, SqlMetric.key == key)
                    .order_by(SqlMetric.step.desc(), SqlMetric.timestamp.desc(), SqlMetric.value.desc())
                    .first()
                )
                if last is not None:  # MLflow's rule for the latest value: the highest (step, timestamp, value)
                    s.add(
                        SqlLatestMetric(
                            key=key,
                            value=last.value,
                            timestamp=last.timestamp,
                            step=last.step,
                            is_nan=last.is_nan,
                            run_uuid=run_id,
                        )
                    )

    retrying(delete, "delete metric points after the checkpoint")
    return True
