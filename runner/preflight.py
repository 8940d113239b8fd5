"""Checks before Hydra creates anything: the output folders are writable, the tracking server answers.

A Hydra callback (conf/config.yaml: ``hydra.callbacks.preflight``), so a mistake here is one clear
line and exit 1 instead of a traceback from deep inside Hydra, and nothing is half-created.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.api import RunnerError
from runner.tracking import check_reachable


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

    @staticmethod
    def _check(config: DictConfig, job_dir: Path, key: str) -> None:
        try:
            writable(Path(str(config.tracking.outputs)).absolute(), "tracking.outputs")
            writable(job_dir.absolute().parent, key)
            if config.tracking.uri:
                check_reachable(str(config.tracking.uri))
        except RunnerError as e:  # Hydra only warns about a callback's exception: stop here instead
            print(f"runner: error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
