"""Ctrl-C and SIGTERM end a run honestly: KILLED, with a checkpoint, exit status 130 / 143.

While training, the first signal is deferred to the end of the current step, where the state is
consistent and a checkpoint can be written; a second one stops at once. Outside training a signal
stops at once. Either way ``Interrupted`` (a BaseException, like KeyboardInterrupt) carries the signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

#: What ``signal.signal`` takes and returns: a function, SIG_DFL/SIG_IGN, or None (set outside Python).
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Interrupted(BaseException):
    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class Signals:
    """Context manager installing SIGINT/SIGTERM handlers (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.deferring = False
        self._previous: dict[int, Handler] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.deferring and self.pending is None:
            self.pending = signum  # stop at the end of this step
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    def check(self) -> None:
        """Raise the deferred signal, if one came."""
        if self.pending is not None:
            raise Interrupted(self.pending)
