"""MLflow tracking of one run, through MlflowClient (no global active run), metrics buffered.

The default store is embedded: ``sqlite:///<cwd>/outputs/mlflow.db`` with artifacts in
``<cwd>/outputs/mlartifacts``, absolute so that jobs started elsewhere share it.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from runner.api import RunnerError

log = logging.getLogger("runner.tracking")

#: MLflow takes at most this many metrics / params per ``log_batch`` call.
_BATCH_METRICS, _BATCH_PARAMS = 1000, 100


def default_store(outputs: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the embedded store under ``outputs``."""
    outputs = outputs.resolve()
    return f"sqlite:///{outputs / 'mlflow.db'}", (outputs / "mlartifacts").as_uri()


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

    def __init__(self, uri: str, experiment: str, run_name: str, artifact_location: str | None = None):
        import mlflow  # heavy (~1.3 s): imported only once a run is about to start
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self._mlflow = mlflow
        try:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(experiment, artifact_location=artifact_location)
            self.run = self.client.create_run(experiment_id, run_name=run_name)
        except Exception as e:  # an unreachable server or an unusable store: say which
            raise RunnerError(f"tracking: cannot open the MLflow store {uri!r}: {type(e).__name__}: {e}") from None
        self.run_id = self.run.info.run_id
        self.experiment_id = experiment_id
        self._buffer: list = []
        self._last_flush = time.monotonic()

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH_PARAMS])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffered: written in batches, at most a few seconds late."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if len(self._buffer) >= _BATCH_METRICS or time.monotonic() - self._last_flush > 5.0:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buffer), _BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=self._buffer[i : i + _BATCH_METRICS])
        self._buffer.clear()
        self._last_flush = time.monotonic()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str) -> None:
        """Flush what is buffered, then mark the run FINISHED, FAILED or KILLED."""
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status)

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.uri}"
