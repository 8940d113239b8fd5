"""What a run could not write to its store, kept on disk beside the run until ``+resume`` writes it: the spill file.

When the store stops answering mid-run (a tracking server down, its proxy answering 503; or the MLflow child
process dead and the run's own process unable to open the store either), the run's recorder writes the
requests the store has not confirmed, and every later one (the run's end and its reason among them), to
``<run dir>/tracking.spill.jsonl`` and stops at its next epoch's end. ``+resume=<run dir>`` (or the spill
file, or the checkpoint beside it, or the run's id) replays it into the store, then continues the run.

The format, JSON lines, one object a line, appended and fsync'ed one line at a time (a line cut short by a
crash is the last one, and is left out on replay):

- line 1, the header: ``{"format": "runner-spill/1", "uri": ..., "experiment": ..., "artifact_location": ...,
  "run_id": ... (null when the run was never created: a ``create_run`` line follows), "reason": ..., "host":
  ..., "pid": ..., "time": ...}``;
- then one request a line, in the order the run made them: ``{"seq": n, "op": ..., "args": [...], "kwargs":
  {...}}``, ``op`` one of ``runner.tracking.writer.Writer``'s writes (``create_run``, ``log_batch`` with
  ``metrics`` as ``[key, value, timestamp ms, step]``, ``log_artifact`` with the file's path, ``log_dict``,
  ``log_text``, ``report_part``, ``paint``, ``end``). A NumPy array is ``{"$ndarray": base64, "dtype": ..., "shape":
  [...]}``; a report part's function ``{"$function": "module:name"}``, resolved on replay only within
  runner's own modules. Metric points keep their timestamps: a point written twice is one point (MLflow's
  SQL store ignores an exact duplicate), so a replay cut short can be run again.

A file replayed completely is renamed ``tracking.spill.jsonl.replayed``.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from runner.api import RunnerError

log = logging.getLogger("runner.tracking")

NAME = "tracking.spill.jsonl"
FORMAT = "runner-spill/1"
#: the requests a spill file keeps (reads and barriers are not replayed)
REPLAYED = frozenset({"create_run", "log_batch", "log_artifact", "log_dict", "log_text", "report_part", "paint", "end"})


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {"$ndarray": base64.b64encode(array.tobytes()).decode(), "dtype": array.dtype.str, "shape": list(array.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if callable(value) and getattr(value, "__module__", None) and getattr(value, "__qualname__", None):
        return {"$function": f"{value.__module__}:{value.__qualname__}"}
    raise TypeError(f"cannot keep a {type(value).__name__} in a spill file")


def _decode(obj: dict) -> Any:
    if "$ndarray" in obj:
        data = base64.b64decode(obj["$ndarray"])
        return np.frombuffer(data, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    if "$function" in obj:
        module, _, name = obj["$function"].partition(":")
        if module != "runner" and not module.startswith("runner."):  # a file on disk names no other code
            raise RunnerError(f"spill file: refusing to call {obj['$function']}: not one of runner's own functions")
        function = getattr(importlib.import_module(module), name, None)
        if not callable(function) or getattr(function, "__module__", None) != module:
            raise RunnerError(f"spill file: {obj['$function']} is not a function of runner")
        return function
    return obj


class Spill:
    """A spill file being written: the header once, then one request a line (append-only, fsync'ed)."""

    def __init__(self, folder: Path, header: dict):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / NAME
        if path.exists():  # an earlier spill of this folder, not replayed yet: kept as it is
            path = folder / f"tracking.spill.{os.getpid()}.{int(time.time())}.jsonl"
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.count = 0
        header = {
            "format": FORMAT,
            **header,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._line(header)

    def _line(self, obj: dict) -> None:
        os.write(self._fd, (json.dumps(obj, default=_encode) + "\n").encode())
        os.fsync(self._fd)

    def write(self, request: tuple) -> None:
        seq, op, args, kwargs = request
        if op not in REPLAYED:
            return
        self._line({"seq": seq, "op": op, "args": list(args), "kwargs": dict(kwargs)})
        self.count += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read(path: Path) -> tuple[dict, list[tuple]]:
    """(header, requests) of a spill file; a last line cut short (a crash while writing it) is left out."""
    lines = Path(path).read_text().splitlines()
    if not lines:
        raise RunnerError(f"{path}: an empty spill file")
    header = json.loads(lines[0])
    if header.get("format") != FORMAT:
        raise RunnerError(f"{path}: not a spill file of runner ({FORMAT})")
    requests = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            entry = json.loads(line, object_hook=_decode)
        except json.JSONDecodeError:
            if number == len(lines):
                log.warning("%s: its last line was cut short (the process died writing it): left out", path)
                break
            raise RunnerError(f"{path}, line {number}: not a JSON line") from None
        requests.append((entry["seq"], entry["op"], tuple(entry["args"]), entry["kwargs"]))
    return header, requests


def replay(path: Path) -> str | None:
    """Write a spill file's requests into its store, in order; returns the run's id. The file is renamed
    ``*.replayed`` once every request is written; a failure leaves it in place (a replay can be run again)."""
    from runner.tracking.writer import ERROR, FAILED, OK, PART_FAILED, REFUSED, UNREACHABLE, Writer

    path = Path(path)
    header, requests = read(path)
    writer = Writer()
    try:
        writer.open(header["uri"], header["experiment"], header.get("artifact_location"))
        if header.get("run_id"):
            writer.attach(header["run_id"])
    except Exception as e:
        raise RunnerError(
            f"tracking: the store {header['uri']} still cannot take what {path} keeps ({str(e).removeprefix('tracking: ')}); "
            "it is kept: try again once the store answers"
        ) from None
    for request in requests:
        seq, status, value = writer.apply(*request)
        if status == PART_FAILED:
            log.warning("report: %s failed again while replaying %s: %s", value[0], path.name, value[1])
        elif status == REFUSED:
            log.warning("tracking: the artifact store refused %s from %s: %s", request[1], path.name, value[0])
        elif status in (FAILED, UNREACHABLE, ERROR):
            raise RunnerError(
                f"tracking: replaying {path} into {header['uri']} failed at its request {seq} ({request[1]}): {value}; "
                "the file is kept (the requests written are not written twice when it is replayed again)"
            )
        else:
            assert status == OK, status
    done = path.with_name(path.name + ".replayed")
    os.replace(path, done)
    log.info(
        "tracking: wrote the %d requests %s kept for run %s into %s (the file is now %s)",
        len(requests),
        path,
        writer.run_id,
        header["uri"],
        done.name,
    )
    return writer.run_id


def header_of(path: Path) -> dict | None:
    try:
        with open(path) as f:
            header = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) and header.get("format") == FORMAT else None


def files_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("tracking.spill*.jsonl")) if folder.is_dir() else []


def beside(resume: str) -> list[Path]:
    """The spill files a ``+resume`` argument names: the file itself, or those of the run folder it names (the run's
    folder, its ``checkpoints`` folder, or a checkpoint in it)."""
    path = Path(str(resume)).expanduser()
    if path.is_file() and header_of(path) is not None:
        return [path]
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        return []
    return files_in(path) or (files_in(path.parent) if path.name == "checkpoints" else [])


def of_run(run_id: str, outputs: Iterable[Path]) -> list[Path]:
    """The spill files of run ``run_id`` under the outputs folders (``<outputs>/runs/*/*``, ``<outputs>/sweeps/*/*/*``)."""
    found = []
    for folder in outputs:
        for pattern in (
            "runs/*/*/tracking.spill*.jsonl",
            "sweeps/*/*/*/tracking.spill*.jsonl",
            "sweeps/*/*/tracking.spill*.jsonl",
        ):
            found += [p for p in folder.glob(pattern) if (header_of(p) or {}).get("run_id") == run_id]
    return sorted(set(found))
