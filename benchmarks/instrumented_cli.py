"""``python -m runner`` with timers around its parts, to see where a real CLI run's wall time goes:
``BENCH_TIMINGS=t.json python -m benchmarks.instrumented_cli +experiment=mnist`` (the same arguments
as ``python -m runner``).

Nothing in runner is edited. As each ``runner.*`` module is imported, every function and method it
defines is wrapped with an exclusive timer (and references to them bound elsewhere by
``from ... import`` are rebound), the MLflow client a ``Tracker`` holds is wrapped likewise, and so
is the dataset plugin's ``load``. Per-step code lives in plugins (layers, losses, optimizers), which
are not wrapped, so the training loop runs as it does under ``python -m runner``.
The timings (seconds and calls per function, exclusive) go as JSON to ``$BENCH_TIMINGS``.
"""

from __future__ import annotations

import atexit
import importlib.abc
import inspect
import json
import os
import sys
import time

STARTED = time.perf_counter()

from benchmarks.timers import Timers  # noqa: E402

#: Where each runner function's time goes: (prefix of the timer's name, category); first match wins.
CATEGORIES = [
    ("runner.tracking.", "tracking (MLflow)"),
    ("client.", "tracking (MLflow)"),
    ("runner.report.pyfunc.", "tracking (MLflow)"),
    ("runner.report.", "run story (figures, tables for MLflow)"),
    ("runner.run.record.gradient_check", "gradient check"),
    ("runner.core.gradcheck.", "gradient check"),
    ("runner.core.evaluation.evaluate", "evaluation"),
    ("runner.core.train.Training.evaluation", "evaluation"),
    ("runner.core.train.Training.end_epoch", "evaluation"),
    ("runner.core.train.Training.run", "training steps"),
    ("runner.run.checkpoint.", "checkpoints"),
    ("runner.run.resume.", "checkpoints"),
    ("runner.run.training.Checkpointer", "checkpoints"),
    ("dataset ", "dataset load"),
    ("runner.plugins.", "plugin discovery"),
]


def category(name: str) -> str | None:
    return next((cat for prefix, cat in CATEGORIES if name.startswith(prefix)), None)


TIMERS = Timers(category)
RECORD: dict = {"imports": 0.0}


class TimedClient:
    """An MlflowClient whose every method call is timed as ``client.<method>``."""

    def __init__(self, client):
        object.__setattr__(self, "_client", client)

    def __getattr__(self, name):
        value = getattr(self._client, name)
        return TIMERS.timed(value, f"client.{name}") if callable(value) else value


#: calls whose inner wrapped calls count as their own: the story waits at its end for the sidecar (and its painter) to
#: draw and log the pictures, inside runner.tracking's in_store, which would otherwise count as MLflow's time
ABSORB = {"runner.report.artifacts.log_run_story"}


def _timed_function(fn, label: str):
    return fn if getattr(fn, "__benchmarks_timed__", False) else TIMERS.timed(fn, label, absorb=label in ABSORB)


def wrap_module(module) -> None:
    """Time every function and method ``module`` defines; rebind copies held by other runner modules."""
    replaced: dict[int, object] = {}
    for name, value in list(vars(module).items()):
        if name.startswith("__"):
            continue
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            timed = _timed_function(value, f"{module.__name__}.{name}")
            setattr(module, name, timed)
            replaced[id(value)] = timed
        elif inspect.isclass(value) and value.__module__ == module.__name__:
            _wrap_class(value, f"{module.__name__}.{name}")
    for other in list(sys.modules.values()):
        if other is module or not getattr(other, "__name__", "").startswith("runner"):
            continue
        for name, value in list(vars(other).items()):
            if id(value) in replaced:
                setattr(other, name, replaced[id(value)])
    if module.__name__ == "runner.tracking.writer" and hasattr(module, "Writer"):
        _wrap_writer_client(module.Writer)
    if module.__name__ == "runner.plugins.registry" and hasattr(module, "Entry"):
        _time_dataset_loads(module.Entry)


def _wrap_class(cls, prefix: str) -> None:
    for name, raw in list(vars(cls).items()):
        if name.startswith("__"):
            continue
        try:
            if isinstance(raw, classmethod):
                setattr(cls, name, classmethod(_timed_function(raw.__func__, f"{prefix}.{name}")))
            elif isinstance(raw, staticmethod):
                setattr(cls, name, staticmethod(_timed_function(raw.__func__, f"{prefix}.{name}")))
            elif inspect.isfunction(raw):
                setattr(cls, name, _timed_function(raw, f"{prefix}.{name}"))
        except (AttributeError, TypeError):  # frozen or slotted: leave it
            pass


def _wrap_writer_client(writer_cls) -> None:
    """The Writer's MlflowClient (in this process with tracking.sidecar=false) timed call by call."""
    opened = writer_cls.open

    def open_timed(self, *args, **kwargs):
        result = opened(self, *args, **kwargs)
        if getattr(self, "client", None) is not None and not isinstance(self.client, TimedClient):
            self.client = TimedClient(self.client)
        return result

    writer_cls.open = open_timed


def _time_dataset_loads(entry_cls) -> None:
    create = entry_cls.create

    def create_timed(self, options, where):
        made = create(self, options, where)
        if self.kind == "dataset" and hasattr(made, "load"):
            made.load = TIMERS.timed(made.load, f"dataset {self.name}.load")
        return made

    entry_cls.create = create_timed


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps each runner.* module right after it executes (before ``from x import f`` reads it)."""

    def find_spec(self, fullname, path, target=None):
        if not (fullname == "runner" or fullname.startswith("runner.")) or fullname.startswith("runner.hydra_plugins"):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):
            original(module)
            wrap_module(module)

        loader.exec_module = exec_module
        return spec


def _dump() -> None:
    out = os.environ.get("BENCH_TIMINGS")
    if not out:
        return
    record = {
        "seconds": dict(TIMERS.seconds),
        "calls": dict(TIMERS.calls),
        "categories": dict(TIMERS.by_category),
        "imports": RECORD["imports"],
        "inside": time.perf_counter() - STARTED,
    }
    with open(out, "w") as f:
        json.dump(record, f)


def main() -> None:
    atexit.register(_dump)  # registered first: runs last, after MLflow's own exit handlers
    sys.meta_path.insert(0, _Finder())
    began = time.perf_counter()
    import runner.__main__ as entry  # hydra, runner.app and what it imports at the top

    RECORD["imports"] = time.perf_counter() - began
    sys.argv = ["runner", *sys.argv[1:]]
    entry.run()


if __name__ == "__main__":
    main()
