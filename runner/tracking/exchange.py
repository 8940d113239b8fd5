"""The run side of the exchange with the writer, which every ``RunRecorder`` (runner.tracking.recorder) is built on.

Requests ``(seq, op, args, kwargs)`` go out over a transport, in order; answers ``(seq, status, value)`` (the
statuses: runner.tracking.outcomes) come back and are turned into what the run sees: a result waited for, an
artifact store that refused a write, a failed report part, or the store's failure, raised at the run's next
``check``, ``flush``, wait for an answer, or ``end``.

Every request is kept in a journal until it is answered. If the child process dies, the run's process opens
the store itself (``InProcess``) and sends the journal again (MLflow's SQL store ignores a metric point written
twice with the same timestamp), then every later request. If the store does not answer (a server down, or
the child dead and the store not reachable from here either), the journal and every later request go to a
spill file beside the run (runner.tracking.spill) that ``+resume`` writes into the store, and the run stops
at its next check with one line saying where the file is and how to continue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.api import RunnerError
from runner.tracking.store import Target
from runner.tracking.transport import LOST, InProcess, Lost

log = logging.getLogger("runner.tracking")


class Exchange:
    """Requests to a writer and its answers, the journal, taking over from a dead child process, the spill file.
    ``RunRecorder`` is this and what a run records through it."""

    # what the recorder built on this provides (RunRecorder): a failed part of the run's report is named at the
    # run's end; the run is tagged when recording goes on in this process
    report_failed: Callable[..., None]
    set_tags: Callable[[Mapping[str, Any]], None]

    def __init__(self, transport, where: Target, spill_dir: Path | None = None):
        self.uri, self.where = where.uri, where
        self._transport = transport
        self._spill_dir = Path(spill_dir) if spill_dir is not None else _hydra_output_dir()
        self._seq = 0
        self._journal: dict[int, tuple] = {}  # requests sent and not yet answered as done, in order
        self._wanted: set[int] = set()  # the requests whose answer is waited for
        self._replies: dict[int, Any] = {}
        self._done = 0  # the last request answered
        self._run_seq: int | None = None
        self._run_id: str | None = None
        self._last_step = 0  # the last step metrics were logged at (said when the child process died)
        self._failure: str | None = None  # the store's failure (raised once)
        self._deferred: RunnerError | None = None  # a failure found while sending: raised at the next check
        self._said = False  # the store's failure has been raised to the run
        self._spill: Any = None  # runner.tracking.spill.Spill, once the store does not answer
        self._closed = False
        self.artifact_failure: tuple[str, str] | None = None

    def _close(self, wait: bool = True) -> None:
        self._closed = True
        if self._spill is not None:
            self._spill.close()
        if self._transport is not None:
            self._transport.close(wait)

    # -- requests and answers
    def _send(self, op: str, *args: Any, reply: bool = False, **kwargs: Any) -> int:
        self._seq += 1
        seq = self._seq
        request = (seq, op, args, kwargs)
        if self._spill is not None:  # the store does not answer: kept on disk
            self._spill.write(request)
            if reply:
                self._replies[seq] = None
            return seq
        if self._closed or self._transport is None:  # after the end (or the store's failure, already raised)
            if reply:
                self._failed(self._failure or "the run has ended")
            return seq
        if self._failure is None or op == "end":  # after a failure only the end is still tried
            self._journal[seq] = request
        if reply:
            self._wanted.add(seq)
        try:
            self._transport.send(request)
        except Lost:
            self._lost()
        return seq

    def _lost(self) -> None:
        """The child process is gone: take over (a failure to is raised at the next check)."""
        if self._closed or self._spill is not None or isinstance(self._transport, InProcess):
            return
        try:
            self._take_over()
        except RunnerError as e:
            self._deferred, self._said = self._deferred or e, False

    def _receive(self, block: bool = True) -> bool:
        """Take one answer (waiting for it when ``block``); False when none has come. A failure is raised."""
        if self._deferred is not None:
            error, self._deferred, self._said = self._deferred, None, True
            raise error
        if self._transport is None:
            return False
        answer = self._transport.receive(block)
        if answer is None:
            return False
        if answer == LOST:
            if self._closed:
                self._failed(self._failure or "the run has ended")
            self._lost()
            return True
        self._note(answer)
        return True

    def _note(self, answer: tuple) -> None:
        from runner.tracking.writer import DROPPED, ERROR, FAILED, OK, PART_FAILED, REFUSED, UNREACHABLE

        seq, status, value = answer
        op = self._journal.get(seq, (seq, ""))[1]
        self._done = max(self._done, seq)
        wanted = seq in self._wanted
        self._wanted.discard(seq)
        if status not in (FAILED, UNREACHABLE, DROPPED):
            self._journal.pop(seq, None)
        if status == OK:
            if seq == self._run_seq:
                self._run_id = value
            if wanted:
                self._replies[seq] = value
            return
        if wanted:
            self._replies[seq] = None
        if status == REFUSED:  # the artifact store refused a write: the run decides when to stop (runner.run.task)
            self.artifact_failure = self.artifact_failure or tuple(value)
        elif status == PART_FAILED:
            self.report_failed(*value)
        elif status == ERROR:  # the user's situation, said as it is (e.g. resuming a run still running)
            raise RunnerError(value)
        elif status == UNREACHABLE and op in ("open", "attach"):  # nothing recorded yet to keep: said as it is
            self._failure, self._said = self._failure or value, True
            raise RunnerError(f"tracking: {value}")
        elif status == UNREACHABLE:
            self._spill_from_here(value)
        elif status == FAILED or wanted:
            self._failed(value)

    def _wait(self, seq: int | None) -> Any:
        if seq is None:
            return None
        while seq not in self._replies:
            if not self._receive() and seq not in self._replies:
                if self._transport is None or isinstance(self._transport, InProcess):
                    raise AssertionError(f"request {seq} was never answered")
        return self._replies.pop(seq)

    def _poll(self) -> None:
        """Read what came back without waiting: a failure is raised here."""
        while self._receive(block=False):
            pass

    def _failed(self, message: str):
        """Raise the store's failure. The writer drops later writes but still tries the run's end (see ``end``)."""
        self._failure, self._said = self._failure or message, True
        raise RunnerError(f"tracking: cannot record in the MLflow store {self.uri!r}: {message}")

    # -- the child process died; the store does not answer
    def _take_over(self) -> None:
        """The child process died: open the store here and write what it had not answered; later requests are carried
        out here. If the store cannot be opened here either, what was not written goes to the spill file."""
        from runner.tracking.writer import OK

        dead = self._transport
        while True:  # the answers it sent before dying (the run's id among them)
            answer = dead.receive(True, timeout=10)
            if answer is None or answer == LOST:
                break
            try:
                self._note(answer)
            except RunnerError as e:  # the store failed just before: raised once the run's end can be written
                self._deferred, self._said = self._deferred or e, False
        if self._spill is not None:
            return
        cause = dead.lost_cause(self._last_step)
        pending = list(self._journal.values())
        log.warning("%s; recording goes on in this process (%d requests it had not confirmed written again)", cause, len(pending))
        local = InProcess()
        steps: list[tuple[int, str, tuple, dict]] = [
            (0, "open", (self.where.uri, self.where.experiment, self.where.artifact_location), {})
        ]
        if self._run_id is not None:
            steps.append((0, "attach", (self._run_id,), {}))
        for step in steps:
            _, status, value = local.writer.apply(*step)
            if status != OK:
                self._transport = None
                self._spill_from_here(f"{cause}, and this process could not open the store either: {value}")
        self._transport = local
        for request in pending:
            if request[1] != "open":
                local.send(request)
        self.set_tags({"runner.sidecar": f"{cause}; the run went on with MLflow in its own process"})

    def _spill_from_here(self, reason: str) -> None:
        """The store does not answer: the requests not written, and every later one, go to the spill file; raise the
        one line that says where it is and how to continue. Without a folder for it (outside a run): just raise."""
        from runner.tracking.spill import Spill

        folder = self._spill_dir
        if folder is None:
            self._failed(reason)
            return
        pending = [request for request in self._journal.values()]
        self._journal.clear()
        for seq in self._wanted:
            self._replies[seq] = None
        self._wanted.clear()
        self._spill = Spill(
            folder,
            {
                "uri": self.where.uri,
                "experiment": self.where.experiment,
                "artifact_location": self.where.artifact_location,
                "run_id": self._run_id,
                "reason": reason,
            },
        )
        for request in pending:
            self._spill.write(request)
        if self._transport is not None:
            self._transport.close(False)  # a child process drops what it was sent after the failure, and exits
            self._transport = None
        run = f"run {self._run_id}" if self._run_id else "the run"
        self._failed(
            f"{reason}; what {run} had not written ({self._spill.count} requests, and every later one, its end too) is "
            f"kept in {self._spill.path}; once the store answers, continue the run with: {continue_command(folder)}"
        )


def _hydra_output_dir() -> Path | None:
    """The run's folder, when Hydra runs this job (the spill file goes there, beside the checkpoints)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None
    except Exception:
        return None


def continue_command(folder: Path) -> str:
    """``python -m runner <this job's overrides> +resume=<folder>``."""
    overrides = "<the same overrides>"
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            task = HydraConfig.get().overrides.task
            overrides = " ".join(o for o in task if not o.lstrip("+").startswith(("resume=", "resume_sweep=")))
    except Exception:
        pass
    return f"python -m runner {overrides} +resume={folder}".replace("  ", " ")
