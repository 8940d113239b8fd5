"""Runs that die hard (issue 13): the MLflow sidecar killed, the artifact store made unwritable, a tracking server
answering 503. Real processes, real signals, a real SQLite store, a real HTTP server on 127.0.0.1; every wait bounded."""

import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Run, run_cli
from test_reliability import histories, sidecar_of, start_with

#: 200 epochs of 6 steps, train/loss and train/lr at every step: 1200 points each
IRIS = ["+experiment=iris", "trainer.epochs=200", "trainer.log_every=1", "report.enabled=false", "threads=1"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The histories of IRIS run through undisturbed (the computation is deterministic: same seed, same histories)."""
    cwd = tmp_path_factory.mktemp("reference")
    result = run_cli(cwd, *IRIS)
    assert result.proc.returncode == 0, result.proc.stderr[-2000:]
    found = histories(result.client(), result.only_run("iris").info.run_id)
    assert len(found["train/loss"]) == 1200
    return found


def sidecars_in(cwd: Path) -> list[int]:
    """The ``runner.sidecar`` processes still alive whose working directory is ``cwd`` (zombies aside)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (
                b"runner.tracking.sidecar" in Path(f"/proc/{pid}/cmdline").read_bytes()
                and os.readlink(f"/proc/{pid}/cwd") == str(cwd)
                and " Z " not in Path(f"/proc/{pid}/stat").read_text()
            ):
                found.append(int(pid))
        except OSError:
            pass
    return found


# --------------------------------------------------------------------------- the MLflow sidecar killed


@pytest.mark.parametrize("when", ["training ", "epoch 100/200"], ids=["as-training-starts", "mid-run"])
def test_a_killed_sidecar_loses_nothing_and_the_run_goes_on_in_process(tmp_path, reference, when):
    """Was: exit 1, the run left RUNNING without runner.error, what was queued lost (train/loss stored to step 4160 of
    8800 reached); killed as training starts, nothing recorded at all."""
    proc = start_with(tmp_path, {}, *IRIS)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if when in line:
            os.kill(proc.pid, signal.SIGSTOP)  # the run stands still while its sidecar is killed
            assert "epoch 200/200" not in "".join(seen)
            os.kill(sidecar_of(proc.pid), signal.SIGKILL)
            os.kill(proc.pid, signal.SIGCONT)
            break
    seen.append(proc.stdout.read())
    proc.wait(timeout=120)
    output = "".join(seen)
    assert proc.returncode == 0, output[-3000:]
    assert "died (signal 9, SIGKILL)" in output and "recording goes on in this process" in output
    run = Run(subprocess.CompletedProcess([], 0, output, ""), tmp_path).only_run("iris")  # one run: never created twice
    assert run.info.status == "FINISHED"
    assert "the run went on with MLflow in its own process" in run.data.tags["runner.sidecar"]
    found = histories(Run(None, tmp_path).client(), run.info.run_id)
    assert {k: len(v) for k, v in found.items()} == {k: len(v) for k, v in reference.items()}  # every point, none twice
    assert found == reference
    assert not sidecars_in(tmp_path)


# --------------------------------------------------------------------------- the artifact store made unwritable


def unprivileged() -> list[str]:
    """A command prefix under which permission bits apply: root ignores them unless CAP_DAC_OVERRIDE is dropped."""
    if os.getuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a folder cannot be made unwritable to the run")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_an_unwritable_artifact_store_stops_at_a_checkpoint_and_resumes_exactly(tmp_path, reference):
    """Was: exit 1 0.6 s later, FAILED, the metrics after the failure dropped; nothing said how to continue."""
    from test_reliability import SHARED_DATA

    args = [*IRIS, "checkpoint.every=10", "checkpoint.min_interval_s=0"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    command = [*unprivileged(), sys.executable, "-m", "runner"]
    proc = subprocess.Popen([*command, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    artifacts = tmp_path / "outputs" / "mlartifacts"
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "epoch 50/200" in line:  # checkpoints of epochs 10..50 logged (or being logged): the folder exists
            os.kill(proc.pid, signal.SIGSTOP)
            deadline = time.time() + 30
            while not list(artifacts.glob("*/artifacts/checkpoints")) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the sidecar finishes its copy
            subprocess.run(["chmod", "-R", "a-w", str(artifacts)], check=True)
            os.kill(proc.pid, signal.SIGCONT)
            break
    seen.append(proc.stdout.read())
    output = "".join(seen)
    try:
        assert proc.wait(timeout=120) == 1, output[-3000:]
        run = Run(subprocess.CompletedProcess([], 1, output, ""), tmp_path).only_run("iris")
        error = run.data.tags["runner.error"]
        assert run.info.status == "FAILED" and "the artifact store refused a write (PermissionError" in error
        assert "Traceback" not in output and error.removeprefix("RunnerError: ") in output  # the same line for the user
        step = int(error.split("training stopped at step ")[1].split(",")[0])
        assert 6 * 50 < step < 1200 and step % 6 == 0  # the epoch end after the refused copy (of epoch 50 or 60)
        found = histories(Run(None, tmp_path).client(), run.info.run_id)
        assert found["train/loss"] == reference["train/loss"][:step]  # every point up to where the loop got, none lost
        fix = error.split("(e.g. ")[1].split(")")[0]
        kept = error.split("+resume=")[1]
        assert fix.startswith("chmod -R u+w ") and Path(kept).is_file()
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(artifacts)], check=False)
    subprocess.run(["chmod", "-R", "a-w", str(artifacts)], check=True)  # as the user left it: then the fix the error names
    subprocess.run(fix.split(), check=True)
    resumed = subprocess.run(
        [*command, *args, f"+resume={kept}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    subprocess.run(["chmod", "-R", "u+w", str(artifacts)], check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = Run(resumed, tmp_path).only_run("iris")
    assert final.info.run_id == run.info.run_id and final.info.status == "FINISHED" and "runner.error" not in final.data.tags
    assert histories(Run(None, tmp_path).client(), run.info.run_id) == reference


# --------------------------------------------------------------------------- a tracking server answering 503


@pytest.fixture
def server_503():
    """An HTTP server on 127.0.0.1 that answers 503 Service Unavailable to everything."""

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def answer(self):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_answering_503_is_one_line_within_seconds_and_leaves_no_process(tmp_path, server_503):
    """Was: the run trained, then hung silently (~250 s by hand before `Max retries exceeded`), its sidecar left behind."""
    began = time.time()
    result = run_cli(tmp_path, *IRIS, env={"MLFLOW_TRACKING_URI": server_503}, timeout=120)
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert f"tracking: the MLflow server {server_503} answers 503 Service Unavailable" in result.proc.stderr
    assert "training" not in result.proc.stdout + result.proc.stderr and time.time() - began < 20
    assert not (tmp_path / "outputs" / "mlflow.db").exists() and not sidecars_in(tmp_path)


def test_resuming_from_a_checkpoint_whose_server_answers_503_says_so_within_seconds(tmp_path, server_503):
    """Was: retried for more than 45 s before anything was said."""
    from runner.run import checkpoint

    first = run_cli(tmp_path, "+experiment=iris", "trainer.epochs=2", "checkpoint.min_interval_s=0", "report.enabled=false")
    assert first.proc.returncode == 0, first.proc.stderr[-2000:]
    [saved] = tmp_path.glob("outputs/runs/*/*/checkpoints/checkpoint.npz")
    state = checkpoint.load(saved)
    state.pop("format")
    moved = checkpoint.save(tmp_path / "moved", {**state, "tracking_uri": server_503})  # as if recorded on that server
    began = time.time()
    result = run_cli(
        tmp_path,
        "+experiment=iris",
        "trainer.epochs=2",
        "checkpoint.min_interval_s=0",
        "report.enabled=false",
        f"+resume={moved}",
        timeout=120,
    )  # the local store is fine: only the checkpoint's server is down
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr, result.proc.stderr[-2000:]
    assert f"is recorded in {server_503}: the MLflow server {server_503} answers 503" in result.proc.stderr
    assert time.time() - began < 20 and not sidecars_in(tmp_path)
