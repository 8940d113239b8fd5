"""A second process that draws the run's pictures beside the sidecar: ``start()`` gives it, as an executor.

The sidecar (runner.tracking.sidecar) writes the run and draws its report; at the run's end that was
one process doing the pyfunc model, the watch's four pictures, the curves and the classifier's figures
one after another (0.6 s on an idle machine) while the run's process waited. The painter is a
``ProcessPoolExecutor`` of one worker, started after the first painting (the report's warm-up, sent as the
run starts training) has been drawn in the sidecar. Where processes can be forked (Linux) the worker is a
fork of the sidecar at that moment: MLflow, matplotlib, pandas and the report's modules already imported and
the collector frozen (``gc.freeze``), so it starts in milliseconds and shares those pages. A fresh interpreter
(``spawn``) importing them again took about a second of CPU while the run trained, which cost the training
more than the painter saved at the end (docs/benchmarks.md). Elsewhere it is spawned and imports ``PRELOAD``
itself, and is handed the first painting too.

The fork is safe with the sidecar's reader thread: the worker only runs paintings of modules the sidecar has
imported, and touches nothing that thread holds (the request pipe, its queue). The sidecar holds no store lock
then (runner.tracking.sqlite_store's ``flock`` is released once the store is open).

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
import sys
import warnings
from concurrent.futures import Executor, Future

log = logging.getLogger("runner.tracking")

#: imported by the worker before anything is asked of it
PRELOAD = ["runner.report.artifacts", "runner.report.watch_pictures", "matplotlib.backends.backend_agg", "pandas"]

#: what a painting returns: (files as (path, artifact folder), why a part failed or None)
Drawn = tuple[list[tuple[str, str | None]], str | None]


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _init() -> None:
    """A spawned worker's start: what a forked one inherits."""
    _ignore_signals()
    for module in PRELOAD:
        importlib.import_module(module)


def forks() -> bool:
    """Whether the worker is a fork of this process (Linux), else a fresh interpreter."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


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


def start(first=None) -> Painter | None:
    """The painter, None where it cannot be started (said at debug level). Forked: at once, from this process as it
    is. Spawned: its imports under way, and ``first`` (function, kwargs), the painting this process has just drawn, is
    done there too (the warm-up's figure and font)."""
    try:
        from concurrent.futures import ProcessPoolExecutor

        if forks():
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_signals)
            painter = Painter(pool)
            with warnings.catch_warnings():  # Python >= 3.12 warns of any fork beside threads (see the module's doc)
                warnings.simplefilter("ignore", DeprecationWarning)
                pool.submit(_ignore_signals)  # the fork, now: a fork context starts its workers at the first submit
            return painter
        painter = Painter(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init))
        if first is not None:
            function, kwargs = first
            painter.submit(function, **kwargs)
        return painter
    except Exception as e:  # no processes left: the sidecar draws alone
        log.debug("no painter process: %s: %s", type(e).__name__, e)
        return None
