"""The sidecar's painter (runner.tracking.painter): a second process that draws the run's pictures beside the sidecar.

A picture is a painting: plain data in, (files, failure) out (``Writer.paint``). The first painting (the report's
warm-up) is drawn in the writer's process, which then starts the painter (on Linux a fork of itself, as it is then;
elsewhere a fresh interpreter that is handed the first painting too); later ones go to the painter when it is idle and are
drawn where the writer is otherwise; what the painter drew is logged at the next barrier, and a painting that
failed there is a part of the report that failed (a warning and the tag ``runner.report.failed``), not the run.
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


def test_paintings_go_to_the_idle_painter_and_are_logged_at_the_barrier(tmp_path):
    writer, client = opened(tmp_path, painter=True)
    out = str(tmp_path)
    writer.paint(note_pid, {"out": out, "name": "warm"})  # starts the painter; drawn here (and there, unlogged)
    assert writer._painter is not None
    wait_idle(writer)
    writer.paint(note_pid, {"out": out, "name": "there"})  # the painter is idle: it takes it
    writer.paint(note_pid, {"out": out, "name": "here"})  # the painter is busy: drawn here at once
    writer.barrier()
    drawn = pids(client, writer.run_id, tmp_path)
    assert drawn["warm"] == drawn["here"] == os.getpid()
    assert drawn["there"] != os.getpid()
    writer.end("FINISHED")
    assert writer._painter is None
    assert client.get_run(writer.run_id).info.status == "FINISHED"


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
    assert writer._painter is None and not [c for c in __import__("multiprocessing").active_children() if c.is_alive()]


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
