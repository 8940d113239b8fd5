"""Plugin discovery: a pluggy PluginManager over the ``runner.plugins`` entry points.

Built-in plugins come in through the project's own entry points, exactly like
third-party ones; this module never imports a concrete plugin.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any

import pluggy

from runner import hookspecs
from runner.api import ENTRY_POINT_GROUP, PluginSpec, RunnerError

KINDS = ("layer", "loss", "optimizer", "dataset")
_HOOKS = {"layer": "runner_layers", "loss": "runner_losses", "optimizer": "runner_optimizers", "dataset": "runner_datasets"}


@dataclass(frozen=True)
class Provider:
    """Where a plugin came from: its distribution and version, and the module."""

    distribution: str
    version: str
    module: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} ({self.module})"


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

    def __init__(self, entries: list[Entry]):
        self._by_kind: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for entry in entries:
            known = self._by_kind[entry.kind]
            if entry.name in known:
                raise RunnerError(
                    f"{entry.kind} {entry.name!r} is provided twice: by {known[entry.name].provider} "
                    f"and by {entry.provider}; uninstall or disable one of them"
                )
            known[entry.name] = entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def get(self, kind: str, name: str, where: str) -> Entry:
        """The plugin ``name`` of ``kind``; ``where`` names the config key the user wrote it in."""
        known = self._by_kind[kind]
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RunnerError(
                f"{where}: unknown {kind} {name!r}{hint}; available: {', '.join(self.names(kind)) or 'none'}"
            )
        return known[name]

    def entries(self) -> list[Entry]:
        return [e for kind in KINDS for e in self._by_kind[kind].values()]


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("runner")
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def _provider(pm: pluggy.PluginManager, plugin: object) -> Provider:
    module = getattr(plugin, "__name__", type(plugin).__name__)
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return Provider(dist.metadata["name"], dist.version, module)
    return Provider("(not installed)", "-", module)


def collect(pm: pluggy.PluginManager) -> Registry:
    """Ask every registered plugin for its records, remembering who provided each."""
    entries = []
    for kind, hook_name in _HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            provider = _provider(pm, impl.plugin)
            for spec in impl.function() or []:
                entries.append(Entry(kind, spec, provider))
    return Registry(entries)


def load_registry() -> Registry:
    return collect(plugin_manager())
