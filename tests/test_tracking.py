"""The recorder (runner.tracking.recorder): one behaviour, whichever transport carries its requests to the one
Writer (in the run's own process, or the child process ``python -m runner.tracking.sidecar``). Every test here runs
against both, on a real SQLite store (or a real ``mlflow server`` on 127.0.0.1) read back with MlflowClient."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from servers import free_port, wait_until_healthy
from test_faults import server_503  # noqa: F401  (a fixture: a server answering 503 to everything)

from runner.api import RunnerError
from runner.tracking.recorder import Recorder, RunRecorder
from runner.tracking.store import Target, default_store

TRANSPORTS = ["in-process", "child-process"]


def recorder(kind: str, where: Target, spill_dir: Path | None = None) -> RunRecorder:
    if kind == "in-process":
        return RunRecorder.in_process(where, spill_dir=spill_dir)
    return RunRecorder.child_process(where, spill_dir=spill_dir)


@pytest.fixture(params=TRANSPORTS)
def kind(request):
    return request.param


@pytest.fixture
def where(tmp_path):
    uri, artifacts = default_store(tmp_path / "outputs")
    return Target(uri, artifacts, "tracking")


def client_of(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def only_run(uri: str, experiment: str = "tracking"):
    client = client_of(uri)
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def stored_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client_of(uri).get_metric_history(run_id, key))


def test_both_transports_are_recorders(kind, where):
    r = recorder(kind, where)
    try:
        assert isinstance(r, Recorder)
    finally:
        r.close()


def test_everything_logged_is_recorded_once_and_the_history_is_what_was_logged(kind, where, tmp_path):
    r = recorder(kind, where).start_run("a run", {"runner.extra": "x"})
    r.log_params({"model.hidden": "[50]", "long": "p" * 7000})  # MLflow keeps at most 6000 characters of a param
    r.set_tags({"t": "y" * 6000})  # ... and 5000 of a tag
    for step in range(1, 2501):  # more than a batch of 1000: sent in several log_batch requests
        r.log_metrics({"train/loss": 1.0 / step, "train/lr": 0.1}, step)
    r.log_metrics({"test/accuracy": 0.5}, 2500)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"png")
    (tmp_path / "model.npz").write_bytes(b"npz")
    r.log_artifact(tmp_path / "plots", "plots")
    r.log_artifact(tmp_path / "model.npz")
    r.log_dict({"a": 1}, "plugins.json")
    r.log_text("hello", "summary.txt")
    r.check()
    assert r.history(["train/loss", "missing"]) == {"train/loss": [(s, 1.0 / s) for s in range(1, 2501)]}
    assert r.latest_metrics() == {"train/loss": 1.0 / 2500, "train/lr": 0.1, "test/accuracy": 0.5}
    run_id = r.run_id
    r.end("FINISHED")
    run = only_run(where.uri)
    assert run.info.run_id == run_id and run.info.status == "FINISHED" and run.info.run_name == "a run"
    assert run.data.params["model.hidden"] == "[50]" and len(run.data.params["long"]) == 6000
    assert len(run.data.tags["t"]) == 5000 and run.data.tags["runner.extra"] == "x"
    assert run.data.tags["runner.pid"] == str(os.getpid()) and run.data.tags["runner.host"] == socket.gethostname()
    assert stored_history(where.uri, run_id, "train/loss") == r.history(["train/loss"])["train/loss"]
    assert len(stored_history(where.uri, run_id, "train/lr")) == 2500
    artifacts = {a.path for a in client_of(where.uri).list_artifacts(run_id)}
    assert {"plots", "model.npz", "plugins.json", "summary.txt"} <= artifacts


def test_a_failed_write_is_raised_at_the_next_check_and_the_end_still_says_why(kind, where, tmp_path):
    r = recorder(kind, where).start_run("a run")
    r.log_metrics({"m": 1.0}, 1)
    r.flush()
    r.log_artifact(tmp_path / "gone.npz")  # not at the call: at the next check, as with a child process
    with pytest.raises(RunnerError, match="FileNotFoundError"):
        for _ in range(600):
            r.check()
            time.sleep(0.05)
    r.log_metrics({"m": 2.0}, 2)  # dropped: the store failed
    r.end("FAILED", {"runner.error": "the reason"})  # already raised: not raised again
    run = only_run(where.uri)
    assert run.info.status == "FAILED" and run.data.tags["runner.error"] == "the reason"
    assert stored_history(where.uri, run.info.run_id, "m") == [(1, 1.0)]


def test_a_failure_found_only_at_the_end_makes_the_run_failed(kind, where, tmp_path):
    r = recorder(kind, where).start_run("a run")
    r.log_artifact(tmp_path / "gone.npz")
    with pytest.raises(RunnerError, match="FileNotFoundError"):
        r.end("FINISHED")
    run = only_run(where.uri)
    assert run.info.status == "FAILED" and "FileNotFoundError" in run.data.tags["runner.error"]


def test_a_failing_report_part_is_a_warning_named_in_one_tag(kind, where, caplog):
    from runner.report.inputs import _head, log_inputs

    r = recorder(kind, where).start_run("a run")
    x, y = np.arange(12, dtype=np.float32).reshape(4, 3), np.arange(4)
    r.submit(log_inputs, "toy", {"runner.dataset": "toy"}, [("train", _head(x), _head(y))])  # a function, not a name
    r.submit(log_inputs, "toy", {}, "not a list of splits")  # fails where the writer is
    r.report_failed("curves", "ValueError: drawn here")  # a part that failed in the run's process
    r.set_tags({"after": "yes"})
    r.end("FINISHED")
    run = only_run(where.uri)
    assert run.info.status == "FINISHED" and run.data.tags["after"] == "yes"
    assert run.data.tags["runner.report.failed"] == "curves, log_inputs"  # both, in one place
    assert len(run.inputs.dataset_inputs) == 1 and run.inputs.dataset_inputs[0].dataset.name == "toy"
    assert "report: log_inputs failed: ValueError" in caplog.text and "report: curves failed" in caplog.text


def test_release_returns_once_the_file_is_in_the_store(kind, where, tmp_path):
    r = recorder(kind, where).start_run("a run")
    path = tmp_path / "checkpoint.npz"
    for content in (b"first", b"second"):
        r.release(path)  # the previous copy is done: the file may be replaced
        path.write_bytes(content)
        r.log_artifact(path, "checkpoints")
    r.release(path)
    r.in_store()
    run_id = r.run_id
    r.end("FINISHED")
    assert (
        Path(client_of(where.uri).download_artifacts(run_id, "checkpoints/checkpoint.npz", str(tmp_path / "d"))).read_bytes()
        == b"second"
    )


def test_reopen_refuses_a_live_run_and_continue_after_keeps_the_history_exact(kind, where):
    first = RunRecorder.in_process(where).start_run("a run", {"runner.pid": os.getppid()})  # a live process, not this one
    for step in range(1, 11):
        first.log_metrics({"train/loss": float(step)}, step)
    first.flush()
    run_id = first.run_id
    first.close()
    r = recorder(kind, Target(where.uri, None, "")).attach_run(run_id)
    with pytest.raises(RunnerError, match=rf"resume=x: run {run_id} is still running in process {os.getppid()} on "):
        r.reopen("x")
    r.set_tags({"runner.pid": 2**22 + 1})  # a process that is gone: killed hard
    r.reopen("x")
    found = r.continue_after(6)
    assert found["count"] == 4 and found["deleted"] and found["keys"] == ["train/loss"]  # a SQL store: deleted
    assert r.history(["train/loss"]) == {"train/loss": [(s, float(s)) for s in range(1, 7)]}
    for step in range(7, 9):
        r.log_metrics({"train/loss": float(step)}, step)
    assert r.status() == ("RUNNING", "a run")
    r.end("FINISHED")
    run = only_run(where.uri)
    assert run.info.status == "FINISHED" and "exited without ending the run" in run.data.tags["runner.interrupted"]
    assert run.data.tags["runner.pid"] == str(os.getpid())
    assert stored_history(where.uri, run_id, "train/loss") == [(s, float(s)) for s in range(1, 9)]


def test_a_run_in_a_store_that_does_not_answer_is_one_line_at_once(kind, server_503):  # noqa: F811
    began = time.time()
    r = recorder(kind, Target("http://127.0.0.1:9", None, ""))
    try:
        with pytest.raises(RunnerError, match=r"^tracking: the MLflow server http://127.0.0.1:9 does not answer"):
            r.attach_run("0123")
    finally:
        r.close()
    r = recorder(kind, Target("http://127.0.0.1:9", None, ""))
    try:
        with pytest.raises(RunnerError, match=rf"^tracking: the MLflow server {server_503} answers 503"):
            r.attach_run("0123", uri=server_503)  # the checkpoint's store, given late
    finally:
        r.close()
    assert time.time() - began < 30


# --------------------------------------------------------------------------- a store that stops answering: the spill file


class Server:
    """A real ``mlflow server`` on 127.0.0.1 (a SQLite backend, an artifact root), stopped and started again at will."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
                *("--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}"),
                *("--artifacts-destination", str(self.folder / "server-artifacts")),
            ],
            cwd=self.folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until_healthy(self.url, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def server(tmp_path):
    found = Server(tmp_path)
    found.start()
    try:
        yield found
    finally:
        found.stop()


def test_a_store_that_stops_answering_keeps_everything_in_a_spill_file_that_replays_exactly(kind, server, tmp_path):
    from runner.tracking import spill

    where = Target(server.url, None, "tracking")
    run_dir = tmp_path / "run"
    r = recorder(kind, where, spill_dir=run_dir).start_run("a run")
    logged = []
    for step in range(1, 301):
        r.log_metrics({"train/loss": 1.0 / step}, step)
        logged.append((step, 1.0 / step))
    r.flush()
    r.in_store()
    run_id = r.run_id
    server.stop()  # the server goes away mid-run
    for step in range(301, 601):
        r.log_metrics({"train/loss": 1.0 / step}, step)
        logged.append((step, 1.0 / step))
    began = time.time()
    with pytest.raises(RunnerError) as raised:  # at the next check at the latest
        r.flush()
        for _ in range(600):
            r.check()
            time.sleep(0.05)
    line = str(raised.value)
    kept = run_dir / spill.NAME
    assert f"is kept in {kept}; once the store answers, continue the run with: python -m runner" in line
    assert f"+resume={run_dir}" in line and time.time() - began < 60
    r.log_metrics({"train/loss": 0.0}, 601)  # later requests go to the file too
    logged.append((601, 0.0))
    r.end("FAILED", {"runner.error": line})
    header, requests = spill.read(kept)
    assert header["run_id"] == run_id and header["uri"] == server.url and requests[-1][1] == "end"
    with pytest.raises(RunnerError, match="still cannot take what"):  # the store is still down: the file is kept
        spill.replay(kept)
    assert kept.is_file()
    server.start()  # back, with its store as it was
    assert spill.replay(kept) == run_id
    assert not kept.exists() and (run_dir / (spill.NAME + ".replayed")).is_file()
    client = client_of(server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["runner.error"] == line
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")) == logged  # none lost, none twice


def test_a_spill_file_is_json_lines_that_name_no_code_outside_runner(tmp_path):
    from runner.tracking import spill

    kept = spill.Spill(tmp_path, {"uri": "sqlite:///x.db", "experiment": "e", "artifact_location": None, "run_id": "r"})
    from runner.report.inputs import log_inputs

    kept.write((1, "log_batch", (), {"metrics": [("m", float("nan"), 1, 2)]}))
    kept.write((2, "report_part", (log_inputs, ("toy", {}, [("train", (np.arange(3), (3,), "int64"))]), {}), {}))
    kept.write((3, "barrier", (), {}))  # not kept: only writes are
    kept.close()
    lines = (tmp_path / spill.NAME).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    header, requests = spill.read(tmp_path / spill.NAME)
    assert header["format"] == "runner-spill/1" and [r[1] for r in requests] == ["log_batch", "report_part"]
    assert requests[1][2][0] is log_inputs and np.array_equal(requests[1][2][1][2][0][1][0], np.arange(3))
    with open(tmp_path / spill.NAME, "a") as f:
        f.write(json.dumps({"seq": 4, "op": "report_part", "args": [{"$function": "os:system"}, ["true"], {}], "kwargs": {}}))
        f.write("\n")
    with pytest.raises(RunnerError, match="refusing to call os:system"):
        spill.read(tmp_path / spill.NAME)


def test_a_run_that_ended_after_the_stale_search_is_not_marked_killed(where):
    """A run starting reaps the RUNNING runs of dead processes (runner.tracking.experiments.reap_stale_runs). Another
    run that the search saw RUNNING, and that ended FINISHED before its process exited, must stay FINISHED (seen as a
    flaky test_concurrency[4-in-process]: 4 runs started together, one marked KILLED after it had finished)."""
    from runner.tracking.experiments import reap_stale_runs

    client = client_of(where.uri)
    experiment_id = client.create_experiment("stale")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = {"runner.host": socket.gethostname(), "runner.pid": dead.stdout.strip()}  # a process that has exited
    finished, stale = (client.create_run(experiment_id, tags=owner) for _ in range(2))
    snapshot = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")  # both RUNNING when searched
    client.set_terminated(finished.info.run_id, "FINISHED")  # then one ends, and its process exits

    class SearchedBefore:  # the store itself, except that the search is the one made before that end
        def __getattr__(self, name):
            return getattr(client, name)

        def search_runs(self, *args, **kwargs):
            return snapshot

    reap_stale_runs(SearchedBefore())
    assert client.get_run(finished.info.run_id).info.status == "FINISHED"
    assert client.get_run(stale.info.run_id).info.status == "KILLED"  # the one truly left RUNNING is reaped
