"""Where runs are recorded, and the small facts about a store that every side needs (no MLflow write here).

The default store is embedded: ``sqlite:///<cwd>/outputs/mlflow.db`` with artifacts in
``<cwd>/outputs/mlartifacts``, absolute so that jobs started elsewhere share it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.api import RunnerError

log = logging.getLogger("runner.tracking")

#: MLflow takes at most this many metrics / params per ``log_batch`` call.
BATCH_METRICS, BATCH_PARAMS = 1000, 100
#: MLflow's limits on a param's and a tag's value.
PARAM_CHARS, TAG_CHARS = 6000, 5000


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


def retrying(call: Callable[[], Any], what: str, attempts: int = 10) -> Any:
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
    whose checkpoint names its own URI), a SQLite store is made safe to open (runner.tracking.sqlite_store).
    For reading; every write goes through ``runner.tracking.writer.Writer``."""
    check_reachable(uri)
    bound_http_retries()
    from mlflow.tracking import MlflowClient  # heavy (~1.3 s): imported only once a run is about to start

    from runner.tracking import sqlite_store

    sqlite_store.ensure(uri)
    return MlflowClient(tracking_uri=uri)


def process_tags() -> dict[str, str]:
    """Which process owns a run: lets a later start tell a run whose process died (SIGKILL) from a live one."""
    return {"runner.host": socket.gethostname(), "runner.pid": str(os.getpid())}


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
            pass
        check_credentials(uri, timeout)
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


def check_credentials(uri: str, timeout: float) -> None:
    """A server behind basic auth (``mlflow server --app-name basic-auth``) answers /health to anyone: ask it something
    with the user's credentials, so that wrong or missing ones are one line before anything starts, not a 401
    traceback after training."""
    import base64
    import urllib.error
    import urllib.request

    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    if user is not None and password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as e:
        if e.code != 401:
            raise
    if user is None and not os.environ.get("MLFLOW_TRACKING_TOKEN"):
        raise RunnerError(
            f"tracking: the MLflow server {uri} asks who you are (401 Unauthorized); set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    who = f"user {user!r} (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD)" if user else "MLFLOW_TRACKING_TOKEN"
    raise RunnerError(f"tracking: the MLflow server {uri} refused the credentials of {who}: 401 Unauthorized; check them")
