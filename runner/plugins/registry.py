"""The plugins of one run, by kind and name, each with where it came from.

Discovery (``runner.discovery``) fills it from the ``runner.plugins`` entry points; built-in plugins
come in through the project's own entry points, exactly like third-party ones. This module never
imports a concrete plugin.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runner.api import PluginSpec, RunnerError

KINDS = ("layer", "loss", "optimizer", "dataset")
#: The hook that provides each kind (see runner.hookspecs).
HOOKS = {"layer": "runner_layers", "loss": "runner_losses", "optimizer": "runner_optimizers", "dataset": "runner_datasets"}
#: What a plugin's name may be: it is written in configs, MLflow tags and metric keys.
NAME_RULE = re.compile(r"[a-z][a-z0-9_]*\Z")
NAME_RULE_TEXT = "lowercase letters, digits and underscores, starting with a letter"


@dataclass(frozen=True)
class Provider:
    """Where a plugin came from: its distribution and version, and the module."""

    distribution: str
    version: str
    module: str
    passed_to: str = ""  # "plugin_registry": a plugin object a test passed to runner.testing.plugin_registry

    def __str__(self) -> str:
        if self.passed_to:
            return f"your plugin object {self.module} (passed to {self.passed_to})"
        return " ".join(filter(None, (self.distribution, self.version))) + f" ({self.module})"


@dataclass(frozen=True)
class Entry:
    kind: str
    spec: PluginSpec
    provider: Provider

    @property
    def name(self) -> str:
        return self.spec.name

    def create(self, options: dict[str, Any], where: str) -> Any:
        """``factory(**options)``; a wrong option or value is a RunnerError naming ``where``."""
        factory = self.spec.factory
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            params = signature.parameters.values()
            accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
            unknown = [k for k in options if k not in accepted]
            if unknown and not takes_any:
                raise RunnerError(
                    f"{where}: unknown option {', '.join(map(repr, unknown))} for {self.kind} {self.name!r}; "
                    f"accepted options: {', '.join(accepted) or 'none'}"
                )
            try:
                signature.bind(**options)
            except TypeError as e:
                raise RunnerError(
                    f"{where}: {e} for {self.kind} {self.name!r}; accepted options: {', '.join(accepted) or 'none'}"
                ) from None
        try:
            return factory(**options)
        except RunnerError as e:
            raise RunnerError(f"{where}: {e}") from None


class Registry:
    """Every plugin by kind and name, each with its provider."""

    def __init__(self, entries: Iterable[Entry], not_loaded: Iterable[str] = (), discovery: Any = None):
        """``not_loaded``: one line per plugin distribution that is installed but was not loaded
        (disabled, or failed), added to an unknown-name error; ``discovery``: the full record."""
        entries = list(entries)
        self._by_kind: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.not_loaded = list(not_loaded)
        self.discovery = discovery
        problems = duplicates(entries)
        if problems:
            raise RunnerError("; ".join(problems))
        for entry in entries:
            self._by_kind[entry.kind][entry.name] = entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def get(self, kind: str, name: str, where: str) -> Entry:
        """The plugin ``name`` of ``kind``; ``where`` names the config key the user wrote it in (e.g.
        ``model.activation``), which starts the message when there is no such plugin."""
        known = self._by_kind[kind]
        if name not in known:
            raise RunnerError(f"{where}: {self.unknown(kind, name)}")
        return known[name]

    def unknown(self, kind: str, name: str) -> str:
        """Why there is no ``kind`` named ``name``: what there is, and what is installed but not loaded."""
        missing = f"; installed but not loaded: {'; '.join(self.not_loaded)}" if self.not_loaded else ""
        return (
            f"unknown {kind} {name!r}{self.did_you_mean(kind, name)}; available: {', '.join(self.names(kind)) or 'none'}{missing}"
        )

    def did_you_mean(self, kind: str, name: str) -> str:
        close = difflib.get_close_matches(str(name), self._by_kind[kind], n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def entries(self) -> list[Entry]:
        return [e for kind in KINDS for e in self._by_kind[kind].values()]


def duplicates(entries: Iterable[Entry]) -> list[str]:
    """One message per name provided twice within a kind, naming both providers (no silent shadowing)."""
    seen: dict[tuple[str, str], Entry] = {}
    problems = []
    for entry in entries:
        first = seen.setdefault((entry.kind, entry.name), entry)
        if first is not entry and (first.provider.passed_to or entry.provider.passed_to):
            problems.append(_passed_twice(first, entry))
        elif first is not entry:
            installed = [
                e.provider.distribution
                for e in (entry, first)  # third-party ones: hint at switching one off
                if not e.provider.distribution.startswith("(") and e.provider.distribution != "runner"
            ]
            hint = f", e.g. RUNNER_DISABLE_PLUGINS={installed[0]}" if installed else ""
            problems.append(
                f"{entry.kind} {entry.name!r} is provided twice: by {first.provider} and by {entry.provider}; "
                f"uninstall or disable one of them{hint}"
            )
    return problems


def _passed_twice(first: Entry, entry: Entry) -> str:
    """A name provided twice where a plugin object passed to ``runner.testing.plugin_registry`` is one of
    the two: said to the plugin's author, who renames it (nothing is installed to disable)."""

    def who(provider: Provider) -> str:
        return (
            f"runner's built-ins, {provider}," if provider.distribution == "runner" and not provider.passed_to else str(provider)
        )

    both = first.provider.passed_to and entry.provider.passed_to
    advice = (
        "pass each plugin object once, or rename one of the two"
        if both
        else f"rename yours: a {entry.kind}'s name is unique across runner's built-ins and every plugin"
    )
    return f"{entry.kind} {entry.name!r} is provided twice: by {who(first.provider)} and by {who(entry.provider)}; {advice}"
