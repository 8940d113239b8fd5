"""Checks before Hydra creates anything: the values a run cannot start with (``seed``, ``model.hidden``,
the tracking URI), the output folders are writable, the tracking server answers.

A Hydra callback (conf/config.yaml: ``hydra.callbacks.preflight``), so a mistake here is one clear
line and exit 1 instead of a traceback from deep inside Hydra, and nothing is half-created: the values
are checked before any folder is. A sweep's own values (``seed=0,-1``) reach only its jobs: ``runner.app``
checks them again there (``seed_of``, ``runner.model.hidden_widths``). ``on_job_start`` notes when a job
began (runner.clock: a sweep job's MLflow start time).
"""

from __future__ import annotations

import re
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.api import RunnerError, option
from runner.core.model import hidden_widths
from runner.run import clock
from runner.tracking.store import check_reachable

#: The schemes MLflow itself opens a tracking store for (its plugins add theirs: entry points ``mlflow.tracking_store``).
MLFLOW_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc", "uc", "sqlite", "postgresql", "mysql", "mssql")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


def seed_of(value: Any) -> int:
    """``seed`` as the non-negative integer NumPy's SeedSequence needs (digits from ``${oc.env:...}`` too)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return option("seed", value, int, lambda v: v >= 0, "a non-negative integer, e.g. seed=0")


def tracking_uri_key(config: DictConfig) -> str:
    """What the user set the tracking URI with: the environment (conf/config.yaml's default) or ``tracking.uri``."""
    tracking = OmegaConf.to_container(config.tracking, resolve=False)
    written = tracking.get("uri") if isinstance(tracking, dict) else None
    return "MLFLOW_TRACKING_URI" if isinstance(written, str) and "MLFLOW_TRACKING_URI" in written else "tracking.uri"


def check_tracking_uri(uri: str, key: str) -> None:
    """A URI MLflow can open a store at, and for SQLite an existing folder (MLflow would create any
    missing folders of a mistyped path, silently). ``key``: what the user set it with, named in the error."""
    written = f"{key}='{uri}'"
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if not scheme or (len(scheme) == 1 and scheme.isalpha()):
        return  # a local path: MLflow's file store (which says itself when it is refused)
    database = scheme.split("+", 1)[0]
    if scheme in MLFLOW_SCHEMES or (database in DATABASES and scheme.count("+") == 1):
        pass
    elif not _plugin_scheme(scheme):
        raise RunnerError(
            f"{written}: not a tracking URI MLflow can open (scheme '{scheme}:'; expected http://host:port, "
            f"sqlite:///path/to/mlflow.db, postgresql://..., mysql://..., mssql://..., file:, databricks or uc); "
            f"{'unset it' if key == 'MLFLOW_TRACKING_URI' else 'leave tracking.uri out'} to record in the local store"
        )
    if scheme in ("http", "https") and not urllib.parse.urlparse(uri).netloc:
        raise RunnerError(f"{written}: no server in the URI (expected {scheme}://host:port)")
    if database == "sqlite":
        if not uri.startswith("sqlite:///") and uri != "sqlite://":
            raise RunnerError(f"{written}: expected sqlite:///relative/path.db or sqlite:////absolute/path.db")
        path = re.sub(r"\?.*$", "", uri[len("sqlite:///") :])
        if path and path != ":memory:" and not path.startswith("file:"):
            folder = Path(path).expanduser().absolute().parent
            if not folder.is_dir():
                raise RunnerError(
                    f"{written}: the folder {folder} does not exist; create it (mkdir -p {folder}) or "
                    f"choose a store in an existing folder"
                )


def _plugin_scheme(scheme: str) -> bool:
    """A scheme an installed MLflow plugin provides a tracking store for."""
    from importlib.metadata import entry_points

    return any(ep.name == scheme for ep in entry_points(group="mlflow.tracking_store"))


def check_values(config: DictConfig) -> None:
    """The values no run can start with, named as the user wrote them."""
    seed_of(config.get("seed", 0))
    model = config.get("model")
    if isinstance(model, DictConfig) and model.get("type") == "mlp" and "hidden" in model:
        hidden_widths(model.hidden)
    if config.tracking.get("uri"):
        check_tracking_uri(str(config.tracking.uri), tracking_uri_key(config))


def writable(directory: Path, key: str) -> None:
    """``directory`` exists or can be created, and files can be written in it (it is created)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise RunnerError(f"{key}: cannot create or write {directory}: {e.strerror or e}") from None


class Preflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        clock.job_started()

    @staticmethod
    def _check(config: DictConfig, job_dir: Path, key: str) -> None:
        try:
            check_values(config)  # first: nothing is created for a run that cannot start
            writable(Path(str(config.tracking.outputs)).absolute(), "tracking.outputs")
            writable(job_dir.absolute().parent, key)
            if config.tracking.uri:
                check_reachable(str(config.tracking.uri))
        except RunnerError as e:  # Hydra only warns about a callback's exception: stop here instead
            print(f"runner: error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
