"""Installed entry points of runner's groups, and the records of what became of each one.

Reading entry points imports nothing: it reads the installed distributions' metadata.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from runner.plugins.settings import BUILTIN, canonical


@dataclass(frozen=True)
class Installed:
    """One entry point as installed: ``name = value`` in ``group`` of ``distribution`` ``version``."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    entry_point: Any  # importlib.metadata.EntryPoint

    def __str__(self) -> str:
        return f"entry point {self.name!r} ({self.value}) of {self.distribution} {self.version}"

    def as_dict(self) -> dict[str, str]:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "group": self.group,
            "entry_point": self.name,
            "value": self.value,
        }


def installed(group: str) -> list[Installed]:
    """Every entry point of ``group``, runner's own first, then by distribution and name.

    A distribution found twice on ``sys.path`` counts once: the first, the one ``import`` would use.
    """
    found = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        name = (dist.metadata["Name"] if dist is not None else None) or "(unknown distribution)"
        version = (dist.version if dist is not None else None) or "?"
        found.append(Installed(group, ep.name, ep.value, name, version, ep))
    return sorted(found, key=lambda e: (canonical(e.distribution) != BUILTIN, canonical(e.distribution), e.name))


@dataclass(frozen=True)
class Failure:
    """An entry point that was found but could not be used, and why."""

    source: Installed
    error: str  # one line: "ModuleNotFoundError: No module named 'scipy' (at .../plugin.py:3)"
    traceback: str  # the full traceback, for --traceback and the run record

    @classmethod
    def of(cls, source: Installed, exc: BaseException | str, context: str = "") -> Failure:
        """From an exception (its type, first line and where it was raised) or a message; ``context``
        goes first, e.g. ``runner_layers() raised``."""
        prefix = f"{context} " if context else ""
        if isinstance(exc, str):
            return cls(source, prefix + exc, "")
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames and not isinstance(exc, SyntaxError) else ""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error = f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"
        return cls(source, prefix + error, "".join(traceback.format_exception(exc)))

    def __str__(self) -> str:
        return f"{self.source}: {self.error}"

    def as_dict(self) -> dict[str, str]:
        return {**self.source.as_dict(), "error": self.error, "traceback": self.traceback}


@dataclass(frozen=True)
class Skipped:
    """An entry point that was deliberately not loaded (disabled, or outside an allow-list)."""

    source: Installed
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {**self.source.as_dict(), "reason": self.reason}
