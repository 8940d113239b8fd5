"""MLflow tracking of one run, through MlflowClient (no global active run), metrics buffered.

The default store is embedded: ``sqlite:///<cwd>/outputs/mlflow.db`` with artifacts in
``<cwd>/outputs/mlartifacts``, absolute so that jobs started elsewhere share it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.api import RunnerError

log = logging.getLogger("runner.tracking")

#: MLflow takes at most this many metrics / params per ``log_batch`` call.
_BATCH_METRICS, _BATCH_PARAMS = 1000, 100


def default_store(outputs: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the embedded store under ``outputs``."""
    outputs = outputs.resolve()
    return f"sqlite:///{outputs / 'mlflow.db'}", (outputs / "mlartifacts").as_uri()


@dataclass(frozen=True)
class Target:
    """Where runs are recorded: the store, the artifact location of new experiments, the experiment."""

    uri: str
    artifact_location: str | None
    experiment: str


def target(tracking: Mapping[str, Any], experiment_choice: str | None, cwd: Path) -> Target:
    """From the ``tracking`` config section and the ``+experiment`` choice (None without one)."""
    experiment = tracking.get("experiment") or experiment_choice or "default"
    if tracking.get("uri"):
        return Target(str(tracking["uri"]), None, str(experiment))
    uri, artifacts = default_store(cwd / str(tracking.get("outputs") or "outputs"))
    return Target(uri, artifacts, str(experiment))


def _retrying(call: Callable[[], Any], what: str, attempts: int = 10) -> Any:
    """``call()``, retried while the SQLite store is locked by another process ("database is locked": SQLite
    gives up at once when waiting could deadlock, or after MLflow's 20 s busy timeout): back-off doubling from
    0.05 s up to 2 s a wait, jittered so that writers that met do not meet again, ~10 s in all; then raised."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as e:
            if "locked" not in str(e).lower() or attempt == attempts - 1:
                raise
            log.warning("%s: store busy (%s), retrying", what, str(e).splitlines()[0][:200])
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"hidden": [50]}}`` -> ``{"model.hidden": "[50]"}`` (lists stay one value)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


class Tracker:
    """One MLflow run: params, tags, buffered metrics, artifacts, and an honest end status."""

    def __init__(self, client, run_id: str, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri
        #: (reason, folder) when the artifact store refused a write (runner.app stops at the next checkpoint)
        self.artifact_failure: tuple[str, str] | None = None
        self._buffer: list = []
        self._last_flush = time.monotonic()

    @classmethod
    def start(
        cls,
        where: Target,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        prepared: Future | None = None,
        start_time: int | None = None,
    ) -> Tracker:
        """A new run in ``where`` (the experiment, and a fresh store, are created when missing);
        ``prepared``: a ``prepare(where)`` begun earlier, whose store and experiment it uses; ``start_time``:
        the run's start in ms since the epoch (runner.clock), None for now."""
        client, experiment_id = (prepared or prepare(where, background=False)).result()
        try:
            tags = {**process_tags(), **(tags or {})}
            run = _retrying(
                lambda: client.create_run(
                    experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}, start_time=start_time
                ),
                "create run",
            )
        except Exception as e:  # an unreachable server or an unusable store: say which
            raise RunnerError(f"tracking: cannot open the MLflow store {where.uri!r}: {type(e).__name__}: {e}") from None
        return cls(client, run.info.run_id, where.uri)

    def reopen(self) -> None:
        """Mark a run that ended (e.g. KILLED by an interrupt) RUNNING again, to continue it."""
        _retrying(lambda: self.client.update_run(self.run_id, status="RUNNING"), "reopen run")
        previous = self.client.get_run(self.run_id).data.tags.get("runner.error")
        self.set_tags({**process_tags(), **({"runner.interrupted": previous} if previous else {})})
        if previous:
            self.client.delete_tag(self.run_id, "runner.error")

    @classmethod
    def attach(cls, uri: str, run_id: str) -> Tracker:
        """An existing run, e.g. a sweep's parent run, reopened in another process."""
        return cls(open_client(uri), run_id, uri)

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH_PARAMS):
            _retrying(lambda: self.client.log_batch(self.run_id, params=items[i : i + _BATCH_PARAMS]), "log params")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        _retrying(lambda: self.client.log_batch(self.run_id, tags=items), "set tags")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffered: written in batches, at most a few seconds late."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if len(self._buffer) >= _BATCH_METRICS or time.monotonic() - self._last_flush > 5.0:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buffer), _BATCH_METRICS):
            _retrying(lambda: self.client.log_batch(self.run_id, metrics=self._buffer[i : i + _BATCH_METRICS]), "log metrics")
        self._buffer.clear()
        self._last_flush = time.monotonic()

    def check(self) -> None:
        """Nothing: this tracker's failures are raised where they happen (see RemoteTracker.check)."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with self._artifacts():
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path)
            else:
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    @contextlib.contextmanager
    def _artifacts(self):
        """A write the artifact store refuses is kept in ``artifact_failure``, not raised: the metrics still go on."""
        from runner.tracking.sidecar import refused

        try:
            yield
        except OSError as e:
            if not refused(e):
                raise
            self.artifact_failure = self.artifact_failure or refused(e)

    def release(self, path: Path) -> None:
        """Nothing: ``log_artifact`` has copied the file when it returns (see RemoteTracker.release)."""

    def end(self, status: str, tags: Mapping[str, Any] | None = None) -> None:
        """Flush what is buffered, then mark the run FINISHED, FAILED or KILLED with ``tags`` (``runner.error``),
        each step tried even when the one before failed."""
        try:
            self.flush()
        finally:
            try:
                if tags:
                    self.set_tags(tags)
            finally:
                _retrying(lambda: self.client.set_terminated(self.run_id, status), "end run")

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._artifacts():
            self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        with self._artifacts():
            self.client.log_dict(self.run_id, obj, artifact_file)

    def latest_metrics(self) -> dict[str, float]:
        self.flush()
        return dict(self.client.get_run(self.run_id).data.metrics)

    def history(self, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
        """metric key -> [(step, value), ...] for the keys the run has."""
        logged = self.latest_metrics()
        return {
            key: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)] for key in keys if key in logged
        }

    def submit(self, function: str, *args, **kwargs) -> None:
        """``call`` for a part of the run story, its result dropped (not waited for in a ``RemoteTracker``);
        a failure is raised to the story, which warns and tags ``runner.report.failed``."""
        self.call(function, *args, **kwargs)

    def call(self, function: str, *args, **kwargs) -> Any:
        """``module:function(client, run_id, experiment_id, *args, **kwargs)`` (in the sidecar for a ``RemoteTracker``)."""
        import importlib

        module, name = function.split(":")
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return getattr(importlib.import_module(module), name)(self.client, self.run_id, experiment_id, *args, **kwargs)

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.uri}"


def prepare(where: Target, background: bool = True) -> Future:
    """Open ``where``'s store and experiment (creating them when missing, marking stale runs KILLED):
    ``(client, experiment_id)`` as a future. In the background by default: ``import mlflow`` and a
    fresh SQLite store's schema take 1-2 s, overlapped with loading the data. The thread is not a
    daemon: a store being created is never cut off by the process exiting."""

    def open_store():
        client = open_client(where.uri)  # a server must answer; a SQLite store is created or repaired by one process at a time
        try:
            experiment_id = experiment_of(client, where)
        except Exception as e:  # an unreachable server or an unusable store: say which
            raise RunnerError(f"tracking: cannot open the MLflow store {where.uri!r}: {type(e).__name__}: {e}") from None
        try:
            reap_stale_runs(client)
        except Exception as e:  # housekeeping: the run itself can still be recorded
            log.warning("tracking: could not look for runs left RUNNING by dead processes: %s: %s", type(e).__name__, e)
        return client, experiment_id

    future: Future = Future()

    def fill() -> None:
        try:
            future.set_result(open_store())
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
        found = _retrying(lambda: client.get_experiment_by_name(where.experiment), "find experiment")
        if found:
            return found.experiment_id
        try:
            return _retrying(
                lambda: client.create_experiment(where.experiment, artifact_location=where.artifact_location), "create experiment"
            )
        except Exception as e:
            if getattr(e, "error_code", None) != "RESOURCE_ALREADY_EXISTS" or attempt == 4:
                raise
            log.debug("experiment %r created by another process meanwhile", where.experiment)
            time.sleep(0.05 * random.random())
    raise AssertionError("unreachable")


#: MLflow's HTTP client retries a server's 5xx answers 7 times with a doubling back-off, each request waiting up to
#: 120 s: ~250 s of silence per request (measured: a server answering 503 hung a run past its training, its
#: sidecar left behind). Bounded here, unless the user set them: 2 retries, a request that keeps failing fails in ~3 s.
HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}


def bound_http_retries() -> None:
    """MLflow reads these at each request; set in the run's process before the sidecar starts, they reach it too."""
    for key, value in HTTP_RETRIES.items():
        os.environ.setdefault(key, value)


def open_client(uri: str):
    """An MlflowClient of ``uri``: a tracking server must answer first (every path: a new run, a sweep, a resume,
    whose checkpoint names its own URI), a SQLite store is made safe to open (runner.sqlite_store)."""
    check_reachable(uri)
    bound_http_retries()
    from mlflow.tracking import MlflowClient  # heavy (~1.3 s): imported only once a run is about to start

    from runner.tracking import sqlite_store

    sqlite_store.ensure(uri)
    return MlflowClient(tracking_uri=uri)


def process_tags() -> dict[str, str]:
    """Which process owns a run: lets a later start tell a run whose process died (SIGKILL) from a live one."""
    return {"runner.host": socket.gethostname(), "runner.pid": str(os.getpid())}


def reap_stale_runs(client) -> None:
    """Mark KILLED the RUNNING runs of this host whose process no longer exists (killed hard, e.g. SIGKILL),
    in every experiment of the store: one search, filtered by status and the host tag."""
    from mlflow.entities import ViewType

    host = socket.gethostname()
    experiment_ids, token = [], None
    while True:  # pages of 1000
        page = _retrying(
            lambda: client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token),
            "list experiments",
        )
        experiment_ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    if not experiment_ids:
        return
    stale = _retrying(
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
                _retrying(lambda: client.set_tag(run.info.run_id, "runner.error", reason), "mark stale run")
                _retrying(lambda: client.set_terminated(run.info.run_id, "KILLED"), "mark stale run")
            except Exception as e:  # e.g. deleted meanwhile: the others are still looked at
                log.warning(
                    "run %s was left RUNNING by process %d, which is gone; marking it KILLED failed: %s", run.info.run_id, pid, e
                )
                continue
            log.warning("run %s was left RUNNING by process %d, which is gone: marked KILLED", run.info.run_id, pid)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """A tracking server must answer at once: MLflow's own client would retry for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError as e:
        if e.code < 500:
            return  # it answered: a server without /health (or behind auth) is reachable
        raise RunnerError(
            f"tracking: the MLflow server {uri} answers {e.code} {e.reason} (it, or a proxy before it, is down "
            "or overloaded); try again when it answers, or unset MLFLOW_TRACKING_URI to record in the local "
            "store"
        ) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise RunnerError(
            f"tracking: the MLflow server {uri} does not answer ({reason}); start it, or unset MLFLOW_TRACKING_URI "
            "to record in the local store"
        ) from None
