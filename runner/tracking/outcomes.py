"""What carrying out one request can come to: the status of the writer's answer ``(seq, status, value)``,
and how an exception is read as one.

- ``ok``: done, ``value`` its result;
- ``refused``: the artifact store refused a write (permissions, a full disk), ``value`` (reason,
  folder): metrics live elsewhere and are still written; the run decides when to stop;
- ``part failed``: a part of the run's report failed, ``value`` (name, reason): a warning;
- ``error``: a request the user's situation refuses (``reopen`` of a run still running), ``value`` the
  line to show; the store is fine;
- ``failed`` / ``unreachable``: the store failed (unreachable: it does not answer, so what was not
  written can be kept and written later, runner.tracking.spill); the writer then drops every later
  request (``dropped``) but the run's ``end``, which is still tried: a run must not stay RUNNING.

``refused``, ``unreachable`` and ``failure_text`` read an exception this way for ``Writer.apply``
(runner.tracking.writer, which re-exports these names); the run side (runner.tracking.recorder) and the
replay of a spill file (runner.tracking.spill) act on the statuses.
"""

from __future__ import annotations

import errno
import os

from runner.api import RunnerError

OK, REFUSED, PART_FAILED, ERROR, FAILED, UNREACHABLE, DROPPED = (
    "ok",
    "refused",
    "part failed",
    "error",
    "failed",
    "unreachable",
    "dropped",
)

#: the errors that mean the artifact store refuses a write (not a missing source file)
REFUSED_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


class PartFailed(Exception):
    """A part of the run's report failed: a warning, the run goes on."""

    def __init__(self, name: str, reason: str):
        super().__init__(name, reason)
        self.name, self.reason = name, reason


def refused(e: BaseException) -> tuple[str, str] | None:
    """(the reason, the folder to fix) when ``e`` is the artifact store refusing a write; None otherwise. The folder:
    the outermost unwritable one around the refused path (``chmod -R a-w`` on the artifact root refuses the run's
    folder and the models' beside it: fixing only the deepest one would fail the next write)."""
    if not isinstance(e, OSError) or e.errno not in REFUSED_ERRNOS:
        return None
    folder = os.path.abspath(e.filename) if e.filename else ""
    while folder and not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # the deepest folder that exists
    while folder and os.path.dirname(folder) != folder and not os.access(os.path.dirname(folder), os.W_OK):
        folder = os.path.dirname(folder)
    return f"{type(e).__name__}: {e}", folder


#: what a store that does not answer (a server down, behind a failing proxy; a database file gone) says
UNREACHABLE_SIGNS = (
    "does not answer",
    "max retries exceeded",
    "connection refused",
    "connectionerror",
    "connection aborted",
    "remotedisconnected",
    "too many 50",
    "answers 50",
    "service unavailable",
    "bad gateway",
    "gateway timeout",
    "timed out",
    "unable to open database file",
    "disk i/o error",
    "name or service not known",
    "temporary failure in name resolution",
)


def unreachable(e: BaseException) -> bool:
    """Whether ``e`` says the store does not answer (so the same requests can be written once it does)."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(sign in text for sign in UNREACHABLE_SIGNS)


def failure_text(e: BaseException) -> str:
    """The reason a request failed, one line: runner's own errors (e.g. a half-created store and its fix) as they are."""
    if isinstance(e, RunnerError):
        return str(e).removeprefix("tracking: ")
    return f"{type(e).__name__}: {e}"
