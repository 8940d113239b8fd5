"""Sweeps as users run them: real Hydra multiruns in subprocesses, recorded in a real MLflow store."""

import math
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from conftest import SHARED_DATA, Run, run_cli

pytestmark = pytest.mark.slow  # whole sweeps of python -m runner --multirun

GRID = ("--multirun", "+experiment=iris", "trainer.epochs=2", "optimizer.lr=0.01,0.1", "model.hidden=[8],[16]")


def children_and_parent(result, experiment):
    runs = result.runs(experiment)
    parents = [r for r in runs if r.data.tags.get("runner.sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def assert_summarised_grid(result, experiment="iris", jobs=4):
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    parents, children = children_and_parent(result, experiment)
    assert len(parents) == 1 and len(children) == jobs
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" and "val/accuracy" in c.data.metrics for c in children)
    assert sorted(int(c.data.tags["runner.job.num"]) for c in children) == list(range(jobs))
    assert parent.data.params["sweep.2"] == "optimizer.lr=0.01,0.1"
    client = result.client()
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"summary.csv", "summary.md"}
    summary = pd.read_csv(client.download_artifacts(parent.info.run_id, "summary.csv", str(result.cwd)))
    assert len(summary) == jobs and set(summary["status"]) == {"FINISHED"}
    best = [c for c in children if c.data.tags.get("runner.best") == "true"]
    assert len(best) == 1
    assert parent.data.metrics["best/val/accuracy"] == max(c.data.metrics["val/accuracy"] for c in children)
    assert best[0].data.metrics["val/accuracy"] == parent.data.metrics["best/val/accuracy"]
    assert parent.data.tags["runner.best_run_id"] == best[0].info.run_id
    return parent, children


def test_grid_with_the_basic_launcher(runner_cli):
    parent, children = assert_summarised_grid(runner_cli(*GRID))
    names = sorted(c.info.run_name for c in children)
    assert names[0] == "iris-0 optimizer.lr=0.01 model.hidden=[8]"


def test_grid_with_joblib_two_at_a_time(runner_cli):
    result = runner_cli(*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    parent, children = assert_summarised_grid(result)
    assert parent.data.tags["runner.launcher"] == "joblib"
    assert all(c.data.tags["runner.blas_threads"].endswith(" 1") for c in children if os.cpu_count() == 2)


def test_eight_jobs_four_in_parallel_on_a_fresh_store_lose_nothing(runner_cli):
    result = runner_cli(
        "--multirun",
        "+experiment=iris_binary",
        "trainer.iterations=200",
        "seed=0,1,2,3,4,5,6,7",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
    )
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    _, children = children_and_parent(result, "iris_binary")
    assert len(children) == 8 and all(c.info.status == "FINISHED" for c in children)
    client = result.client()
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "train/loss")) == 20  # every 10 of 200 steps
        epochs = math.ceil(200 / 6)  # 34: about 20 evaluations -> every 2nd epoch, and the last
        assert len(client.get_metric_history(child.info.run_id, "epoch")) == epochs
        assert len(client.get_metric_history(child.info.run_id, "val/accuracy")) == len(set(range(2, epochs + 1, 2)) | {epochs})
        assert len(client.get_metric_history(child.info.run_id, "test/accuracy")) == 1


def test_a_failing_job_does_not_sink_the_sweep(runner_cli):
    result = runner_cli("--multirun", "+experiment=iris", "trainer.epochs=2", "optimizer.lr=0.1,1e30,-1")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert "job 1" in result.proc.stderr and "diverged" in result.proc.stderr
    parents, children = children_and_parent(result, "iris")
    status = {c.data.params.get("optimizer.lr", c.data.tags["runner.job.overrides"]): c.info.status for c in children}
    assert sorted(status.values()) == ["FAILED", "FAILED", "FINISHED"]
    by_job = {int(c.data.tags["runner.job.num"]): c for c in children}
    assert "diverged" in by_job[1].data.tags["runner.error"]
    assert "lr: expected a positive number, got -1" in by_job[2].data.tags["runner.error"]  # failed before its run
    summary = pd.read_csv(result.client().download_artifacts(parents[0].info.run_id, "summary.csv", str(result.cwd)))
    assert list(summary["status"]) == ["FINISHED", "FAILED", "FAILED"]
    assert parents[0].data.metrics["sweep/failed"] == 2
    assert by_job[0].data.tags["runner.best"] == "true"


def test_optuna_search_with_a_diverging_trial_goes_on_and_continues(runner_cli):
    args = (
        "--multirun",
        "+experiment=iris",
        "hparams_search=mnist_optuna",
        "trainer.epochs=5",
        "hydra.sweeper.n_trials=4",
        "optimizer.lr=choice(0.05,1e30)",
        "model.hidden=choice([8],[16])",
    )
    result = runner_cli(*args)
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    parents, children = children_and_parent(result, "iris")
    assert len(children) == 4
    statuses = {c.data.params["optimizer.lr"]: c.info.status for c in children}
    assert statuses.get("1e+30", statuses.get("1e30")) == "FAILED" and statuses["0.05"] == "FINISHED"
    best = [c for c in children if c.data.tags.get("runner.best") == "true"]
    assert len(best) == 1 and best[0].data.params["optimizer.lr"] == "0.05"
    import optuna

    study = optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{result.cwd / 'outputs' / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert len(states) == 4 and "FAIL" in states and "COMPLETE" in states
    again = run_cli(result.cwd, *args[:-3], "hydra.sweeper.n_trials=1", *args[-2:])  # the study goes on
    assert again.proc.returncode == 0, again.proc.stderr[-3000:]
    assert (
        len(optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{result.cwd / 'outputs' / 'optuna.db'}").trials) == 5
    )


def test_results_table_matches_the_store(runner_cli, tmp_path):
    result = runner_cli(*GRID)
    parent, children = assert_summarised_grid(result)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.results",
            "--sweep",
            parent.info.run_id,
            "--sort",
            "val/accuracy",
            "--csv",
            str(tmp_path / "t.csv"),
        ],
        cwd=result.cwd,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == 4 and set(table["run_id"]) == {c.info.run_id for c in children}
    assert {"optimizer.lr", "model.hidden"} <= set(table.columns) and "seed" not in table.columns  # only what varies
    assert list(table["val/accuracy"]) == sorted((c.data.metrics["val/accuracy"] for c in children), reverse=True)
    assert children[0].info.run_id in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "runner.results", "--sort", "nope"], cwd=result.cwd, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "--sort 'nope': no such column" in bad.stderr


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend and an artifact root, stopped after the test."""
    from servers import mlflow_server

    (tmp_path / "server-artifacts").mkdir()
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts") as url:
        yield url


def test_grid_with_joblib_against_a_tracking_server(runner_cli, mlflow_server):
    result = runner_cli(*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert not (result.cwd / "outputs" / "mlflow.db").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("iris").experiment_id])
    parents = [r for r in runs if r.data.tags.get("runner.sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    summary = pd.read_csv(client.download_artifacts(parents[0].info.run_id, "summary.csv", str(result.cwd)))
    assert len(summary) == 4
    assert "model.npz" in {a.path for a in client.list_artifacts(children[0].info.run_id)}


def test_grid_with_submitit_local_the_slurm_launcher_on_one_machine(runner_cli):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")
    result = runner_cli(
        "--multirun", "+experiment=iris", "trainer.epochs=2", "optimizer.lr=0.01,0.1", "hydra/launcher=submitit_local"
    )
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    parents, children = children_and_parent(result, "iris")
    assert len(parents) == 1 and sorted(c.data.params["optimizer.lr"] for c in children) == ["0.01", "0.1"]
    assert all(c.info.status == "FINISHED" for c in children)


def test_an_interrupted_sweep_resumes_skipping_finished_jobs(tmp_path):
    from test_reliability import start

    args = ["--multirun", "+experiment=mnist", "trainer.iterations=1100", "dataset.val_size=1000", "optimizer.lr=0.05,0.1,0.2"]
    proc = start(tmp_path, *args)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "#1 :" in line:  # job 0 finished, job 1 starts
            proc.send_signal(signal.SIGTERM)
            break
    seen.append(proc.stdout.read())
    assert proc.wait(timeout=120) == 143, "".join(seen)[-3000:]
    first = run_cli(tmp_path, "--multirun", "+experiment=iris", "trainer.epochs=1")  # any store reader
    parents, children = children_and_parent(first, "mnist")
    [parent] = parents
    assert parent.info.status == "FAILED" and "+resume_sweep=" in parent.data.tags["runner.error"]
    assert [c.data.tags["runner.job.num"] for c in children if c.info.status == "FINISHED"] == ["0"]
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)  # job 1 KILLED if its run had started

    resumed = run_cli(tmp_path, *args, f"+resume_sweep={parent.info.run_id}")
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    assert "job 0 already FINISHED" in resumed.proc.stdout
    parents, children = children_and_parent(resumed, "mnist")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = sorted(c.data.tags["runner.job.overrides"] for c in children if c.info.status == "FINISHED")
    assert finished == [
        f"+experiment=mnist trainer.iterations=1100 dataset.val_size=1000 optimizer.lr={lr}" for lr in ("0.05", "0.1", "0.2")
    ]
    summary = pd.read_csv(resumed.client().download_artifacts(parents[0].info.run_id, "summary.csv", str(resumed.cwd)))
    assert sorted(summary.loc[summary["status"] == "FINISHED", "job"]) == [0, 1, 2]
    assert list(summary["job"]) == [0, 1, 2] and parents[0].data.metrics["sweep/failed"] == 0  # each job once
    replaced = [c for c in children if "runner.superseded_by" in c.data.tags]  # job 1's first attempt, if it was not resumed
    assert all(
        c.data.tags["runner.superseded_by"] in {f.info.run_id for f in children if f.info.status == "FINISHED"} for c in replaced
    )


def test_a_sweep_interrupted_mid_job_resumes_that_job_into_its_run_and_counts_each_job_once(tmp_path):
    """SIGTERM to the sweep's process group while job 1 trains; then the command it prints. Job 1 used to re-run from
    scratch as a second child: 5 rows for 4 jobs, sweep/failed 1, "1 job(s) of the sweep failed"."""
    import shlex

    from test_reliability import histories, signal_in_training

    grid = [
        "+experiment=iris",
        "trainer.epochs=400",
        "trainer.log_every=1",
        "report.enabled=false",
        "threads=1",
        "optimizer.lr=0.01,0.1",
        "model.hidden=[8],[16]",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--multirun", *grid],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in proc.stdout:  # job 1 starts
        lines.append(line)
        if "#1 :" in line:
            break
    output = "".join(lines) + signal_in_training(
        proc,
        "epoch 220/400",
        [-proc.pid],
        signal.SIGTERM,
        tmp_path,
        checkpoints="outputs/sweeps/*/*/1/checkpoints/checkpoint.npz",
    )
    assert proc.returncode == 143, output[-3000:]
    interrupted = Run(None, tmp_path)
    [parent] = [r for r in interrupted.runs("iris") if r.data.tags.get("runner.sweep") == "parent"]
    parent_id = parent.info.run_id
    killed = {int(r.data.tags["runner.job.num"]): r for r in interrupted.runs("iris") if "mlflow.parentRunId" in r.data.tags}
    assert sorted(killed) == [0, 1] and killed[0].info.status == "FINISHED" and killed[1].info.status == "KILLED"
    # the job's message continues the sweep, not the job alone; the command works as printed
    [command] = [
        line.split("continue the sweep with: ", 1)[1].strip() for line in output.splitlines() if "continue the sweep with" in line
    ]
    assert command.startswith("python -m runner --multirun ") and command.endswith(f" +resume_sweep={parent_id}")
    assert "+resume=" not in output and " optimizer.lr=0.01,0.1 'model.hidden=[8],[16]' " in command
    assert f"continue it with: {command}" in output  # the sweep's own last word, and its parent's runner.error
    assert parent.info.status == "FAILED" and command in parent.data.tags["runner.error"]

    resumed = run_cli(tmp_path, *shlex.split(command)[3:])
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    out = resumed.proc.stdout + resumed.proc.stderr
    assert "job 0 already FINISHED" in out and f"job 1 was interrupted as run {killed[1].info.run_id}: resuming it" in out
    assert "failed" not in out.lower()
    parents, children = children_and_parent(resumed, "iris")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 4
    by_job = {int(c.data.tags["runner.job.num"]): c for c in children}
    assert sorted(by_job) == [0, 1, 2, 3] and all(c.info.status == "FINISHED" for c in children)
    assert by_job[1].info.run_id == killed[1].info.run_id  # the same child, continued from its checkpoint
    assert (
        int(by_job[1].data.tags["runner.resumed_after_step"]) >= 1320 and "SIGTERM" in by_job[1].data.tags["runner.interrupted"]
    )
    client = resumed.client()
    summary = pd.read_csv(client.download_artifacts(parent_id, "summary.csv", str(tmp_path)))
    assert list(summary["job"]) == [0, 1, 2, 3] and set(summary["status"]) == {"FINISHED"}
    assert parents[0].data.metrics["sweep/jobs"] == 4 and parents[0].data.metrics["sweep/failed"] == 0

    # job 1's histories are those of the same run never interrupted
    (tmp_path / "ref").mkdir()
    reference = run_cli(
        tmp_path / "ref",
        "+experiment=iris",
        "trainer.epochs=400",
        "trainer.log_every=1",
        "report.enabled=false",
        "threads=1",
        "optimizer.lr=0.01",
        "model.hidden=[16]",
    )
    assert reference.proc.returncode == 0, reference.proc.stderr[-2000:]
    assert histories(client, by_job[1].info.run_id) == histories(reference.client(), reference.only_run("iris").info.run_id)
