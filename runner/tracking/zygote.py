"""The sweep's warm process: each job's sidecar forked from it, with MLflow and the report's modules imported already.

A sidecar (runner.tracking.sidecar) started as a fresh interpreter imports MLflow, SQLAlchemy, matplotlib, pandas
and the report's modules: about 2 s of CPU, on the core the run does not train on. A sweep that Hydra's basic
launcher runs (every job in the sweep's own process, one after another; an Optuna search too) paid that for every
job, beside the job's training. There ``start`` (called by runner.sweeps.callback as the sweep starts) starts a
*zygote*: a ``multiprocessing`` forkserver that imports all of that once (runner.tracking.zygote_preload) while the
sweep records its parent run, and ``sidecar`` forks each job's sidecar from it, ready in milliseconds.

Why not fork the sweep's own process: it holds threads (the answer readers of finished jobs), the parent run's open
SQLite store and MLflow's HTTP sessions, which a fork would carry into the sidecar. The zygote has opened nothing
and runs no thread of ours; a forked sidecar gets its two pipes, the job's environment and working directory, and
then behaves as a started one (``runner.tracking.sidecar.forked``).

The zygote lives as long as the sweep's process (the forkserver exits when that process does). A single run, and
the jobs of other launchers (joblib's workers, Ray's tasks), start their sidecar as a fresh interpreter. Where the
zygote cannot be started or cannot fork, the sidecar is started as a fresh interpreter too (said at debug level).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger("runner.tracking")

#: what the zygote imports before it forks anything
PRELOAD = "runner.tracking.zygote_preload"

_context = None  # the forkserver context, once started in this process


def available() -> bool:
    import multiprocessing

    return sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()


def start() -> bool:
    """Start the zygote now (its imports overlap what this process does next); whether it runs."""
    global _context
    if _context is not None:
        return True
    if not available():
        return False
    try:
        import multiprocessing
        from multiprocessing import forkserver

        from runner.tracking.store import bound_http_retries

        bound_http_retries()  # the zygote's environment as a sidecar's (each fork gets the job's own too)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([PRELOAD])
        forkserver.ensure_running()
    except Exception as e:
        log.debug("no zygote: %s: %s", type(e).__name__, e)
        return False
    _context = context
    return True


def running() -> bool:
    return _context is not None


def sidecar(painter: bool):
    """(process, requests, answers): a sidecar forked from the zygote, its request pipe's writing end and its answer
    pipe's reading end; None when no zygote runs in this process, or it could not fork (it is not asked again)."""
    global _context
    if _context is None:
        return None
    import multiprocessing

    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    try:
        from runner.tracking.zygote_process import SidecarProcess

        process = SidecarProcess(
            target=_serve, args=(_Fd(requests_r), _Fd(answers_w), painter, dict(os.environ)), name="runner-sidecar"
        )
        process.start()
    except Exception as e:
        log.debug("the zygote could not fork a sidecar (%s: %s): starting one afresh", type(e).__name__, e)
        _context = None
        os.close(requests_w)
        os.close(answers_r)
        return None
    finally:
        os.close(requests_r)  # the sidecar's ends: it has them now
        os.close(answers_w)
    # multiprocessing joins the children it knows of at exit: a sidecar still writing (a store that stopped answering)
    # is left to finish on its own instead, as a started one is (runner.tracking.child_process)
    getattr(multiprocessing.process, "_children", set()).discard(process)
    log.debug("sidecar %d forked from the zygote", process.pid)
    return Forked(process), os.fdopen(requests_w, "wb"), os.fdopen(answers_r, "rb")


class Forked:
    """What runner.tracking.child_process asks of a ``subprocess.Popen``, of a process the zygote forked."""

    def __init__(self, process) -> None:
        self._process, self.pid = process, process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("runner.tracking.sidecar", timeout or 0)
        return self._process.exitcode

    def kill(self) -> None:
        self._process.kill()


class _Fd:
    """A file descriptor handed to the forked process (``multiprocessing.reduction.DupFd``: sent to the forkserver
    with the request to fork)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import reduction

        return _inherited, (reduction.DupFd(self.fd),)


def _inherited(dup) -> int:
    return dup.detach()


def _serve(requests: int, answers: int, painter: bool, env: dict) -> None:
    from runner.tracking.sidecar import forked

    forked(requests, answers, painter, env)
