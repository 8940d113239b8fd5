"""The child process that writes a run to MLflow: ``python -m runner.tracking.sidecar``.

A run's process starts it first thing (runner.tracking.child_process), so that ``import mlflow``
(~1 s), a fresh SQLite store's schema (~1 s) and every write to the store happen on the other core
while the run loads its data and trains. Requests come pickled, one after another, on stdin:
``(seq, op, args, kwargs)``; each is carried out in order by ``runner.tracking.writer.Writer`` (the
same class the in-process transport calls) and answered on stdout, ``(seq, status, value)``
(``Writer.apply``: after the store's first failure later requests are dropped, the run's end is still
tried). The run's process keeps what has not been answered, to write it itself if this process dies.
A painting is handed to the painter processes as soon as the reader thread has read it (``Writer.early``),
whatever requests are before it: at the run's end the pictures are drawn while this process writes the last
metrics and the pyfunc model; their files are still logged in order, at the next barrier.

``--no-painter``: it draws the run's pictures alone, without the processes of runner.tracking.painter
(given where runner.run.compose.painter_allowed says no: in a Ray task, or where a spawned painter finds no core
left over).

Ctrl-C reaches every process of the terminal's group: this one ignores SIGINT and SIGTERM and lets
the run's process decide (it records KILLED, then closes the pipe). At end of input it has carried
out everything it was sent, and exits.
"""

from __future__ import annotations

import gc
import os
import pickle
import queue
import signal
import sys
import threading

#: end of input
_EOF = object()

#: how many steps below its run's process the sidecar (and the painters it forks) is scheduled: its work is bookkeeping
#: (MLflow's imports and writes, the pictures) beside a training that should keep its core. A run keeps nearly both
#: cores busy, and at the same priority the scheduler ran part of that work on the training's core
#: (docs/benchmarks.md, the seventh slice of issue 19, measured both ways)
NICE = 10


def _read(stream, requests: queue.Queue, early: list) -> None:
    """Read requests as fast as they come (the run's process never waits on a full pipe), into ``requests``; each is
    shown first to ``early[0]`` once there is one (``Writer.early``: a painting starts drawing as soon as it is read)."""
    try:
        while True:
            request = pickle.load(stream)
            if early and isinstance(request, tuple) and len(request) == 4:
                try:
                    early[0](*request)
                except Exception:  # only a head start: the request is carried out in its turn whatever happened here
                    pass
            requests.put(request)
    except (EOFError, OSError, pickle.UnpicklingError, AttributeError, ImportError):
        requests.put(_EOF)


def serve(stdin, stdout, painter: bool = True) -> None:
    _lower_priority()
    requests: queue.Queue = queue.Queue()
    # NumPy first, whole, in this thread: requests carry arrays, and unpickling one in the reader thread
    # while this thread's ``import mlflow`` is importing NumPy would see it half-initialised
    # ("module 'numpy._core' has no attribute '_multiarray_umath'": seen when a tiny run's story
    # arrived before MLflow's import had finished)
    import numpy  # noqa: F401

    early: list = []
    threading.Thread(target=_read, args=(stdin, requests, early), daemon=True, name="runner-sidecar-reader").start()
    _warm()  # while the run's process loads its data
    from runner.tracking.writer import Writer

    writer = Writer(painter=painter)  # pictures drawn here and in painter processes (runner.tracking.painter)
    early.append(writer.early)
    while True:
        request = requests.get()
        if request is _EOF:
            writer.stop_painting()  # os._exit skips the executor's own shutdown: its workers would wait for work forever
            try:
                stdout.flush()
            except (BrokenPipeError, OSError, ValueError):  # the run's process is gone (an answer could not be sent)
                pass
            os._exit(0)  # everything asked for is written: skip MLflow's exit handlers (~0.5 s)
        _send(stdout, writer.apply(*request))


def _lower_priority() -> None:
    """``NICE`` steps below the process that started it (the painters, its forks, inherit it)."""
    try:
        os.nice(NICE)
    except (AttributeError, OSError):  # no os.nice (Windows), or refused: the sidecar runs as it is
        pass


def _warm() -> None:
    """``import mlflow`` (and its client): the bulk of the start-up. Then the collector leaves what the imports made
    alone (``gc.freeze``): ~400,000 objects that live as long as this process, which every full collection the
    report's drawing set off would otherwise walk (about a third of the drawing's time)."""
    from mlflow.tracking import MlflowClient  # noqa: F401

    gc.freeze()


def warm_up() -> None:
    """Everything a sidecar and its painters import, and the report's warm-up drawn, the collector frozen after it: done
    once by a sweep's zygote (runner.tracking.zygote) for every sidecar it forks. Nothing is opened: no store, no
    thread of ours."""
    import importlib

    import numpy  # noqa: F401

    _warm()
    from mlflow.store.tracking import sqlalchemy_store  # noqa: F401  (opening the default SQLite store imports it)

    from runner.tracking import painter, writer  # noqa: F401

    for module in painter.PRELOAD:  # by name: the report imports tracking, not the other way round
        importlib.import_module(module)
    importlib.import_module("runner.report.artifacts").warm()  # the run's first painting: the font loaded; gc.freeze


def forked(requests: int, answers: int, painter: bool, env: dict) -> None:
    """A sidecar forked by a sweep's zygote (runner.tracking.zygote): ``main``'s set-up, on the pipes it was handed
    (file descriptors), in the job's environment."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(env)
    sys.stdout = sys.stderr
    serve(os.fdopen(requests, "rb"), os.fdopen(answers, "wb"), painter=painter)


def _send(stdout, answer) -> None:
    try:
        pickle.dump(answer, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()
    except (BrokenPipeError, OSError, ValueError):  # the run's process is gone (killed hard): what it sent is still written
        pass
    except (pickle.PicklingError, TypeError, AttributeError):  # a result that cannot travel: its success does
        _send(stdout, (answer[0], answer[1], None))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the two pipes on descriptors of their own, which the processes this one starts (the painter) do not inherit:
    # descriptors 0 and 1 become /dev/null and the terminal's stderr, so nothing but this process reads the requests
    # or writes into the answers, and the run's process sees the answers end when this process ends
    stdin = os.fdopen(os.dup(0), "rb")
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr  # anything printed goes to the terminal, not into the answers
    serve(stdin, stdout, painter="--no-painter" not in sys.argv[1:])


if __name__ == "__main__":
    main()
