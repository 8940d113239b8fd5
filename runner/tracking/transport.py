"""What the run's recorder (runner.tracking.recorder) needs of a transport, and the in-process one.

A transport takes requests ``(seq, op, args, kwargs)`` to a ``runner.tracking.writer.Writer`` and brings its
answers ``(seq, status, value)`` back, in order: ``send(request)`` (raises ``Lost`` when the other end is gone),
``receive(block, timeout)`` (the next answer, None when none has come, ``LOST`` once the other end is gone),
``close(wait)``. ``InProcess`` (here) calls the writer at once; ``ChildProcess`` (runner.tracking.child_process)
pickles the requests to ``python -m runner.tracking.sidecar``, which calls the same class.
"""

from __future__ import annotations


class Lost(Exception):
    """The transport's other end is gone (the child process died)."""


#: what a transport's ``receive`` returns once its other end is gone
LOST = "lost"


class InProcess:
    """The transport that calls the ``Writer`` in the run's own process: each request carried out as it is sent."""

    def __init__(self, writer=None):
        if writer is None:
            from runner.tracking.writer import Writer

            writer = Writer()
        self.writer = writer
        self._answers: list = []

    def send(self, request: tuple) -> None:
        self._answers.append(self.writer.apply(*request))

    def receive(self, block: bool = True, timeout: float | None = None):
        return self._answers.pop(0) if self._answers else None

    def close(self, wait: bool = True) -> None:
        pass
