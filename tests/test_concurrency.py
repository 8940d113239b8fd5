"""Runs started together on a fresh store, a half-created store, a run killed hard: real processes, a real
SQLite store read back with MlflowClient (docs/reliability.md, "Concurrency")."""

import os
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import PLUGIN_SWITCHES, SHARED_DATA, Run, run_cli

SMALL = ("+experiment=iris_binary", "trainer.iterations=60", "report.enabled=false")  # 10 epochs of 6 steps
KEYS = ("train/loss", "epoch", "val/accuracy", "test/accuracy")


def env():
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", *PLUGIN_SWITCHES)}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    return env


def start(cwd, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def said(result) -> str:
    return result.proc.stdout + result.proc.stderr


def histories(client, run_id):
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in KEYS}


@pytest.mark.parametrize(
    "processes, args, steps",
    [
        (2, ("+experiment=iris",), 300 * 6),  # the defaults: the sidecar, the whole run story; 300 epochs of 6 steps
        (4, (*SMALL, "tracking.sidecar=false"), 60),  # MLflow in the run's own process
        (8, SMALL, 60),
    ],
    ids=["2-default", "4-in-process", "8-sidecar"],
)
def test_runs_started_together_on_a_fresh_store_are_all_recorded(tmp_path, processes, args, steps):
    """MLflow's schema creation raced: 8 of 8 such runs failed, and the store was left broken for the next."""
    procs = [start(tmp_path, *args) for _ in range(processes)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    experiment = args[0].split("=")[1]
    if processes == 8:  # a 9th run on that store, alone, afterwards
        ninth = run_cli(tmp_path, *args)
        assert ninth.proc.returncode == 0, said(ninth)[-3000:]
    store = Run(None, tmp_path)  # MlflowClient opens it (a half-created store would not open)
    runs = store.runs(experiment)
    assert len(runs) == processes + (processes == 8) and all(r.info.status == "FINISHED" for r in runs)
    marks = ("runner.error", "runner.report.failed")
    flagged = {r.info.run_id: {k: r.data.tags[k] for k in marks if k in r.data.tags} for r in runs}
    assert not any(flagged.values()), (flagged, [output[-3000:] for output in outputs])
    client = store.client()
    expected = histories(client, runs[0].info.run_id)
    assert len(expected["train/loss"]) == steps // 10  # a point every 10 steps, as a lone run logs (test_sidecar.py)
    assert len(expected["test/accuracy"]) == 1 and expected["epoch"][-1][1] == steps // 6
    for run in runs[1:]:  # the same seed and config: every point, bitwise the same
        assert histories(client, run.info.run_id) == expected, run.info.run_id
    assert not list((tmp_path / "outputs").glob(".mlflow.db.creating-*"))


@pytest.fixture(scope="module")
def fresh_store(tmp_path_factory):
    """A complete store made by MLflow itself, with a run in experiment "kept", and one with nothing recorded."""
    from mlflow.tracking import MlflowClient

    stores = {}
    for name, holds_a_run in (("empty", False), ("kept", True)):
        db = tmp_path_factory.mktemp(name) / "mlflow.db"
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        if holds_a_run:
            client.create_run(client.create_experiment("kept"), run_name="kept")
        else:
            client.search_experiments()
        stores[name] = db.read_bytes()
    return stores


def stale_state(tmp_path, fresh_store, holds_a_run: bool, revision: str = "previous", leftover: str = "_alembic_tmp_metrics"):
    """A store as a process that died while migrating it leaves it: an older revision and/or a migration's temporary table."""
    from runner.tracking import sqlite_store

    db = tmp_path / "outputs" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(fresh_store["kept" if holds_a_run else "empty"])
    head, _, _ = sqlite_store.schema()
    with sqlite3.connect(db) as con:
        if revision == "previous":
            from alembic.script import ScriptDirectory
            from mlflow.store.db.utils import _get_alembic_config

            previous = ScriptDirectory.from_config(_get_alembic_config("")).get_revision(head).down_revision
            con.execute("update alembic_version set version_num = ?", (previous,))
        if leftover:
            con.execute(f"create table {leftover} as select * from {leftover.removeprefix('_alembic_tmp_')}")
    return db


def test_a_half_created_store_holding_nothing_is_created_anew(tmp_path, fresh_store):
    db = stale_state(tmp_path, fresh_store, holds_a_run=False)
    result = run_cli(tmp_path, *SMALL)
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert f"the MLflow store {db} was left half-created" in said(result) and "created anew" in said(result)
    assert result.only_run("iris_binary").info.status == "FINISHED"


def test_a_migration_leftover_beside_recorded_runs_is_dropped_and_the_runs_kept(tmp_path, fresh_store):
    db = stale_state(tmp_path, fresh_store, holds_a_run=True, revision="head", leftover="_alembic_tmp_tags")
    result = run_cli(tmp_path, *SMALL, "tracking.sidecar=false")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert f"dropped _alembic_tmp_tags from the MLflow store {db}" in said(result)
    assert result.only_run("iris_binary").info.status == "FINISHED" and len(result.runs("kept")) == 1
    with sqlite3.connect(db) as con:
        assert not con.execute("select name from sqlite_master where name like '_alembic_tmp_%'").fetchall()


def test_a_half_upgraded_store_holding_runs_is_one_clear_line_with_the_fix(tmp_path, fresh_store):
    db = stale_state(tmp_path, fresh_store, holds_a_run=True)
    result = run_cli(tmp_path, *SMALL)
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    [line] = [line for line in result.proc.stderr.splitlines() if line.startswith("runner: error:")]
    assert f"cannot open the store {db}" in line and "left half-created or half-upgraded by a process that died" in line
    assert f"mlflow db upgrade sqlite:///{db}" in line and "move it away to start a new store" in line
    with sqlite3.connect(db) as con:  # untouched: its run is still there
        assert con.execute("select count(*) from runs").fetchone() == (1,)


def test_a_run_killed_hard_is_marked_killed_by_the_next_run_of_another_experiment(tmp_path):
    proc = start(tmp_path, "+experiment=iris", "trainer.epochs=100000", "report.enabled=false", "checkpoint.enabled=false")
    for line in proc.stdout:
        if "epoch " in line:  # training, and the run asked for
            break
    proc.kill()
    proc.communicate(timeout=60)
    store = Run(None, tmp_path)
    deadline = time.time() + 60  # its sidecar still writes what it was sent, the run itself among it
    while not store.runs("iris") and time.time() < deadline:
        time.sleep(0.2)
    [killed] = store.runs("iris")
    assert killed.info.status == "RUNNING" and killed.data.tags["runner.pid"] == str(proc.pid)
    result = run_cli(tmp_path, *SMALL)  # another experiment
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    killed = result.client().get_run(killed.info.run_id)
    assert killed.info.status == "KILLED"
    assert (
        killed.data.tags["runner.error"]
        == f"process {proc.pid} on {killed.data.tags['runner.host']} exited without ending the run (killed hard?)"
    )
    assert result.only_run("iris_binary").info.status == "FINISHED"
