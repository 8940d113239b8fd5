"""A tracking server on a real PostgreSQL (issue 18): Debian's PostgreSQL started by the test in a temporary folder on
127.0.0.1 (tests/servers.py), a real ``mlflow server`` in front of it; a parallel grid recorded there, the database
going away mid-run, and the server's basic-auth mode."""

from __future__ import annotations

import os
import re
import sys
import time

import pandas as pd
import pytest
from conftest import ROOT, SHARED_DATA, run_cli
from servers import Postgres, mlflow_server
from test_faults import sidecars_in
from test_reliability import histories, start_with
from test_sweeps import GRID
from test_tracking import client_of
from test_tracking_spill import ARGS, disturb_at, reference  # noqa: F401  (a fixture: the undisturbed histories)

pytestmark = pytest.mark.slow


def rows(postgres: Postgres, database: str, query: str) -> list[tuple]:
    """Read the database itself: what the server wrote is in PostgreSQL, not anywhere else."""
    import psycopg

    with psycopg.connect(postgres.url(database)) as connection:
        return connection.execute(query).fetchall()


def test_a_parallel_grid_records_in_a_server_on_postgresql(runner_cli, postgres, pg_tracking_server):
    result = runner_cli(
        *GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracking.experiment=pg-joblib",
        env={"MLFLOW_TRACKING_URI": pg_tracking_server},
    )  # fmt: skip
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert not (result.cwd / "outputs" / "mlflow.db").exists()
    client = client_of(pg_tracking_server)
    runs = client.search_runs([client.get_experiment_by_name("pg-joblib").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("runner.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert all(0 < c.data.metrics["test/accuracy"] <= 1 and c.data.metrics["gradcheck/max_rel_error"] < 1e-5 for c in children)
    summary = pd.read_csv(client.download_artifacts(parent.info.run_id, "summary.csv", str(result.cwd)))
    assert sorted(summary["run_id"]) == sorted(c.info.run_id for c in children)
    assert "model.npz" in {a.path for a in client.list_artifacts(children[0].info.run_id)}
    # the rows are PostgreSQL's: 5 runs of the experiment, and every train/loss point of each child
    stored = dict(rows(postgres, "mlflow", "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e "
                                           "ON r.experiment_id = e.experiment_id WHERE e.name = 'pg-joblib'"))  # fmt: skip
    assert stored == {r.info.run_id: "FINISHED" for r in runs} and len(stored) == 5
    for child in children:
        query = f"SELECT count(*) FROM metrics WHERE run_uuid = '{child.info.run_id}' AND key = 'train/loss'"
        points = rows(postgres, "mlflow", query)
        assert points[0][0] == len(client.get_metric_history(child.info.run_id, "train/loss")) > 0


def test_the_database_going_away_mid_run_keeps_everything_and_resume_replays_it_exactly(tmp_path, reference):  # noqa: F811
    """PostgreSQL stopped under a running server (``pg_ctl stop -m fast``: connections cut, as when the database machine
    goes away): the server answers 500, the run ends as docs/reliability.md promises for a store gone mid-run (one line,
    what was not written in the spill file), and once the database is back ``+resume`` gives exactly the undisturbed
    histories."""
    postgres = Postgres().start()
    (tmp_path / "artifacts").mkdir()
    try:
        database = postgres.create_database("mlflow")
        with mlflow_server(database, tmp_path / "artifacts") as url:
            env = {"MLFLOW_TRACKING_URI": url}
            proc = start_with(tmp_path, env, *ARGS)
            output = disturb_at(proc, "epoch 100/200", lambda: postgres.stop("fast"))
            assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
            [line] = [line for line in output.splitlines() if line.startswith("runner: error: tracking:")]
            assert f"cannot record in the MLflow store '{url}'" in line
            kept = re.search(r"is kept in (\S+); once the store answers, continue the run with: (python -m runner .*)$", line)
            assert kept, line
            spill_file, resume_arg = kept.group(1), kept.group(2).split("+resume=")[1]
            assert os.path.getsize(spill_file) > 0
            deadline = time.time() + 30
            while sidecars_in(tmp_path) and time.time() < deadline:
                time.sleep(0.1)
            assert not sidecars_in(tmp_path)

            postgres.start()  # the database is back, as it was; the server reconnects (pool_pre_ping)
            client = client_of(url)
            [run] = client.search_runs([client.get_experiment_by_name("iris").experiment_id])
            assert run.info.status == "RUNNING"  # its end is in the spill file, not yet in the store
            resumed = run_cli(tmp_path, *ARGS, f"+resume={resume_arg}", env=env)
            assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
            assert not os.path.exists(spill_file)  # replayed, renamed *.replayed
            run = client.get_run(run.info.run_id)
            assert run.info.status == "FINISHED" and "runner.error" not in run.data.tags
            assert histories(client, run.info.run_id) == reference  # none lost, none twice
    finally:
        postgres.close()


AUTH_INI = """[mlflow]
default_permission = READ
database_uri = {database}
admin_username = admin
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


@pytest.fixture(scope="module")
def auth_server(postgres, tmp_path_factory):
    """``mlflow server --app-name basic-auth``: runs and users both in PostgreSQL (two databases)."""
    pytest.importorskip("flask_wtf", reason="pip install 'mlflow[auth]'")
    folder = tmp_path_factory.mktemp("auth-server")
    (folder / "artifacts").mkdir()
    password = "s3cret-" + os.urandom(4).hex()
    (folder / "auth.ini").write_text(AUTH_INI.format(database=postgres.create_database("mlflow_users"), password=password))
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex()}
    with mlflow_server(postgres.create_database("mlflow_auth"), folder / "artifacts", "--app-name", "basic-auth", env=env) as url:
        yield url, password


def test_basic_auth_right_credentials_record_wrong_ones_are_one_line_and_no_run(runner_cli, auth_server, monkeypatch):
    url, password = auth_server
    iris = ("+experiment=iris", "trainer.epochs=2")
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    good = runner_cli(*iris, env={"MLFLOW_TRACKING_URI": url, **admin})
    assert good.proc.returncode == 0, good.proc.stderr[-3000:]
    bad = runner_cli(*iris, env={"MLFLOW_TRACKING_URI": url, **admin, "MLFLOW_TRACKING_PASSWORD": "wrong"})
    output = bad.proc.stdout + bad.proc.stderr
    assert bad.proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    [line] = [line for line in output.splitlines() if line.startswith("runner: error:")]
    assert line == (
        f"runner: error: tracking: the MLflow server {url} refused the credentials of user 'admin' "
        "(MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD): 401 Unauthorized; check them"
    )
    assert "epoch" not in output  # said before training
    nobody = runner_cli(*iris, env={"MLFLOW_TRACKING_URI": url})
    assert nobody.proc.returncode == 1 and "Traceback" not in nobody.proc.stderr
    assert f"the MLflow server {url} asks who you are (401 Unauthorized); set MLFLOW_TRACKING_USERNAME" in nobody.proc.stderr

    for key, value in admin.items():
        monkeypatch.setenv(key, value)  # the test's own client reads the credentials from the environment
    client = client_of(url)
    [run] = client.search_runs([client.get_experiment_by_name("iris").experiment_id])  # one run: the good one's
    assert run.info.run_id in good.proc.stdout + good.proc.stderr
    assert run.info.status == "FINISHED" and run.data.metrics["test/accuracy"] > 0.5


def test_two_sweeps_share_one_optuna_study_on_postgresql_and_a_third_continues_it(tmp_path, postgres, pg_tracking_server):
    """Two machines' worth of workers: two sweep processes started at once on the same study name give distinct trials
    (numbers and points), none lost, one best; a third process, later, continues the study."""
    import optuna

    storage = postgres.create_database("optuna_shared")
    search = (
        "--multirun", "+experiment=iris", "trainer.epochs=3", "tracking.experiment=pg-optuna", "hydra/sweeper=runner_optuna",
        f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared", "hydra.sweeper.seed=0",
        "optimizer.lr=tag(log, interval(0.001, 0.5))", "model.hidden=choice([8],[16])",
    )  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "MLFLOW_TRACKING_URI": pg_tracking_server}
    machines = [tmp_path / "a", tmp_path / "b"]
    procs = [start_in(folder, env, *search, "hydra.sweeper.n_trials=2") for folder in machines]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(4))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 4  # the two sweeps drew different points

    later = start_in(tmp_path / "c", env, *search, "hydra.sweeper.n_trials=1")
    out, _ = later.communicate(timeout=300)
    assert later.returncode == 0 and "4 trials before this sweep" in out, out[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(5))
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 5

    client = client_of(pg_tracking_server)
    runs = client.search_runs([client.get_experiment_by_name("pg-optuna").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len([r for r in runs if r.data.tags.get("runner.sweep") == "parent"]) == 3 and len(children) == 5
    recorded = sorted(float(c.data.params["optimizer.lr"]) for c in children)
    assert recorded == pytest.approx(sorted(t.params["optimizer.lr"] for t in study.trials), rel=1e-12)
    best = max(c.data.metrics["val/accuracy"] for c in children)
    assert study.best_value == best and study.best_trial.value == best


def start_in(folder, env, *args):
    """``python -m runner`` started in ``folder`` (a machine of its own), output and errors together."""
    import subprocess
    import sys

    folder.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args], cwd=folder, env={**env, "RUNNER_DATA_DIR": str(SHARED_DATA)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_sixteen_runs_writing_at_once_lose_no_point(postgres, pg_tracking_server):
    """Load: 16 runs logging at once through runner's recorder (benchmarks/server_load.py, whose figures are in
    docs/benchmarks.md): every run FINISHED with every point of every key, once, within a bounded time."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.server_load import KEYS, load

    result = load(pg_tracking_server, "pg-load", writers=16, steps=1000, timeout=240)
    assert result["failed"] == [] and len(set(result["run_ids"])) == 16
    stored = rows(postgres, "mlflow", "SELECT r.run_uuid, r.status, m.key, count(*), count(DISTINCT m.step), max(m.step) "
                  "FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id JOIN metrics m ON m.run_uuid = r.run_uuid "
                  "WHERE e.name = 'pg-load' GROUP BY r.run_uuid, r.status, m.key")  # fmt: skip
    assert sorted(stored) == sorted((run, "FINISHED", key, 1000, 1000, 999) for run in result["run_ids"] for key in KEYS)
    assert result["points_per_s"] > 0 and result["points"] == 16 * 1000 * len(KEYS)
