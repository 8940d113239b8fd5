"""The transport to a child process that writes the run: ``python -m runner.tracking.sidecar``.

The run's process never imports MLflow: the child is started at once (its ``import mlflow``, ~1 s,
overlaps the run's data loading), and every request is a pickle on its stdin (microseconds), carried
out in order by the same ``runner.tracking.writer.Writer`` the in-process transport uses, on the other
core. Answers come back on its stdout, read by a thread as they come. A request may carry a report
part's function: pickle sends it by reference (module and name), the child imports it. In a sweep's process the
child is a fork of the sweep's warm zygote instead, with everything imported (runner.tracking.zygote).
"""

from __future__ import annotations

import logging
import pickle
import queue
import signal
import subprocess
import sys
import threading

from runner.tracking import zygote
from runner.tracking.store import bound_http_retries
from runner.tracking.transport import LOST, Lost

log = logging.getLogger("runner.tracking")


class ChildProcess:
    """Requests to the child process, answers from it."""

    def __init__(self, painter: bool = True) -> None:
        bound_http_retries()  # inherited by the child
        forked = zygote.sidecar(painter)  # in a sweep's process (Hydra's basic launcher): a fork of its warm zygote
        if forked is not None:
            self._proc, self._stdin, self._stdout = forked
        else:
            command = [sys.executable, "-m", "runner.tracking.sidecar", *([] if painter else ["--no-painter"])]
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        self.pid = self._proc.pid
        # the answers, read by a thread as they come: a failure the child reports is seen at the next check even
        # when it arrived with an earlier answer (a select() on the pipe misses what the reader's buffer holds)
        self._inbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="runner-writer-answers").start()

    def send(self, request: tuple) -> None:
        try:
            pickle.dump(request, self._stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise Lost() from None

    def receive(self, block: bool = True, timeout: float | None = None):
        """The next answer; None when none has come (not blocking, or after ``timeout``); LOST once the child is gone."""
        try:
            answer = self._inbox.get(block=block, timeout=timeout)
        except queue.Empty:
            return None
        if answer == LOST:
            self._inbox.put(LOST)  # every later read sees it too
        return answer

    def _read(self) -> None:
        try:
            while True:
                self._inbox.put(pickle.load(self._stdout))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            self._inbox.put(LOST)  # the child is gone

    def lost_cause(self, last_step: int) -> str:
        """Why the child is gone, one line (its exit status), once it has exited."""
        try:
            self._stdin.close()
        except OSError:
            pass
        code: int | None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = self._proc.poll()
        how = f"signal {-code}, {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return f"the MLflow sidecar process (runner.tracking.sidecar, pid {self.pid}) died ({how}) after step {last_step}"

    def kill(self) -> None:
        """Stop it at once (nothing was ever sent)."""
        if self._proc.poll() is None:
            self._proc.kill()

    def close(self, wait: bool = True) -> None:
        """End of input: the child carries out what it was sent, then exits."""
        try:
            if not self._stdin.closed:
                self._stdin.close()
        except OSError:
            pass
        if not wait:
            return
        try:
            self._proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log.warning(
                "the MLflow process (runner.tracking.sidecar, pid %d) is still writing; left to finish on its own", self.pid
            )
