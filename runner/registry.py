"""The plugins of one run, by kind and name, each with where it came from.

Discovery (``runner.discovery``) fills it from the ``runner.plugins`` entry points; built-in plugins
come in through the project's own entry points, exactly like third-party ones. This module never
imports a concrete plugin.
"""
from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass
from typing import Any, Iterable

from runner.api import PluginSpec, RunnerError

KINDS = ("layer", "loss", "optimizer", "dataset")
#: The hook that provides each kind (see runner.hookspecs).
HOOKS = {"layer": "runner_layers", "loss": "runner_losses", "optimizer": "runner_optimizers", "dataset": "runner_datasets"}
_HOOKS = HOOKS  # the former name
#: What a plugin's name may be: it is written in configs, MLflow tags and metric keys.
NAME_RULE = re.compile(r"[a-z][a-z0-9_]*\Z")
NAME_RULE_TEXT = "lowercase letters, digits and underscores, starting with a letter"


@dataclass(frozen=True)
class Provider:
    """Where a plugin came from: its distribution and version, and the module."""

    distribution: str
    version: str
    module: str

    def __str__(self) -> str:
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
                raise RunnerError(f"{where}: {e} for {self.kind} {self.name!r}; accepted options: {', '.join(accepted) or 'none'}") from None
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
        """The plugin ``name`` of ``kind``; ``where`` names the config key the user wrote it in."""
        known = self._by_kind[kind]
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            missing = f"; installed but not loaded: {'; '.join(self.not_loaded)}" if self.not_loaded else ""
            raise RunnerError(
                f"{where}: unknown {kind} {name!r}{hint}; available: {', '.join(self.names(kind)) or 'none'}{missing}"
            )
        return known[name]

    def entries(self) -> list[Entry]:
        return [e for kind in KINDS for e in self._by_kind[kind].values()]


def duplicates(entries: Iterable[Entry]) -> list[str]:
    """One message per name provided twice within a kind, naming both providers (no silent shadowing)."""
    seen: dict[tuple[str, str], Entry] = {}
    problems = []
    for entry in entries:
        first = seen.setdefault((entry.kind, entry.name), entry)
        if first is not entry:
            installed = [e.provider.distribution for e in (entry, first)  # third-party ones: hint at switching one off
                         if not e.provider.distribution.startswith("(") and e.provider.distribution != "runner"]
            hint = f", e.g. RUNNER_DISABLE_PLUGINS={installed[0]}" if installed else ""
            problems.append(
                f"{entry.kind} {entry.name!r} is provided twice: by {first.provider} and by {entry.provider}; "
                f"uninstall or disable one of them{hint}"
            )
    return problems


def load_registry(config: Any = None) -> Registry:
    """The registry of a run: every enabled plugin, after the ``plugins`` config section and the
    RUNNER_*_PLUGINS environment variables (see runner.discovery)."""
    from runner.discovery import load_registry as load  # discovery builds on this module

    return load(config)


def __getattr__(name: str) -> Any:
    """``plugin_manager`` and ``collect``, the former API, now in runner.discovery (built on this module)."""
    if name in ("plugin_manager", "collect"):
        from runner import discovery

        return discovery.loaded_plugin_manager if name == "plugin_manager" else discovery.collect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
