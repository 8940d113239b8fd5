"""The processes that draw the run's pictures beside the sidecar: ``start()`` gives them, as an executor.

The sidecar (runner.tracking.sidecar) writes the run and draws its report; at the run's end that was
one process doing the pyfunc model, the watch's four pictures, the curves and the classifier's figures
one after another (0.6 s on an idle machine) while the run's process waited. The painter is a
``ProcessPoolExecutor``, started after the first painting (the report's warm-up, sent as the run starts
training) has been drawn in the sidecar. Where processes can be forked (Linux) it has two workers
(``FORKED``), forks of the sidecar at that moment: MLflow, matplotlib, pandas and the report's modules already
imported and the collector frozen (``gc.freeze``), so they start in milliseconds and share those pages. They
take every painting from one queue, while the sidecar does MLflow's own work (the last metrics, the pyfunc
model): at the run's end the seven pictures are drawn two at a time, beside the model. A fresh interpreter
(``spawn``) importing them again took about a second of CPU while the run trained, which cost the training
more than the painter saved at the end (docs/benchmarks.md). Elsewhere it is one spawned worker that imports
``PRELOAD`` itself and is handed the first painting too; the sidecar sends it a painting when it is idle and
draws the painting itself otherwise, so the end waits for the longer of two queues, not their sum
(``runner.tracking.writer.Writer.paint``).

The fork is safe with the sidecar's reader thread: the workers only run paintings of modules the sidecar has
imported, and touch nothing that thread holds (the request pipe, its queue). The sidecar holds no store lock
then (runner.tracking.sqlite_store's ``flock`` is released once the store is open).

A painting is ``function(**kwargs) -> (files, failure)``: ``files`` a list of (path, artifact folder),
``failure`` None or why a part of it failed; the writer logs the files, in the order the paintings were asked
for, at the next barrier. The workers ignore SIGINT and SIGTERM as the sidecar does: the run's process decides
what an interrupt means.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
import sys
import threading
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


#: forked workers: two, taking paintings from one queue, instead of the sidecar and one painter each deciding alone
#: which of them draws (the run's end, measured both ways: docs/benchmarks.md, issue 19's fourth slice)
FORKED = 2


class Painter:
    """The worker processes (``workers``), and whether they are done with what they were given."""

    def __init__(self, pool: Executor, workers: int = 1):
        self._pool, self.workers = pool, workers
        self._given: list[Future] = []
        self._lock = threading.Lock()  # the sidecar's reader thread submits too (Writer.early)

    def idle(self) -> bool:
        with self._lock:
            self._given = [f for f in self._given if not f.done()]
            return not self._given

    def submit(self, function, **kwargs) -> Future:
        future = self._pool.submit(function, **kwargs)
        with self._lock:
            self._given.append(future)
        return future

    def shutdown(self) -> None:
        """Stop it now (what it drew has been collected): a short run's end does not wait for its imports to finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():  # the workers: the only child processes the sidecar starts
            child.kill()
            child.join(timeout=5)


def start(first=None) -> Painter | None:
    """The painter, None where it cannot be started (said at debug level). Forked: ``FORKED`` workers at once, from this
    process as it is. Spawned: one worker, its imports under way, and ``first`` (function, kwargs), the painting this
    process has just drawn, is done there too (the warm-up's figure and font)."""
    try:
        from concurrent.futures import ProcessPoolExecutor

        if forks():
            pool = ProcessPoolExecutor(FORKED, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_signals)
            painter = Painter(pool, FORKED)
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
