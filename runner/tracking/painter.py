"""A second process that draws the run's pictures beside the sidecar: ``start()`` gives it, as an executor.

The sidecar (runner.tracking.sidecar) writes the run and draws its report; at the run's end that was
one process doing the pyfunc model, the watch's four pictures, the curves and the classifier's figures
one after another (0.6 s on an idle machine) while the run's process waited. The painter is a
``ProcessPoolExecutor`` of one worker, a fresh interpreter (the ``spawn`` start method: nothing is
forked from a process with threads, and starting it does not wait for its imports) that imports
matplotlib and pandas first (``PRELOAD``), started by the first painting (the report's warm-up, sent as the run starts
training), which it then carries out too.
The writer sends a picture to it when it is idle and draws it itself otherwise
(``runner.tracking.writer.Writer.paint``), so the end waits for the longer of two queues, not their sum.

A painting is ``function(**kwargs) -> (files, failure)``: ``files`` a list of (path, artifact folder),
``failure`` None or why a part of it failed; the writer logs the files. The worker ignores SIGINT and
SIGTERM as the sidecar does: the run's process decides what an interrupt means.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
from concurrent.futures import Executor, Future

log = logging.getLogger("runner.tracking")

#: imported by the worker before anything is asked of it
PRELOAD = ["runner.report.artifacts", "runner.report.watch_pictures", "matplotlib.backends.backend_agg", "pandas"]

#: what a painting returns: (files as (path, artifact folder), why a part failed or None)
Drawn = tuple[list[tuple[str, str | None]], str | None]


def _init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for module in PRELOAD:
        importlib.import_module(module)


class Painter:
    """The worker process, and whether it is busy with what it was given."""

    def __init__(self, pool: Executor):
        self._pool = pool
        self._given: list[Future] = []

    def idle(self) -> bool:
        self._given = [f for f in self._given if not f.done()]
        return not self._given

    def submit(self, function, **kwargs) -> Future:
        future = self._pool.submit(function, **kwargs)
        self._given.append(future)
        return future

    def shutdown(self) -> None:
        """Stop it now (what it drew has been collected): a short run's end does not wait for its imports to finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():  # the worker: the only child process the sidecar starts
            child.kill()
            child.join(timeout=5)


def start() -> Painter | None:
    """The painter (its imports under way); None where it cannot be started (said at debug level)."""
    try:
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        return Painter(ProcessPoolExecutor(1, mp_context=context, initializer=_init))
    except Exception as e:  # no processes left: the sidecar draws alone
        log.debug("no painter process: %s: %s", type(e).__name__, e)
        return None
