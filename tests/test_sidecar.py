"""MLflow in a process of its own (runner.sidecar): the run's process never imports it, nothing is lost,
Ctrl-C to the whole terminal group is still recorded, a failing store is one clear line."""

import os
import re
import signal
import subprocess
import sys
import time

from conftest import PLUGIN_SWITCHES, SHARED_DATA, Run, run_cli


def env():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "PYTHONPROFILEIMPORTTIME", *PLUGIN_SWITCHES)
    }
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    return env


def test_the_run_process_never_imports_mlflow_and_everything_is_recorded(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "+experiment=iris"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "runner.run.task" in imported and "numpy" in imported  # -X importtime reports this process's imports
    assert not [m for m in imported if re.fullmatch(r"mlflow(\..*)?", m)], "the run's process imported mlflow"
    run = Run(proc, tmp_path).only_run("iris")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/accuracy"] >= 0.9 and run.data.metrics["gradcheck/max_rel_error"] < 1e-6
    assert run.data.params["optimizer.name"] == "sgd" and run.data.tags["runner.gradcheck"] == "passed"
    artifacts = {a.path for a in Run(proc, tmp_path).client().list_artifacts(run.info.run_id)}
    assert {"model.npz", "config.resolved.yaml", "plugins.json", "plots", "tables"} <= artifacts
    assert run.data.tags["runner.model_id"]  # the pyfunc model, logged by the sidecar
    steps = int(run.data.metrics["epoch"]) * 6  # 300 epochs of 6 batches (90 training samples, batch 15)
    assert len(Run(proc, tmp_path).client().get_metric_history(run.info.run_id, "train/loss")) == steps // 10  # every point


def test_the_in_process_client_still_records_everything(tmp_path):
    result = run_cli(tmp_path, "+experiment=iris", "tracking.sidecar=false")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("iris")
    assert run.info.status == "FINISHED" and run.data.metrics["test/accuracy"] >= 0.9
    assert run.data.tags["runner.model_id"] and "plots" in {a.path for a in result.client().list_artifacts(run.info.run_id)}


def test_ctrl_c_reaches_the_whole_group_and_the_run_is_still_recorded_killed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "+experiment=mnist", "trainer.iterations=2200", "threads=1"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # its own process group, as a terminal's foreground job
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "epoch 1/4" in line:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group, the sidecar too
            break
    seen.append(proc.stdout.read())
    assert proc.wait(timeout=120) == 130, "".join(seen)[-3000:]
    deadline = time.time() + 60
    while time.time() < deadline:  # the sidecar ignores SIGINT, writes what it was sent, then exits
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a process of the run's group is still alive a minute after it ended")
    run = Run(subprocess.CompletedProcess([], 130, "".join(seen), ""), tmp_path).only_run("mnist")
    assert run.info.status == "KILLED" and "SIGINT" in run.data.tags["runner.error"]
    assert "checkpoints/checkpoint.npz" in {
        a.path for a in Run(None, tmp_path).client().list_artifacts(run.info.run_id, "checkpoints")
    }


def test_a_store_the_sidecar_cannot_use_is_one_clear_line_and_stops_the_run(tmp_path):
    import sqlite3

    store = tmp_path / "other.db"  # a store of some other MLflow: a schema revision this one does not know
    with sqlite3.connect(store) as db:
        db.execute("create table alembic_version (version_num varchar(32) not null)")
        db.execute("insert into alembic_version values ('0123456789ab')")
        db.execute("create table experiments (experiment_id integer)")
    began = time.time()
    result = run_cli(tmp_path, "+experiment=mnist", "threads=1", f"tracking.uri=sqlite:///{store}")
    assert result.proc.returncode == 1, result.proc.stderr[-3000:]
    assert "Traceback" not in result.proc.stderr and "report:" not in result.proc.stderr  # no story half-logged
    assert f"tracking: cannot record in the MLflow store 'sqlite:///{store}'" in result.proc.stderr
    assert "Can't locate revision identified by '0123456789ab'" in result.proc.stderr
    assert "epoch 19/19" not in result.proc.stderr  # found out at an epoch's end, not after the whole run
    assert time.time() - began < 120


def test_arrays_sent_while_the_sidecar_still_imports_mlflow_are_logged(tmp_path):
    """A tiny run can reach its story (requests carrying NumPy arrays) before the sidecar's ``import
    mlflow`` is done: its reader thread then unpickles arrays while MLflow's import runs. Before the
    sidecar imported NumPy first, that broke the import once in CI (NumPy seen half-initialised); the
    race needs a slow import to show, so this checks the outcome: such requests are carried out."""
    import numpy as np

    from runner.report.inputs import _head, log_inputs
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    for attempt in range(3):  # the race needs the arrays to arrive during the import: try a few fresh sidecars
        tracker = RunRecorder.child_process(Target(uri, artifacts, "early")).start_run(f"early-{attempt}")
        x, y = np.arange(12, dtype=np.float32).reshape(4, 3), np.arange(4)
        tracker.submit(log_inputs, "toy", {"runner.dataset": "toy"}, [("train", _head(x), _head(y))])
        tracker.log_metrics({"m": 1.0}, 1)
        tracker.end("FINISHED")
    client = Run(None, tmp_path).client()
    runs = client.search_runs([client.get_experiment_by_name("early").experiment_id])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" and r.data.metrics["m"] == 1.0 for r in runs)
    assert all(len(r.inputs.dataset_inputs) == 1 and r.inputs.dataset_inputs[0].dataset.name == "toy" for r in runs)


def test_a_story_part_failing_in_the_sidecar_is_a_warning_and_the_run_still_ends(tmp_path, caplog):
    from runner.report.inputs import log_inputs
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RunRecorder.child_process(Target(uri, artifacts, "parts")).start_run("a run")
    tracker.log_metrics({"m": 2.0}, 1)
    tracker.submit(log_inputs, "toy", {}, "not a list of splits")  # raises ValueError in the sidecar
    tracker.set_tags({"after": "yes"})  # later writes still happen
    tracker.end("FINISHED")
    client = Run(None, tmp_path).client()
    [run] = client.search_runs([client.get_experiment_by_name("parts").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["m"] == 2.0
    assert run.data.tags["runner.report.failed"] == "log_inputs" and run.data.tags["after"] == "yes"
    assert "report: log_inputs failed: ValueError" in caplog.text  # said by the run's process


def test_a_sidecar_whose_run_process_stopped_reading_exits_quietly(tmp_path):
    """Its answers cannot be delivered (the run's process was killed hard: seen when a Ray test killed a job's worker).
    Was: a BrokenPipeError traceback on the terminal and exit 1 at its end, from the answer left in its buffer; and,
    once that was caught, its painter processes left waiting for work forever (holding the terminal's pipe)."""
    import pickle

    from test_zygote import processes_in

    from runner.report.artifacts import warm

    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.tracking.sidecar"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env(),
    )
    proc.stdout.close()  # nobody reads the answers any more
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for request in [(1, "open", (uri, "gone", None), {}), (2, "paint", (warm, {}), {}), (3, "barrier", (), {})]:
        pickle.dump(request, proc.stdin)
    proc.stdin.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err[-3000:]
    assert (tmp_path / "mlflow.db").is_file()  # what it was sent is still carried out
    deadline = time.time() + 10
    while processes_in(tmp_path) and time.time() < deadline:
        time.sleep(0.1)
    assert not processes_in(tmp_path)  # its painters are gone with it


def test_after_the_end_closing_does_not_wait_for_the_sidecar_to_exit(tmp_path):
    """Everything was carried out before ``end`` returned: the run's process lets the sidecar go and does not wait for
    its exit (about 30 ms of every run before), nor for its painters to be stopped (18 ms). Shown with the sidecar
    stopped (SIGSTOP) after the end: close returns at once; continued, the sidecar stops its painters and exits by
    itself, and the run stays FINISHED."""
    from runner.report.artifacts import warm
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RunRecorder.child_process(Target(uri, artifacts, "closing")).start_run("a run")
    tracker.log_metrics({"m": 3.0}, 1)
    tracker.paint(warm)  # the report's first painting: the sidecar forks its painters after it
    tracker.end("FINISHED")
    child = tracker._transport
    painters = [int(p) for p in open(f"/proc/{child.pid}/task/{child.pid}/children").read().split()]
    assert len(painters) == 2  # alive after the end: stopped at the end of input, off the run's path
    os.kill(child.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        tracker.close()
        assert time.monotonic() - began < 5  # waiting would block until the stopped sidecar exits (120 s at most)
    finally:
        os.kill(child.pid, signal.SIGCONT)
    child._proc.wait(timeout=60)  # its input closed, it exits by itself, its painters stopped first
    assert child._proc.returncode == 0
    for pid in painters:
        assert not os.path.exists(f"/proc/{pid}") or " Z " in open(f"/proc/{pid}/stat").read(), f"painter {pid} outlived it"
    client = Run(None, tmp_path).client()
    [run] = client.search_runs([client.get_experiment_by_name("closing").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["m"] == 3.0


def test_the_sidecar_and_its_painters_run_below_the_runs_priority(tmp_path):
    """Their work is bookkeeping beside the training: ``NICE`` steps below the run's process, the painters (forks of
    the sidecar) too, so that the scheduler does not run it on the training's core."""
    from runner.report.artifacts import warm
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.sidecar import NICE
    from runner.tracking.store import Target, default_store

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RunRecorder.child_process(Target(uri, artifacts, "priority")).start_run("a run")
    tracker.paint(warm)  # the sidecar forks its painters after it
    tracker.in_store()
    child = tracker._transport
    painters = [int(p) for p in open(f"/proc/{child.pid}/task/{child.pid}/children").read().split()]
    lower = min(mine + NICE, 19)
    assert NICE > 0 and os.getpriority(os.PRIO_PROCESS, child.pid) == lower
    assert len(painters) == 2 and [os.getpriority(os.PRIO_PROCESS, p) for p in painters] == [lower, lower]
    tracker.end("FINISHED")
    tracker.close()
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine  # the run's own process keeps its priority
