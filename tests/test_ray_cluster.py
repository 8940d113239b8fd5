"""Sweeps on a real Ray cluster (hydra/launcher=ray_cluster): a head and a second node on this machine, each job a Ray
task on either, every job recorded in a real tracking server as a child of the sweep's parent run."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pandas as pd
import pytest
from clusters import RayCluster, ray_cluster
from conftest import PLUGIN_SWITCHES, SHARED_DATA, run_cli

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="hydra/launcher=ray_cluster needs pip install 'runner[ray]'")
pytestmark = pytest.mark.slow  # a cluster, a tracking server and whole sweeps in subprocesses


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without the developer's tracking, Ray or plugin switches; the data folder; ``extra``."""
    dropped = ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "RAY_ADDRESS", *PLUGIN_SWITCHES)
    return {**{k: v for k, v in os.environ.items() if k not in dropped}, "RUNNER_DATA_DIR": str(SHARED_DATA), **extra}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[RayCluster]:
    """The cluster, started once for the module. Its environment is its jobs' (they run in its Ray workers): the data
    folder as each node would set it."""
    with ray_cluster(tmp_path_factory.mktemp("ray"), environment()) as started:
        yield started


@pytest.fixture(scope="module")
def tracking_uri(pg_tracking_server) -> str:
    """The tracking server every node records to: a real ``mlflow server`` on PostgreSQL (conftest)."""
    return pg_tracking_server


def on(cluster: RayCluster) -> list[str]:
    """The sweep's launcher: the preset, joining this cluster, one CPU per job."""
    return [
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={cluster.address}",
        "hydra.launcher.ray.remote.num_cpus=1",
    ]


def sweep_runs(uri: str, experiment: str):
    """(parents, children) of the experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("runner.sweep") == "parent"]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def summary(uri: str, parent_id: str) -> pd.DataFrame:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as into:
        return pd.read_csv(MlflowClient(uri).download_artifacts(parent_id, "summary.csv", into))


def test_a_grid_runs_on_both_nodes_as_children_of_one_parent(runner_cli, cluster, tracking_uri):
    lrs = ["0.01", "0.05", "0.1", "0.2"]
    grid = ["--multirun", "+experiment=iris", "trainer.epochs=2", "report.enabled=false", f"optimizer.lr={','.join(lrs)}"]
    result = runner_cli(*grid, *on(cluster), env={"MLFLOW_TRACKING_URI": tracking_uri})
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert not (result.cwd / "outputs" / "mlflow.db").exists()
    [parent], children = sweep_runs(tracking_uri, "iris")
    assert parent.info.status == "FINISHED" and parent.data.tags["runner.launcher"] == "ray_cluster"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["optimizer.lr"] for c in children) == lrs
    for child in children:
        assert child.info.status == "FINISHED" and {"val/accuracy", "test/accuracy"} <= set(child.data.metrics)
        assert child.data.tags["runner.ray.node_id"] == cluster.nodes[child.data.tags["runner.ray.node_ip"]]
        assert child.data.tags["runner.blas_threads"].endswith(" 1")  # num_cpus=1 (and iris is small: 1 anyway)
    placed = {c.data.tags["runner.ray.node_ip"] for c in children}
    assert placed == set(cluster.nodes), placed  # the head takes one job at a time: the others go to the second node
    table = summary(tracking_uri, parent.info.run_id)
    assert list(table["job"]) == [0, 1, 2, 3] and set(table["status"]) == {"FINISHED"}


#: blas_threads in Ray tasks given 1, 2 and 0.5 CPUs, and with threads=3: what a job on a 2-CPU node would use
THREADS = """
import json, sys, ray
from omegaconf import OmegaConf
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)

@ray.remote(max_retries=0)
def threads(value):
    from runner.run.compose import blas_threads
    return blas_threads(OmegaConf.create({"threads": value}), OmegaConf.create({"launcher": {}}))

asked = [(1, None), (2, None), (0.5, None), (1, 3)]
print(json.dumps(ray.get([threads.options(num_cpus=cpus).remote(value) for cpus, value in asked])))
"""


def test_blas_threads_follow_the_cpus_of_the_ray_task(cluster):
    assert cluster.cpus == {"127.0.0.2": 1, "127.0.0.3": 2}  # a task of 2 CPUs fits the second node only
    out = subprocess.run([sys.executable, "-c", THREADS, cluster.address], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == [1, 2, 1, 3]  # without Ray: the machine's cores for the first three


#: job 0 trains 5 epochs of 590 steps, a checkpoint at each end: killed after the first, it has ~4 s of training left;
#: job 1 trains one epoch
KILLED_SWEEP = ["--multirun", "+experiment=mnist", "dataset.val_size=1000", "report.enabled=false", "checkpoint.min_interval_s=0"]
KILLED_SWEEP += ["trainer.iterations=2950,590"]


def test_a_job_whose_worker_is_killed_ends_killed_and_the_sweep_continues_it(tmp_path, cluster, tracking_uri):
    env = environment(MLFLOW_TRACKING_URI=tracking_uri)
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", *KILLED_SWEEP, *on(cluster)], cwd=tmp_path, env=env, stdout=out, stderr=err
        )
    try:
        killed = kill_after_first_checkpoint(tracking_uri, job=0, proc=proc)
        assert proc.wait(timeout=180) == 1
    finally:
        proc.kill()
    stderr = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    parents, children = sweep_runs(tracking_uri, "mnist")
    [parent] = parents
    assert parent.info.status == "FAILED" and parent.data.tags["runner.error"].split("stopped before its end")[1] in last
    by_job = {int(c.data.tags["runner.job.num"]): c for c in children}
    assert by_job[0].info.run_id == killed and by_job[0].info.status == "KILLED"
    assert "its Ray worker died (WorkerCrashedError: The worker died unexpectedly" in by_job[0].data.tags["runner.error"]
    assert by_job[1].info.status == "FINISHED" and "val/accuracy" in by_job[1].data.metrics  # the other job's result kept
    assert list(summary(tracking_uri, parent.info.run_id)["status"]) == ["KILLED", "FINISHED"]
    assert last.startswith(f"runner: sweep {parent.info.run_id} stopped before its end (job 0 KILLED: its Ray worker died")
    command = last.split("continue it with: ", 1)[1]
    assert command.endswith(f" +resume_sweep={parent.info.run_id}")

    resumed = run_cli(tmp_path, *shlex.split(command)[3:], env={"MLFLOW_TRACKING_URI": tracking_uri})
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    parents, children = sweep_runs(tracking_uri, "mnist")
    assert [p.info.status for p in parents] == ["FINISHED"] and len(children) == 2
    by_job = {int(c.data.tags["runner.job.num"]): c for c in children}
    assert by_job[0].info.run_id == killed and by_job[0].info.status == "FINISHED"  # the same child, from its checkpoint
    assert int(by_job[0].data.tags["runner.resumed_after_step"]) >= 590 and "runner.error" not in by_job[0].data.tags
    assert list(summary(tracking_uri, parent.info.run_id)["status"]) == ["FINISHED", "FINISHED"]


def kill_after_first_checkpoint(uri: str, job: int, proc: subprocess.Popen, timeout: float = 120) -> str:
    """SIGKILL to the Ray worker running ``job`` (its run's ``runner.pid``) once the run has a checkpoint in the store,
    while it trains on; returns the run's id."""
    from mlflow.tracking import MlflowClient

    from runner.run.checkpoint import FILE
    from runner.run.resume import ARTIFACT_DIR

    client = MlflowClient(uri)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        experiment = client.get_experiment_by_name("mnist")
        runs = client.search_runs([experiment.experiment_id], f"tags.`runner.job.num` = '{job}'") if experiment else []
        for run in runs:
            if f"{ARTIFACT_DIR}/{FILE}" in {a.path for a in client.list_artifacts(run.info.run_id, ARTIFACT_DIR)}:
                assert client.get_run(run.info.run_id).info.status == "RUNNING", "the job ended before it could be killed"
                os.kill(int(run.data.tags["runner.pid"]), signal.SIGKILL)
                return run.info.run_id
        time.sleep(0.25)
    raise AssertionError(f"job {job} had no checkpoint in the store within {timeout} s")
