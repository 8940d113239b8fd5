"""The sidecar's painter (runner.tracking.painter): processes that draw the run's pictures beside the sidecar.

A picture is a painting: plain data in, (files, failure) out (``Writer.paint``). The first painting (the report's
warm-up) is drawn in the writer's process, which then starts the painter: on Linux two forks of itself, as it is
then, that take every later painting from one queue; elsewhere one fresh interpreter that is handed the first
painting too, and later ones when it is idle (drawn where the writer is otherwise). What the painter drew is logged
at the next barrier, in the order the paintings were asked for, and a painting that failed there is a part of the
report that failed (a warning and the tag ``runner.report.failed``), not the run. A painting that waits behind other
requests in the sidecar is handed to the painter as soon as it is read (``Writer.early``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runner.tracking.outcomes import PartFailed
from runner.tracking.store import default_store
from runner.tracking.writer import Writer


def note_pid(*, out: str, name: str) -> tuple[list, None]:
    """A painting: a file naming the process that drew it."""
    path = Path(out) / f"{name}.txt"
    path.write_text(str(os.getpid()))
    return [(str(path), "notes")], None


#: set by a test in this process before the painter starts: a forked painter sees it, a fresh interpreter would not
INHERITED: dict[str, str] = {}


def family(*, out: str) -> tuple[list, None]:
    """A painting: a file naming the process that drew it, its parent, and what it inherited."""
    path = Path(out) / "family.json"
    path.write_text(json.dumps({"pid": os.getpid(), "parent": os.getppid(), "inherited": INHERITED.get("mark")}))
    return [(str(path), "notes")], None


def fail(*, out: str) -> tuple[list, None]:
    raise ValueError("no picture today")


def half(*, out: str) -> tuple[list, str]:
    """A painting that drew one of its two pictures."""
    path = Path(out) / "half.txt"
    path.write_text(str(os.getpid()))
    return [(str(path), "notes")], "second: KeyError: 'gone'"


def opened(tmp_path: Path, painter: bool) -> tuple[Writer, MlflowClient]:
    uri, root = default_store(tmp_path / "outputs")
    writer = Writer(painter=painter)
    writer.open(uri, "paintings", root)
    writer.create_run("a run", {})
    return writer, MlflowClient(uri)


def pids(client: MlflowClient, run_id: str, tmp_path: Path) -> dict[str, int]:
    got = client.download_artifacts(run_id, "notes", str(tmp_path / "down"))
    return {p.stem: int(p.read_text()) for p in Path(got).iterdir()}


def wait_idle(writer: Writer, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not writer._painter.idle():  # a spawned painter's imports take about a second
        assert time.monotonic() < deadline, "the painter never finished warming up"
        time.sleep(0.05)


def test_a_spawned_painter_takes_paintings_when_idle_and_they_are_logged_at_the_barrier(tmp_path, monkeypatch):
    from runner.tracking import painter

    monkeypatch.setattr(painter, "forks", lambda: False)  # as on macOS and Windows: one fresh interpreter
    writer, client = opened(tmp_path, painter=True)
    out = str(tmp_path)
    writer.paint(note_pid, {"out": out, "name": "warm"})  # starts the painter; drawn here (and there, unlogged)
    assert writer._painter is not None and writer._painter.workers == 1
    wait_idle(writer)
    writer.paint(note_pid, {"out": out, "name": "there"})  # the painter is idle: it takes it
    writer.paint(note_pid, {"out": out, "name": "here"})  # the painter is busy: drawn here at once
    writer.barrier()
    drawn = pids(client, writer.run_id, tmp_path)
    assert drawn["warm"] == drawn["here"] == os.getpid()
    assert drawn["there"] != os.getpid()
    writer.end("FINISHED")
    assert client.get_run(writer.run_id).info.status == "FINISHED"
    writer.stop_painting()  # the sidecar's end of input, after the end
    assert writer._painter is None


def no_painter_left(seconds: float = 10) -> bool:
    """No child process of this one is alive, within ``seconds``: the executor's own thread reaps the killed workers
    too, and a worker it is reaping can read as alive for that moment."""
    import multiprocessing

    deadline = time.monotonic() + seconds
    while [c for c in multiprocessing.active_children() if c.is_alive()] and time.monotonic() < deadline:
        time.sleep(0.05)
    return not [c for c in multiprocessing.active_children() if c.is_alive()]


def slow_note(*, out: str, name: str, seconds: float) -> tuple[list, None]:
    """A painting that takes ``seconds``, naming the process that drew it."""
    time.sleep(seconds)
    return note_pid(out=out, name=name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the painter is forked on Linux only")
def test_two_forked_painters_share_the_paintings_and_they_are_logged_in_order(tmp_path):
    writer, client = opened(tmp_path, painter=True)
    out = str(tmp_path)
    writer.paint(note_pid, {"out": out, "name": "warm"})
    assert writer._painter.workers == 2
    for name in ("first", "second"):  # each takes long enough that one worker cannot take both
        writer.paint(slow_note, {"out": out, "name": name, "seconds": 0.5})
    writer.paint(note_pid, {"out": out, "name": "third"})  # both painters busy: it waits in their queue, not drawn here
    writer.barrier()
    drawn = pids(client, writer.run_id, tmp_path)
    assert drawn["warm"] == os.getpid()
    assert os.getpid() not in (drawn["first"], drawn["second"], drawn["third"])
    assert drawn["first"] != drawn["second"]  # drawn side by side
    logged = [m.path for m in client.list_artifacts(writer.run_id, "notes")]
    assert sorted(logged) == ["notes/first.txt", "notes/second.txt", "notes/third.txt", "notes/warm.txt"]
    writer.end("FINISHED")
    assert writer._painter is not None  # stopped at the end of input that follows, off the run's path
    writer.stop_painting()
    assert writer._painter is None and no_painter_left()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the painter is forked on Linux only")
def test_a_painting_handed_over_early_is_drawn_before_its_turn_and_logged_once_at_its_turn(tmp_path):
    from runner.tracking.writer import DROPPED, OK

    writer, client = opened(tmp_path, painter=True)
    out = str(tmp_path)
    writer.paint(note_pid, {"out": out, "name": "warm"})
    writer.early(7, "paint", (slow_note, {"out": out, "name": "early", "seconds": 0.3}), {})
    writer.early(8, "log_batch", (), {"tags": [("a", "b")]})  # not a painting: left to its turn
    assert list(writer._early) == [7]
    assert writer.apply(8, "log_batch", (), {"tags": [("a", "b")]})[1] == OK
    assert writer.apply(7, "paint", (slow_note, {"out": out, "name": "early", "seconds": 0.3}), {}) == (7, OK, None)
    assert not writer._early  # its turn took note of it: not drawn a second time
    writer.barrier()
    assert pids(client, writer.run_id, tmp_path)["early"] != os.getpid()
    writer.failure = "the store went away"  # after a failure nothing more is handed over: its turn is dropped
    writer.early(9, "paint", (note_pid, {"out": out, "name": "late"}), {})
    assert not writer._early and writer.apply(9, "paint", (note_pid, {"out": out, "name": "late"}), {})[1] == DROPPED
    writer.end("FINISHED")
    writer.stop_painting()


def stamped(*, out: str, name: str) -> tuple[list, None]:
    """A painting that notes when it was drawn."""
    path = Path(out) / f"{name}.txt"
    path.write_text(repr(time.time()))
    return [(str(path), "stamps")], None


def slow_part(client, run_id: str, experiment_id: str, *, out: str, seconds: float) -> None:
    """A part of the report that is MLflow's own work and takes ``seconds``; notes when it ended."""
    time.sleep(seconds)
    (Path(out) / "slow_part_ended.txt").write_text(repr(time.time()))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the painter is forked on Linux only")
def test_the_sidecar_draws_a_painting_while_the_requests_before_it_are_carried_out(tmp_path, monkeypatch):
    """A real sidecar process: a painting sent behind a slow request is drawn before that request ends."""
    from runner.tracking.child_process import ChildProcess
    from runner.tracking.writer import OK

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    uri, root = default_store(tmp_path / "outputs")
    out = str(tmp_path)
    child = ChildProcess(painter=True)
    try:
        child.send((1, "open", (uri, "early", root), {}))
        child.send((2, "create_run", ("a run", {}), {}))
        child.send((3, "paint", (stamped, {"out": out, "name": "warm"}), {}))  # starts the painters
        answers = [child.receive(timeout=120) for _ in range(3)]
        assert [a[1] for a in answers] == [OK] * 3, answers
        run_id = answers[1][2]
        child.send((4, "report_part", (slow_part, (), {"out": out, "seconds": 1.5}), {}))
        child.send((5, "paint", (stamped, {"out": out, "name": "behind"}), {}))
        child.send((6, "barrier", (), {}))
        answers = [child.receive(timeout=120) for _ in range(3)]
        assert [a[:2] for a in answers] == [(4, OK), (5, OK), (6, OK)], answers
        child.send((7, "end", ("FINISHED",), {}))
        assert child.receive(timeout=120)[:2] == (7, OK)
    finally:
        child.close()
    drawn = float((tmp_path / "behind.txt").read_text())
    assert drawn < float((tmp_path / "slow_part_ended.txt").read_text()) - 0.5  # not after the slow part: beside it
    client = MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(run_id, "stamps")} == {"stamps/warm.txt", "stamps/behind.txt"}
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the painter is forked on Linux only")
def test_on_linux_the_painter_is_a_fork_of_the_warmed_writer_process(tmp_path):
    from runner.tracking import painter

    assert painter.forks()
    writer, client = opened(tmp_path, painter=True)
    INHERITED["mark"] = "set before the first painting"
    try:
        writer.paint(note_pid, {"out": str(tmp_path), "name": "warm"})
        wait_idle(writer)
        writer.paint(family, {"out": str(tmp_path)})
        writer.barrier()
    finally:
        INHERITED.clear()
    got = Path(client.download_artifacts(writer.run_id, "notes/family.json", str(tmp_path / "down")))
    drawn = json.loads(got.read_text())
    assert drawn["pid"] != os.getpid() and drawn["parent"] == os.getpid()
    assert drawn["inherited"] == "set before the first painting"  # this process's memory, as it was: no imports again
    writer.end("FINISHED")
    assert writer._painter is not None  # stopped at the end of input that follows, off the run's path
    writer.stop_painting()
    assert writer._painter is None and no_painter_left()


def test_a_painting_that_fails_in_the_painter_is_a_failed_part_at_the_barrier(tmp_path):
    writer, client = opened(tmp_path, painter=True)
    writer.paint(note_pid, {"out": str(tmp_path), "name": "warm"})
    wait_idle(writer)
    writer.paint(fail, {"out": str(tmp_path)})
    with pytest.raises(PartFailed) as failed:
        writer.barrier()
    assert failed.value.name == "fail" and failed.value.reason == "ValueError: no picture today"
    wait_idle(writer)
    writer.paint(half, {"out": str(tmp_path)})  # what it drew is logged, what it did not is the failure
    with pytest.raises(PartFailed, match="second: KeyError"):
        writer.barrier()
    assert "half" in pids(client, writer.run_id, tmp_path)
    writer.end("FINISHED")
    writer.stop_painting()


def test_without_a_painter_everything_is_drawn_here(tmp_path):
    writer, client = opened(tmp_path, painter=False)
    for name in ("one", "two"):
        writer.paint(note_pid, {"out": str(tmp_path), "name": name})
    with pytest.raises(PartFailed, match="no picture today"):  # drawn here: failed at once
        writer.paint(fail, {"out": str(tmp_path)})
    writer.barrier()
    assert writer._painter is None
    assert set(pids(client, writer.run_id, tmp_path).values()) == {os.getpid()}
    writer.end("FINISHED")
    writer.stop_painting()


def test_the_painter_wherever_it_is_forked_and_else_only_where_a_core_is_left_over(monkeypatch):
    """``runner.run.compose.painter_allowed``: a forked painter costs nothing until it draws; a spawned one only where a core
    is left over; never in a Ray task."""
    from omegaconf import OmegaConf

    from runner.run import compose
    from runner.tracking import painter

    cores = len(os.sched_getaffinity(0))
    busy, basic = OmegaConf.create({"threads": cores}), OmegaConf.create({"launcher": {}})
    assert compose.painter_allowed(busy, basic) == painter.forks()
    monkeypatch.setattr(painter, "forks", lambda: False)
    assert not compose.painter_allowed(busy, basic)
    assert compose.painter_allowed(OmegaConf.create({"threads": 1}), basic) == (cores > 1)


def test_the_painter_only_where_a_core_is_left_over():
    """``runner.run.compose.spare_core``: the run's BLAS threads times the jobs beside it must leave a core."""
    from omegaconf import OmegaConf

    from runner.run.compose import spare_core

    cores = len(os.sched_getaffinity(0))
    basic, joblib = OmegaConf.create({"launcher": {}}), OmegaConf.create({"launcher": {"n_jobs": cores}})
    assert not spare_core(OmegaConf.create({"threads": cores}), basic)
    assert not spare_core(OmegaConf.create({"threads": 1}), joblib)
    assert spare_core(OmegaConf.create({"threads": 1}), basic) == (cores > 1)


@pytest.mark.parametrize("where", ["sidecar", "spawned painter"])
def test_the_warm_up_loads_the_pyfunc_models_modules_only_where_mlflow_is_written(where):
    """The report's warm-up (``runner.report.artifacts.warm``) imports ``mlflow.pyfunc`` where MLflow is already loaded
    (the sidecar: the run's end then does not import it), never in a process that has no MLflow (a spawned painter)."""
    import subprocess

    first = "import mlflow.tracking; " if where == "sidecar" else ""
    code = f"{first}import sys; from runner.report.artifacts import warm; warm(); print('mlflow.pyfunc' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == str(where == "sidecar")
