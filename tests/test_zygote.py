"""A sweep's sidecars forked from its warm zygote (runner.tracking.zygote): what they record is what a started sidecar
records, they run in the job's environment and folder, one killed is said and the run goes on, and nothing outlives
the sweep. Real processes: a real forkserver, real Hydra sweeps, a real SQLite store."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_configs import composed
from test_reliability import histories

from runner.sweeps.callback import sidecars_here

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the zygote is a forkserver: Linux only")

#: a short iris sweep of two jobs, every loss point logged, the sidecar's debug lines on
SWEEP = ["+experiment=iris", "trainer.epochs=20", "trainer.log_every=1", "threads=1", "hydra.verbose=[runner.tracking]"]


def processes_in(cwd: Path) -> list[str]:
    """The command lines of the live processes (zombies aside) whose working directory is ``cwd``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(cwd) and " Z " not in Path(f"/proc/{pid}/stat").read_text():
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return found


def test_a_basic_sweeps_jobs_fork_their_sidecars_and_record_what_a_single_run_records(tmp_path):
    single_dir, sweep_dir = tmp_path / "single", tmp_path / "sweep"
    single_dir.mkdir()
    sweep_dir.mkdir()
    single = run_cli(single_dir, "optimizer.lr=0.1", *SWEEP)
    sweep = run_cli(sweep_dir, "--multirun", "optimizer.lr=0.1,0.2", *SWEEP)
    assert single.proc.returncode == 0 and sweep.proc.returncode == 0, (single.proc.stderr[-2000:], sweep.proc.stderr[-2000:])
    forked = [line for line in sweep.proc.stdout.splitlines() if "forked from the zygote" in line]
    assert len(forked) == 2 and len({line.split("sidecar ")[1].split()[0] for line in forked}) == 2  # one per job
    assert "forked from the zygote" not in single.proc.stdout  # a single run starts its sidecar afresh

    alone = single.only_run("iris")
    [job] = [r for r in sweep.runs("iris") if "runner.job.num" in r.data.tags and r.data.params["optimizer.lr"] == "0.1"]
    assert job.info.status == "FINISHED" and not job.data.tags.get("runner.report.failed")
    assert histories(sweep.client(), job.info.run_id) == histories(single.client(), alone.info.run_id)  # every point
    listed = {
        run: sorted(a.path for folder in ("", "plots", "tables") for a in client.list_artifacts(run.info.run_id, folder or None))
        for run, client in ((job, sweep.client()), (alone, single.client()))
    }
    assert listed[job] == listed[alone] and len([p for p in listed[job] if p.startswith("plots/")]) >= 9
    assert job.data.tags["runner.model_id"] and job.data.params == alone.data.params
    deadline = time.time() + 20  # the zygote exits once the sweep's process and its sidecars have
    while processes_in(sweep_dir) and time.time() < deadline:
        time.sleep(0.2)
    assert not processes_in(sweep_dir)


def test_a_forked_sidecar_runs_in_the_jobs_environment_and_one_killed_is_said_and_the_run_goes_on(tmp_path):
    (tmp_path / "marks.py").write_text(
        textwrap.dedent(
            """
            import os

            def mark(client, run_id, experiment_id):  # a report part: it runs where the writer is
                client.set_tag(run_id, "mark", f"{os.environ.get('RUNNER_TEST_MARK')} in {os.getcwd()} pid {os.getpid()}")
            """
        )
    )
    script = textwrap.dedent(
        """
        import multiprocessing.forkserver, os, signal, sys, time
        sys.path.insert(0, os.getcwd())
        import marks
        from runner.tracking import zygote
        from runner.tracking.recorder import RunRecorder
        from runner.tracking.store import Target

        assert zygote.start()
        os.environ["RUNNER_TEST_MARK"] = "set after the zygote started"
        tracker = RunRecorder.child_process(Target(sys.argv[1], None, "zygote")).start_run("a run")
        sidecar = tracker._transport.pid
        parent = int(open(f"/proc/{sidecar}/stat").read().rsplit(")", 1)[1].split()[1])
        print("parent", parent, "zygote", multiprocessing.forkserver._forkserver._forkserver_pid, "me", os.getpid())
        tracker.submit(marks.mark)
        for step in range(100):
            tracker.log_metrics({"x": float(step)}, step)
        tracker.flush()
        tracker.in_store()
        print("mark before", sidecar)
        os.kill(sidecar, signal.SIGKILL)
        for step in range(100, 200):
            tracker.log_metrics({"x": float(step)}, step)
        tracker.flush()
        tracker.end("FINISHED")
        print("run", tracker.run_id)
        dead = multiprocessing.forkserver._forkserver._forkserver_pid
        os.kill(dead, signal.SIGKILL)  # the zygote gone: the next fork starts it again
        # dead to waitpid once it is a zombie with its threads (OpenBLAS's) gone; the next fork finds it so
        while open(f"/proc/{dead}/stat").read().rsplit(")", 1)[1].split()[0] != "Z" or len(os.listdir(f"/proc/{dead}/task")) > 1:
            time.sleep(0.01)
        again = RunRecorder.child_process(Target(sys.argv[1], None, "zygote")).start_run("another run")
        again.log_metrics({"x": 1.0}, 0)
        again.end("FINISHED")
        print("another", again.run_id, "zygote", multiprocessing.forkserver._forkserver._forkserver_pid)
        """
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RUNNER_TEST_MARK")}
    (tmp_path / "script.py").write_text(script)  # a file without a __main__ guard: never run again in the sidecar
    proc = subprocess.run([sys.executable, "script.py", uri], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("parent") == 1, proc.stdout
    words = proc.stdout.split()
    parent, zygote_pid, me = (int(words[words.index(k) + 1]) for k in ("parent", "zygote", "me"))
    assert parent == zygote_pid != me  # the sidecar is the zygote's child, not the process's
    assert "died (signal 9, SIGKILL)" in proc.stderr and "recording goes on in this process" in proc.stderr

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(words[words.index("run") + 1])
    assert run.info.status == "FINISHED"
    sidecar = words[words.index("before") + 1]
    assert run.data.tags["mark"] == f"set after the zygote started in {tmp_path} pid {sidecar}"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "x")] == list(range(200))  # none lost, none twice
    another = client.get_run(words[words.index("another") + 1])
    assert another.info.status == "FINISHED" and another.data.metrics["x"] == 1.0
    assert int(words[-1]) != zygote_pid  # a new zygote


@pytest.mark.parametrize(
    "overrides, forks",
    [
        ((), True),
        (("hydra/sweeper=runner_optuna",), True),
        (("hydra/launcher=joblib",), False),
        (("tracking.sidecar=false",), False),
    ],
    ids=["basic", "optuna-on-basic", "joblib", "no-sidecar"],
)
def test_only_jobs_run_in_the_sweeps_own_process_fork_their_sidecars(overrides, forks):
    assert sidecars_here(composed("+experiment=iris", *overrides, hydra=True)) is forks
