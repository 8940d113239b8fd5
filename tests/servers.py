"""Real servers on 127.0.0.1 for the tests: a PostgreSQL cluster in a temporary folder, an ``mlflow server`` in front of
a store. Both are started and stopped by the test that uses them; nothing listens beyond loopback.

PostgreSQL's ``initdb`` refuses to run as root: as root, its programs run as the ``postgres`` user Debian's package
creates (``runuser``), in a folder made for it under /tmp (pytest's own temporary folders are private to root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

#: Debian's postgresql package puts its server programs here, one folder per major version
PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A PostgreSQL cluster of its own: ``initdb`` into a temporary folder, served on 127.0.0.1:``port`` with a
    password (scram-sha-256) for the superuser ``runner``. ``durable=False`` turns fsync off: the tests' data need
    not survive a power loss, and it makes a fresh database several times faster."""

    user = "runner"

    def __init__(self, durable: bool = False):
        if not PG_BINS:
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = Path(PG_BINS[-1])
        self.root = Path(tempfile.mkdtemp(prefix="runner-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_hex(8)
        self.durable = durable
        self.as_postgres = os.geteuid() == 0  # initdb and the server refuse to run as root
        (self.root / "password").write_text(self.password + "\n")
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.root / "password", "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", self.user, "--pwfile", self.root / "password", "--auth", "scram-sha-256",
                  "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip

    def _run(self, program: str, *args) -> subprocess.CompletedProcess:
        command = [str(self.bin / program), *map(str, args)]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{program} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc

    def start(self) -> Postgres:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: connections are cut at once, as when the database machine goes away."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL (MLflow's and Optuna's storages take it as it is)."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:  # CREATE DATABASE: not in a transaction
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, *extra: str, env: dict | None = None, workers: int = 1):
    """A real ``mlflow server`` on 127.0.0.1 in front of ``backend_uri``, artifacts served from ``artifacts``;
    yields its URL once ``/health`` answers, and stops it (its whole process group) after."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts), *extra],
        cwd=artifacts.parent,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=open(artifacts.parent / f"mlflow-server-{port}.log", "w"),  # noqa: SIM115  (read when it does not start)
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, artifacts.parent / f"mlflow-server-{port}.log")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path | None = None, timeout: float = 90) -> None:
    """Until the server at ``url`` answers ``/health`` (its migrations done); a server that exits first, or not in
    ``timeout`` seconds, is an error with the end of its log."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError as e:
            if server.poll() is not None or time.time() > deadline:
                said = log.read_text()[-3000:] if log is not None and log.exists() else ""
                raise RuntimeError(f"mlflow server did not start:\n{said}") from e
            time.sleep(0.3)
