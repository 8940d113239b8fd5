"""Nothing recorded is lost, every failure is explained, every run can resume: real processes, real signals."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import SHARED_DATA, Run, run_cli

MNIST = ["+experiment=mnist", "trainer.iterations=2200", "threads=1"]  # 4 epochs of 550 steps, 1 BLAS thread


def start(cwd, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


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
    from runner import checkpoint

    state = checkpoint.load(ckpt_dir / "checkpoint.npz")
    assert state["training"]["step"] == 18 and checkpoint.load(ckpt_dir / "checkpoint.prev.npz")["training"]["step"] == 12
    assert set(state["params"]) == {"0.linear.W", "0.linear.b", "2.linear.W", "2.linear.b"}
    run = result.only_run("iris")
    assert "checkpoints/checkpoint.npz" in {a.path for a in result.client().list_artifacts(run.info.run_id, "checkpoints")}


def test_resume_with_another_config_is_refused(tmp_path):
    first = run_cli(tmp_path, "+experiment=iris", "trainer.epochs=2", "checkpoint.min_interval_s=0")
    run_id = first.only_run("iris").info.run_id
    again = run_cli(tmp_path, "+experiment=iris", "trainer.epochs=2", "checkpoint.min_interval_s=0", "optimizer.lr=0.5", f"+resume={run_id}")
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
    log_text = open(result.client().download_artifacts(run.info.run_id, "runner.log")).read()
    assert "Traceback" in log_text and "RunnerError" in log_text  # the traceback is in the run's log


def test_unreachable_tracking_server_fails_before_training_and_names_it(runner_cli):
    start_time = time.time()
    result = runner_cli("+experiment=iris", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert "the MLflow server http://127.0.0.1:9 does not answer" in result.proc.stderr
    assert "training" not in result.proc.stdout
    assert time.time() - start_time < 60


@pytest.mark.parametrize("override, message", [
    ("trainer.batch_size=0", "trainer.batch_size: expected a positive integer, got 0"),
    ("model.hidden=[0]", "model.hidden[0]: expected a positive integer width, got 0"),
    ("optimizer.lr=-0.1", "optimizer (sgd): lr: expected a positive number, got -0.1"),
    ("trainer.epochs=-1", "trainer.epochs: expected a positive integer, got -1"),
    ("dtype=float16", "dtype: expected 'float32' or 'float64', got 'float16'"),
    ("objective.metric=val/auc", "objective.metric: 'val/auc' is not measured"),
])
def test_bad_values_name_the_key(runner_cli, override, message):
    result = runner_cli("+experiment=iris", override)
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert message in result.proc.stderr


def test_a_layer_that_raises_is_named_with_its_plugin():
    from runner.api import PluginSpec, hookimpl, Meta, RunnerError
    from runner.model import build_model
    from plugins.layers import ReLU

    class Broken(ReLU):
        def forward(self, x, training):
            raise ValueError("boom")

    class Provider:
        __name__ = "broken_plugin"

        @hookimpl
        def runner_layers(self):
            return [PluginSpec("broken", Broken, "raises")]

    from runner import registry as reg

    pm = reg.plugin_manager() if hasattr(reg, "plugin_manager") else None
    if pm is None:
        pytest.skip("registry API changed")
    pm.register(Provider(), name="broken")
    registry = reg.collect(pm)
    model = build_model([{"type": "linear", "out": 3}, {"type": "broken"}], registry, Meta("x", (4,), 3, "classification"),
                        np.random.default_rng(0), np.float32)
    with pytest.raises(RunnerError, match=r"model.layers\[1\] \(broken, from .*broken_plugin.*\): forward raised ValueError: boom"):
        model.forward(np.ones((2, 4), np.float32), training=True)


@pytest.mark.parametrize("args, message", [
    (("+experiment=iris", "tracking.outputs=/proc/runner-outputs"), "tracking.outputs: cannot create or write /proc/runner-outputs"),
    (("--multirun", "+experiment=iris", "seed=1,2", "tracking.outputs=/proc/runner-outputs"), "tracking.outputs: cannot create or write"),
])
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
    from runner import checkpoint

    logged = result.client().download_artifacts(run.info.run_id, "checkpoints/checkpoint.npz", str(tmp_path))
    assert checkpoint.load(logged)["training"]["step"] == 1800  # the last epoch's, as on disk


def test_a_failed_run_says_why_even_when_the_store_refused_a_write(tmp_path):
    """After a write fails the sidecar drops later writes but still ends the run: runner.error goes with the end."""
    from runner.api import RunnerError
    from runner.app import end_run
    from runner.remote_tracker import RemoteTracker
    from runner.tracking import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RemoteTracker(Target(uri, artifacts, "refused")).start_run("a run")
    tracker.log_artifact(tmp_path / "gone.npz")  # the sidecar cannot copy it: it fails, before the end is sent
    with pytest.raises(RunnerError, match="FileNotFoundError"):  # said at the end at the latest
        end_run(tracker, tmp_path, "FAILED", "RunnerError: the reason")
    client = Run(None, tmp_path).client()
    [run] = client.search_runs([client.get_experiment_by_name("refused").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["runner.error"] == "RunnerError: the reason"


def test_a_failure_the_sidecar_reports_is_seen_at_the_next_check(tmp_path):
    """It came back with an earlier reply, in the same read: check() used to look at the pipe only."""
    from runner.api import RunnerError
    from runner.remote_tracker import RemoteTracker
    from runner.tracking import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RemoteTracker(Target(uri, artifacts, "seen")).start_run("a run")
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
    from runner.remote_tracker import RemoteTracker
    from runner.tracking import Target, default_store

    uri, artifacts = default_store(tmp_path / "outputs")
    tracker = RemoteTracker(Target(uri, artifacts, "late")).start_run("a run")
    tracker.log_artifact(tmp_path / "gone.npz")
    with pytest.raises(RunnerError, match="FileNotFoundError"):
        tracker.end("FINISHED")  # found only now: not FINISHED, and not left RUNNING either
    client = Run(None, tmp_path).client()
    [run] = client.search_runs([client.get_experiment_by_name("late").experiment_id])
    assert run.info.status == "FAILED" and "FileNotFoundError" in run.data.tags["runner.error"]
