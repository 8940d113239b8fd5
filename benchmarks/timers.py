"""Exclusive timers around methods of live objects: what each part of a step costs, without editing it."""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any


class Timers:
    """``wrap(obj, "forward", "forward linear")`` times every call of ``obj.forward`` under that name.

    Times are exclusive: while a wrapped call runs another wrapped call (evaluation calls the layers'
    forward), the inner one's time goes to the inner name only. With ``category(name)`` given, each
    slice of time is also charged to a category: the call's own, or (when it has none) that of the
    nearest enclosing call that has one, else ``"other"``. Only the main thread's calls are timed: work
    a background thread overlaps (runner opens the MLflow store in one while the data loads) is not on
    the critical path; the main thread's wait for it is, and is charged to the call that waits.
    """

    def __init__(self, category: Callable[[str], str | None] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.by_category: dict[str, float] = defaultdict(float)
        self._category = category or (lambda name: None)
        self._stack: list[list[Any]] = []  # [name, start of its current slice, category]
        self._absorbing = [0]  # > 0 while an ``absorb`` call runs: wrapped calls inside it are not timed apart

    def wrap(self, obj: Any, method: str, name: str, absorb: bool = False) -> None:
        original = getattr(obj, method)
        setattr(obj, method, self.timed(original, name, absorb))

    def timed(self, fn, name: str, absorb: bool = False):
        """``fn`` timed as ``name``; with ``absorb`` the calls it makes to other wrapped functions count as its own."""
        seconds, calls, by_category, stack, clock = self.seconds, self.calls, self.by_category, self._stack, time.perf_counter
        own = self._category(name)
        absorbing = self._absorbing

        main = threading.main_thread()

        @functools.wraps(fn)
        def timed_call(*args, **kwargs):
            if absorbing[0] or threading.current_thread() is not main:
                return fn(*args, **kwargs)
            now = clock()
            if stack:
                outer = stack[-1]
                seconds[outer[0]] += now - outer[1]
                by_category[outer[2]] += now - outer[1]
            frame = [name, now, own or (stack[-1][2] if stack else "other")]
            stack.append(frame)
            absorbing[0] += absorb
            try:
                return fn(*args, **kwargs)
            finally:
                absorbing[0] -= absorb
                end = clock()
                seconds[name] += end - frame[1]
                by_category[frame[2]] += end - frame[1]
                calls[name] += 1
                stack.pop()
                if stack:
                    stack[-1][1] = end

        timed_call.__benchmarks_timed__ = True
        return timed_call


class Ticks:
    """``tick(phase)`` charges the time since the previous tick to ``phase`` (``tick(None)`` starts)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._last = time.perf_counter()

    def __call__(self, phase: str | None) -> None:
        now = time.perf_counter()
        if phase is not None:
            self.seconds[phase] += now - self._last
        self._last = now
