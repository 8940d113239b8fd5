"""Nothing recorded is lost, every failure is explained, every run can resume: real processes, real signals."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, Run, run_cli
from test_sweeps import mlflow_server  # noqa: F401  (a fixture: a real mlflow server)

MNIST = ["+experiment=mnist", "trainer.iterations=2200", "threads=1"]  # 4 epochs of 550 steps, 1 BLAS thread


def start(cwd, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def interrupt_after(proc, text: str, signum: int) -> str:
    """Send ``signum`` once ``text`` shows in the output; the whole output."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            proc.send_signal(signum)
            break
    seen.append(proc.stdout.read())
    proc.wait(timeout=120)
    return "".join(seen)


def history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_run_is_killed_and_resumes_to_exactly_the_uninterrupted_metrics(tmp_path, signum, code):
    (tmp_path / "ref").mkdir()
    reference = run_cli(tmp_path / "ref", *MNIST)
    assert reference.proc.returncode == 0, reference.proc.stderr[-2000:]
    ref_run = reference.only_run("mnist")

    work = tmp_path / "work"
    work.mkdir()
    proc = start(work, *MNIST)
    output = interrupt_after(proc, "epoch 1/4", signum)
    assert proc.returncode == code, output[-2000:]
    assert "Traceback" not in output
    interrupted = Run(subprocess.CompletedProcess([], code, output, ""), work).only_run("mnist")
    assert interrupted.info.status == "KILLED"
    assert signal.Signals(signum).name in interrupted.data.tags["runner.error"]
    run_id = interrupted.info.run_id
    assert f"+resume={run_id}" in output

    resumed = run_cli(work, *MNIST, f"+resume={run_id}")
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-2000:]
    final = resumed.only_run("mnist")  # the same run, continued
    assert final.info.run_id == run_id and final.info.status == "FINISHED"
    assert "runner.error" not in final.data.tags and "runner.interrupted" in final.data.tags
    untimed = lambda m: {k: v for k, v in m.items() if not k.startswith("time/")}  # noqa: E731
    assert untimed(final.data.metrics) == untimed(ref_run.data.metrics)
    client, ref_client = resumed.client(), reference.client()
    for key in ("train/loss", "val/accuracy", "test/loss"):
        assert history(client, run_id, key) == history(ref_client, ref_run.info.run_id, key), key


def test_checkpoints_are_atomic_plain_arrays_and_keep_the_previous_one(tmp_path):
    result = run_cli(tmp_path, "+experiment=iris", "trainer.epochs=3", "checkpoint.min_interval_s=0")  # every epoch
    assert result.proc.returncode == 0
    [ckpt_dir] = list((tmp_path / "outputs" / "runs").glob("*/*/checkpoints"))
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["checkpoint.npz", "checkpoint.prev.npz"]
    with np.load(ckpt_dir / "checkpoint.npz", allow_pickle=False) as data:  # never unpickles
        assert all(data[k].dtype != object for k in data.files)
    from runner.run import checkpoint

    state = checkpoint.load(ckpt_dir / "checkpoint.npz")
    assert state["training"]["step"] == 18 and checkpoint.load(ckpt_dir / "checkpoint.prev.npz")["training"]["step"] == 12
    assert set(state["params"]) == {"0.linear.W", "0.linear.b", "2.linear.W", "2.linear.b"}
    run = result.only_run("iris")
    assert "checkpoints/checkpoint.npz" in {a.path for a in result.client().list_artifacts(run.info.run_id, "checkpoints")}


def test_resume_with_another_config_is_refused(tmp_path):
    first = run_cli(tmp_path, "+experiment=iris", "trainer.epochs=2", "checkpoint.min_interval_s=0")
    run_id = first.only_run("iris").info.run_id
    again = run_cli(
        tmp_path, "+experiment=iris", "trainer.epochs=2", "checkpoint.min_interval_s=0", "optimizer.lr=0.5", f"+resume={run_id}"
    )
    assert again.proc.returncode == 1 and "Traceback" not in again.proc.stderr
    assert "the config differs from the checkpoint's (optimizer.lr: 0.02 -> 0.5)" in again.proc.stderr
    missing = run_cli(tmp_path, "+experiment=iris", "+resume=nope")
    assert missing.proc.returncode == 1 and "resume=nope: neither a checkpoint file nor a run id" in missing.proc.stderr


def test_a_run_killed_hard_is_marked_killed_by_the_next_start(tmp_path):
    proc = start(tmp_path, *MNIST)
    interrupt_after(proc, "epoch 1/4", signal.SIGKILL)
    result = run_cli(tmp_path, "+experiment=mnist", "trainer.iterations=10")
    runs = {r.data.tags["runner.pid"]: r for r in result.runs("mnist")}
    killed = runs[str(proc.pid)]
    assert killed.info.status == "KILLED" and "exited without ending the run" in killed.data.tags["runner.error"]
    assert [r.info.status for r in runs.values()].count("FINISHED") == 1


def test_divergence_names_the_step_and_keeps_what_was_logged(runner_cli):
    result = runner_cli("+experiment=iris", "optimizer.lr=1e30")
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert "training diverged at step" in result.proc.stderr
    assert "parameter" in result.proc.stderr or "activations overflowed" in result.proc.stderr
    run = result.only_run("iris")
    assert run.info.status == "FAILED" and "diverged" in run.data.tags["runner.error"]
    assert "gradcheck/max_rel_error" in run.data.metrics  # logged before, kept
    log_text = open(result.client().download_artifacts(run.info.run_id, "runner.log", str(result.cwd))).read()
    assert "Traceback" in log_text and "RunnerError" in log_text  # the traceback is in the run's log


def test_unreachable_tracking_server_fails_before_training_and_names_it(runner_cli):
    start_time = time.time()
    result = runner_cli("+experiment=iris", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert "the MLflow server http://127.0.0.1:9 does not answer" in result.proc.stderr
    assert "training" not in result.proc.stdout
    assert time.time() - start_time < 60


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.batch_size=0", "trainer.batch_size: expected a positive integer, got 0"),
        ("model.hidden=[0]", "model.hidden[0]: expected a positive integer width, got 0"),
        ("optimizer.lr=-0.1", "optimizer (sgd): lr: expected a positive number, got -0.1"),
        ("trainer.epochs=-1", "trainer.epochs: expected a positive integer, got -1"),
        ("dtype=float16", "dtype: expected 'float32' or 'float64', got 'float16'"),
        ("objective.metric=val/auc", "objective.metric: 'val/auc' is not measured"),
    ],
)
def test_bad_values_name_the_key(runner_cli, override, message):
    result = runner_cli("+experiment=iris", override)
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert message in result.proc.stderr


def test_a_layer_that_raises_is_named_with_its_plugin():
    from runner.api import Meta, PluginSpec, RunnerError, hookimpl
    from runner.builtins.layers import ReLU
    from runner.core.model import build_model

    class Broken(ReLU):
        def forward(self, x, training):
            raise ValueError("boom")

    class Provider:
        __name__ = "broken_plugin"

        @hookimpl
        def runner_layers(self):
            return [PluginSpec("broken", Broken, "raises")]

    from runner.testing import plugin_registry

    registry = plugin_registry(Provider())
    model = build_model(
        [{"type": "linear", "out": 3}, {"type": "broken"}],
        registry,
        Meta("x", (4,), 3, "classification"),
        np.random.default_rng(0),
        np.float32,
    )
    with pytest.raises(
        RunnerError, match=r"model.layers\[1\] \(broken, from .*broken_plugin.*\): forward raised ValueError: boom"
    ):
        model.forward(np.ones((2, 4), np.float32), training=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("+experiment=iris", "tracking.outputs=/proc/runner-outputs"),
            "tracking.outputs: cannot create or write /proc/runner-outputs",
        ),
        (
            ("--multirun", "+experiment=iris", "seed=1,2", "tracking.outputs=/proc/runner-outputs"),
            "tracking.outputs: cannot create or write",
        ),
    ],
)
def test_unwritable_outputs_are_one_clear_line(runner_cli, args, message):
    result = runner_cli(*args)
    assert result.proc.returncode == 1
    assert "Traceback" not in result.proc.stderr and message in result.proc.stderr


def test_unreachable_server_stops_a_sweep_before_any_job(runner_cli):
    result = runner_cli("--multirun", "+experiment=iris", "seed=1,2", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert "the MLflow server http://127.0.0.1:9 does not answer" in result.proc.stderr
    assert "#0 :" not in result.proc.stdout


def test_a_checkpoint_every_epoch_is_logged_while_training_goes_on(runner_cli, tmp_path):
    """The sidecar copies each logged checkpoint later; the next one used to replace the file under the
    copy (FileNotFoundError, the run FAILED with an empty runner.error): 300 checkpoints, 300 copies."""
    result = runner_cli("+experiment=iris", "checkpoint.min_interval_s=0", "report.enabled=false")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("iris")
    assert run.info.status == "FINISHED" and "runner.error" not in run.data.tags
    from runner.run import checkpoint

    logged = result.client().download_artifacts(run.info.run_id, "checkpoints/checkpoint.npz", str(tmp_path))
    assert checkpoint.load(logged)["training"]["step"] == 1800  # the last epoch's, as on disk


def test_a_failed_run_says_why_even_when_the_store_refused_a_write(tmp_path):
    """After a write fails the sidecar drops later writes but still ends the run: runner.error goes with the end."""
    from runner.api import RunnerError
    from runner.run.record import end_run
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RunRecorder.child_process(Target(uri, artifacts, "refused")).start_run("a run")
    tracker.log_artifact(tmp_path / "gone.npz")  # the sidecar cannot copy it: it fails, before the end is sent
    with pytest.raises(RunnerError, match="FileNotFoundError"):  # said at the end at the latest
        end_run(tracker, tmp_path, "FAILED", "RunnerError: the reason")
    client = Run(None, tmp_path).client()
    [run] = client.search_runs([client.get_experiment_by_name("refused").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["runner.error"] == "RunnerError: the reason"


def test_a_failure_the_sidecar_reports_is_seen_at_the_next_check(tmp_path):
    """It came back with an earlier reply, in the same read: check() used to look at the pipe only."""
    from runner.api import RunnerError
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RunRecorder.child_process(Target(uri, artifacts, "seen")).start_run("a run")
    tracker.log_artifact(tmp_path / "gone.npz")
    with pytest.raises(RunnerError, match="FileNotFoundError"):
        for _ in range(600):  # 30 s
            tracker.check()  # at every epoch's end in a run
            time.sleep(0.05)
    tracker.end("FAILED", {"runner.error": "seen"})
    client = Run(None, tmp_path).client()
    [run] = client.search_runs([client.get_experiment_by_name("seen").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["runner.error"] == "seen"


def test_a_write_refused_at_the_very_end_makes_the_run_failed_with_the_reason(tmp_path):
    from runner.api import RunnerError
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RunRecorder.child_process(Target(uri, artifacts, "late")).start_run("a run")
    tracker.log_artifact(tmp_path / "gone.npz")
    with pytest.raises(RunnerError, match="FileNotFoundError"):
        tracker.end("FINISHED")  # found only now: not FINISHED, and not left RUNNING either
    client = Run(None, tmp_path).client()
    [run] = client.search_runs([client.get_experiment_by_name("late").experiment_id])
    assert run.info.status == "FAILED" and "FileNotFoundError" in run.data.tags["runner.error"]


# ------------------------------------------------------------------- resume after SIGTERM, SIGINT, SIGKILL: every history exact

#: 400 epochs of 6 steps, train/loss and train/lr at every step (the buffer of 1000 values is sent to the store about every
#: 425 steps), a checkpoint at epochs 200 and 400: a process killed hard after step ~1625 has points after its checkpoint in
#: the store
IRIS_RESUME = [
    "+experiment=iris",
    "trainer.epochs=400",
    "trainer.log_every=1",
    "checkpoint.every=200",
    "checkpoint.min_interval_s=0",
    "report.enabled=false",
    "threads=1",
]


def histories(client, run_id) -> dict[str, list[tuple[int, float]]]:
    """Every metric's whole history but the wall-clock ones (time/*), in step order, duplicates kept."""
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("time/")]
    return {key: history(client, run_id, key) for key in sorted(keys)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The histories of IRIS_RESUME run through, twice: the same seed and config give bitwise the same histories."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    first, second = run_cli(cwd, *IRIS_RESUME), run_cli(cwd, *IRIS_RESUME)
    assert first.proc.returncode == 0 and second.proc.returncode == 0, second.proc.stderr[-2000:]
    client = first.client()
    a, b = (histories(client, run.info.run_id) for run in first.runs("iris"))
    assert a == b and len(a["train/loss"]) == 2400, "the computation is not deterministic: exact resumes cannot be checked"
    return a


def latest(histories_: dict) -> dict:
    """Each metric's value at its last step: what a run's page shows."""
    return {key: points[-1][1] for key, points in histories_.items()}


def sidecar_of(pid: int) -> int:
    """The MLflow sidecar process of a run's process (its only child)."""
    [child] = open(f"/proc/{pid}/task/{pid}/children").read().split()
    return int(child)


def kill_hard_after_a_checkpoint(proc, work, uri) -> tuple[int, int]:
    """SIGKILL the run's process (not its sidecar) once its store holds train/loss points after its last checkpoint's step.
    At each epoch log line the process is stopped (SIGSTOP) and the store and checkpoint looked at; if not yet, it goes on.
    Returns (the checkpoint's step, the last stored train/loss step)."""
    from runner.run import checkpoint

    for line in proc.stdout:
        if "epoch " not in line or "/400 step" not in line:
            continue
        os.kill(proc.pid, signal.SIGSTOP)
        files = list(work.glob("outputs/runs/*/*/checkpoints/checkpoint.npz"))
        client = store_client(uri) if files else None  # the store exists once a checkpoint does (never created here)
        experiment = client.get_experiment_by_name("iris") if files else None
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if files and runs:
            step = checkpoint.load(files[0])["training"]["step"]
            time.sleep(0.3)  # the sidecar writes what it was sent
            stored = max((m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")), default=0)
            if stored > step:
                sidecar = sidecar_of(proc.pid)
                proc.kill()
                proc.wait(timeout=30)
                for _ in range(200):  # it writes what it was sent, then exits
                    if not os.path.exists(f"/proc/{sidecar}") or " Z " in open(f"/proc/{sidecar}/stat").read():
                        break
                    time.sleep(0.05)
                proc.stdout.read()
                return step, stored
        os.kill(proc.pid, signal.SIGCONT)
    raise AssertionError("the run ended before its store held points after a checkpoint")


def signal_in_training(
    proc,
    text: str,
    pids,
    signum: int,
    work,
    last_step: int = 2400,
    checkpoints: str = "outputs/runs/*/*/checkpoints/checkpoint.npz",
) -> str:
    """Send ``signum`` to ``pids`` (a negative one: a process group) once ``text`` shows in the output, while the run
    still trains: it is stopped (SIGSTOP) first, and its last checkpoint (``checkpoints``, a glob in ``work``) must not
    be the final one; then signalled and continued. The whole output."""
    from runner.run import checkpoint

    seen = []
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            os.kill(proc.pid, signal.SIGSTOP)
            steps = [checkpoint.load(f)["training"]["step"] for f in work.glob(checkpoints)]
            assert max(steps, default=0) < last_step, "the run had finished training before it could be signalled"
            for pid in pids:
                os.kill(pid, signum) if pid > 0 else os.killpg(-pid, signum)
            os.kill(proc.pid, signal.SIGCONT)
            break
    seen.append(proc.stdout.read())
    proc.wait(timeout=120)
    return "".join(seen)


def store_client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def interrupt_and_resume(work, signum, uri, env=None):
    """Run IRIS_RESUME in ``work``, stop it with ``signum`` mid-training, resume it; (run id, resumed Run, output of the
    first)."""
    proc = start_with(work, env or {}, *IRIS_RESUME)
    if signum == signal.SIGKILL:
        step, stored = kill_hard_after_a_checkpoint(proc, work, uri)
        assert stored > step  # the store held points the resumed run computes again
        output = ""
    else:
        output = signal_in_training(proc, "epoch 220/400", [proc.pid], signum, work)
        assert proc.returncode == 128 + signum, output[-2000:]
    client = store_client(uri)
    [run] = client.search_runs([client.get_experiment_by_name("iris").experiment_id])
    temp = Path(work) / "tmp"
    temp.mkdir()
    resumed = run_cli(work, *IRIS_RESUME, f"+resume={run.info.run_id}", env={**(env or {}), "TMPDIR": str(temp)})
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    assert not list(temp.iterdir())  # the checkpoint downloaded from the store was read, then removed
    return run.info.run_id, resumed, output


def start_with(cwd, env_extra, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env.update({"RUNNER_DATA_DIR": str(SHARED_DATA), **env_extra})
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_resumed_run_has_exactly_the_uninterrupted_histories(tmp_path, uninterrupted, signum):
    """Every metric's whole history, step by step and value by value, as if never interrupted: after SIGKILL the steps the
    killed process had logged after its checkpoint used to be logged twice (2486 train/loss points for 2000 steps)."""
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    run_id, resumed, output = interrupt_and_resume(tmp_path, signum, uri)
    run = resumed.only_run("iris")
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert "runner.error" not in run.data.tags and "runner.resume.mismatch" not in run.data.tags
    resumed_histories = histories(resumed.client(), run_id)
    assert {k: len(v) for k, v in resumed_histories.items()} == {k: len(v) for k, v in uninterrupted.items()}  # no point twice
    assert resumed_histories == uninterrupted
    assert {k: v for k, v in run.data.metrics.items() if not k.startswith("time/")} == latest(uninterrupted)
    if signum == signal.SIGKILL:
        assert "exited without ending the run" in run.data.tags["runner.interrupted"]
        assert "deleted the" in resumed.proc.stdout  # the killed process's points after the checkpoint
    else:
        assert signal.Signals(signum).name in run.data.tags["runner.interrupted"] and f"+resume={run_id}" in output


def test_a_run_killed_hard_resumes_exactly_against_a_tracking_server(tmp_path, uninterrupted, mlflow_server):  # noqa: F811
    """A tracking server cannot delete metric points: the resumed run leaves out those the store has, having checked them."""
    run_id, resumed, _ = interrupt_and_resume(tmp_path, signal.SIGKILL, mlflow_server, env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert "leaves them out and checks" in resumed.proc.stdout
    client = store_client(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "runner.resume.mismatch" not in run.data.tags
    assert histories(client, run_id) == uninterrupted


def test_a_resume_leaves_out_the_points_a_store_keeps_and_checks_them():
    """Where points cannot be deleted (a tracking server): each (metric, step) the store has is left out, its value checked;
    one that differs keeps the stored value, is warned about and tagged; time/* are wall-clock and not compared."""
    from runner.run.resume import Continuation

    class Recorder:
        def __init__(self):
            self.logged, self.tags = [], {}

        def log_metrics(self, metrics, step):
            self.logged.append((dict(metrics), step))

        def set_tags(self, tags):
            self.tags.update(tags)

    tracker = Recorder()
    sink = Continuation(tracker, {"train/loss": {11: 0.5, 12: 0.25}, "time/epoch_s": {12: 0.01}})
    sink({"train/loss": 0.5, "train/lr": 0.1}, 11)  # stored and equal: only train/lr, which the store lacks
    sink({"train/loss": 0.75, "time/epoch_s": 0.02, "epoch": 2.0}, 12)  # differs: kept as stored, tagged
    sink({"train/loss": 0.125}, 13)  # after the store's last point: written
    assert tracker.logged == [({"train/lr": 0.1}, 11), ({"epoch": 2.0}, 12), ({"train/loss": 0.125}, 13)]
    assert tracker.tags == {"runner.resume.mismatch": "train/loss at step 12: stored 0.25, recomputed 0.75"}


def test_resuming_a_run_whose_process_still_runs_is_refused(tmp_path):
    from runner.api import RunnerError
    from runner.run.resume import reopen
    from runner.tracking import runs
    from runner.tracking.store import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = runs.start_run(
        Target(uri, artifacts, "live"), "a run", {"runner.pid": os.getppid()}
    )  # a live process, not this one
    with pytest.raises(RunnerError, match=rf"run {tracker.run_id} is still running in process {os.getppid()} on "):
        reopen(tracker, tracker.run_id)
    tracker.set_tags({"runner.pid": 2**22 + 1})  # a process that is gone (above the usual pid_max): killed hard
    reopen(tracker, tracker.run_id)
    run = tracker.client.get_run(tracker.run_id)
    assert run.info.status == "RUNNING" and "exited without ending the run" in run.data.tags["runner.interrupted"]
    assert run.data.tags["runner.pid"] == str(os.getpid())
