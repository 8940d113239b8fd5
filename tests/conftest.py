"""Shared fixtures: real subprocess runs of ``python -m runner`` against a real MLflow SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

#: ``pytester`` runs pytest on a test module written on the fly (tests/test_contracts.py)
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
#: The developer's own plugin switches never leak into the tests' runs (docs/plugins.md)
PLUGIN_SWITCHES = ("RUNNER_DISABLE_PLUGINS", "RUNNER_ALLOW_PLUGINS", "RUNNER_STRICT_PLUGINS")


@dataclass
class Run:
    """A finished ``python -m runner`` process and the store it wrote."""

    proc: subprocess.CompletedProcess
    cwd: Path

    @property
    def store(self) -> str:
        return f"sqlite:///{self.cwd / 'outputs' / 'mlflow.db'}"

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.store)

    def runs(self, experiment: str):
        client = self.client()
        found = client.get_experiment_by_name(experiment)
        return client.search_runs([found.experiment_id]) if found else []

    def only_run(self, experiment: str):
        runs = self.runs(experiment)
        assert len(runs) == 1, (len(runs), self.proc.stdout[-3000:], self.proc.stderr[-3000:])
        return runs[0]


@pytest.fixture(scope="session", autouse=True)
def decoded_cache(tmp_path_factory) -> Path:
    """The user cache of decoded datasets (plugins/datasets/decoded.py), for data folders that take no cache
    beside them (../shared/data is read-only): a folder of this session, inherited by ``run_cli``'s processes,
    never the developer's ~/.cache."""
    folder = tmp_path_factory.mktemp("decoded-cache")
    os.environ["RUNNER_CACHE_DIR"] = str(folder)
    return folder


def run_cli(cwd: Path, *args: str, env: dict | None = None, timeout: float = 300) -> Run:
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", *PLUGIN_SWITCHES)}
    full_env.update({"RUNNER_DATA_DIR": str(SHARED_DATA), **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return Run(proc, cwd)


@pytest.fixture
def runner_cli(tmp_path):
    """``runner_cli("+experiment=iris", ...)`` runs the CLI in a fresh directory and returns a Run."""
    return lambda *args, **kw: run_cli(tmp_path, *args, **kw)


# --------------------------------------------------------------------------- plugin distributions, pip-installed


@pytest.fixture(scope="session")
def example_site(tmp_path_factory) -> Path:
    """examples/runner-plugin-example, built and installed by pip into a fresh directory
    (put it on PYTHONPATH to use it; the test environment itself is left as it is)."""
    from pip_installs import EXAMPLE, pip_install

    return pip_install(EXAMPLE, tmp_path_factory.mktemp("example-site"))


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory) -> Path:
    """runner-broken-plugin, pip-installed: one entry point raises on import, one in its hook, one works."""
    from pip_installs import broken_distribution, pip_install

    return pip_install(broken_distribution(tmp_path_factory.mktemp("broken-src")), tmp_path_factory.mktemp("broken-site"))


@pytest.fixture(scope="session")
def duplicate_site(tmp_path_factory) -> Path:
    """runner-duplicate-prelu, pip-installed: a second layer named 'prelu'."""
    from pip_installs import duplicate_distribution, pip_install

    return pip_install(
        duplicate_distribution(tmp_path_factory.mktemp("duplicate-src")), tmp_path_factory.mktemp("duplicate-site")
    )


# --------------------------------------------------------------------------- servers on 127.0.0.1 (tests/servers.py)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL cluster for the session's tests (each test takes a database of its own)."""
    from servers import Postgres

    server = Postgres().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def pg_tracking_server(postgres, tmp_path_factory):
    """A real ``mlflow server`` whose store is a PostgreSQL database, artifacts served from a folder; the tests that
    share it record under experiments of their own."""
    from servers import mlflow_server

    artifacts = tmp_path_factory.mktemp("pg-server") / "artifacts"
    artifacts.mkdir()
    with mlflow_server(postgres.create_database("mlflow"), artifacts) as url:
        yield url
