"""Plugin discovery: each ``runner.plugins`` entry point imported and registered on its own.

For every installed entry point, in order (runner's built-ins first):

1. the disable and allow lists decide whether it loads at all -- a skipped plugin's code is never imported;
2. it is imported; an exception is recorded (distribution, version, entry point, error) and the
   entry point skipped, so runs that do not need it still work;
3. it is registered on a pluggy PluginManager and checked: hooks runner does not have, hook
   functions without ``@hookimpl``, or no hooks at all are recorded as failures;
4. its hooks are called; each must return a list of ``PluginSpec`` with valid names; any
   exception or bad record fails the whole entry point (none of its plugins are used).

Strict mode (``RUNNER_STRICT_PLUGINS=1`` or ``plugins.strict=true``) turns any failure into a
RunnerError. A name provided twice within a kind is always an error naming both distributions.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from runner.api import ENTRY_POINT_GROUP, PluginSpec, RunnerError
from runner.plugins import hookspecs
from runner.plugins.configs import CONFIG_GROUP, ConfigDir, config_conflicts, find_config_dirs, main_config_dir
from runner.plugins.entry_points import Failure, Installed, Skipped, installed
from runner.plugins.registry import HOOKS, KINDS, NAME_RULE, NAME_RULE_TEXT, Entry, Provider, Registry, duplicates
from runner.plugins.settings import ENV_DISABLE, PluginSettings

log = logging.getLogger("runner.plugins")


class PluginProblem(Exception):
    """Something wrong with a plugin object itself (not an exception its own code raised)."""


class HookRaised(Exception):
    """A plugin's hook function raised ``error``."""

    def __init__(self, hook: str, error: BaseException):
        super().__init__(f"{hook}() raised {type(error).__name__}: {error}")
        self.hook, self.error = hook, error


def plugin_manager() -> pluggy.PluginManager:
    """A PluginManager that knows runner's hooks, with no plugin registered yet."""
    pm = pluggy.PluginManager("runner")
    pm.add_hookspecs(hookspecs)
    return pm


@dataclass
class Loaded:
    """A plugin object that loaded, and everything it provides."""

    source: Installed | None  # None: registered in-process (runner.testing.plugin_registry)
    plugin: object
    provider: Provider
    entries: list[Entry]


@dataclass
class Discovery:
    """What discovery found: loaded plugins, failures, skipped entry points, plugin config directories."""

    settings: PluginSettings
    pm: pluggy.PluginManager | None = None  # every loaded plugin registered on it
    loaded: list[Loaded] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    configs: list[ConfigDir] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def entries(self) -> list[Entry]:
        return [e for loaded in self.loaded for e in loaded.entries]

    def conflicts(self) -> list[str]:
        """Names provided twice (within a kind), and config files provided twice."""
        return duplicates(self.entries) + config_conflicts(main_config_dir(), self.configs)

    def not_loaded(self) -> list[str]:
        """One line per distribution installed but not (wholly) loaded: why."""
        lines: dict[str, str] = {}
        for f in self.failed:
            lines.setdefault(f.source.distribution, f"{f.source.distribution} {f.source.version} failed to load ({f.error})")
        for s in self.skipped:
            lines.setdefault(s.source.distribution, f"{s.source.distribution} {s.source.version} {s.reason}")
        return list(lines.values())

    def check_strict(self) -> None:
        """In strict mode, any failure or list item naming nothing is a RunnerError."""
        if not self.settings.strict or not (self.failed or self.warnings):
            return
        problems = [
            f"{f} (fix or uninstall {f.source.distribution}, or disable it: {ENV_DISABLE}={f.source.distribution})"
            for f in self.failed
        ]
        raise RunnerError(f"{self.settings.strict_source}: " + "; ".join(problems + self.warnings))

    def registry(self) -> Registry:
        """The run's registry; a name provided twice is a RunnerError naming both providers."""
        return Registry(self.entries, self.not_loaded(), self)

    def distributions(self) -> list[tuple[str, str]]:
        """(name, version) of every distribution that provided a plugin, in load order."""
        return list(dict.fromkeys((loaded.provider.distribution, loaded.provider.version) for loaded in self.loaded))

    def tags(self) -> dict[str, str]:
        """MLflow tags of a run: the plugin distributions loaded, and those that failed or were skipped."""
        tags = {"runner.plugins": ", ".join(" ".join(filter(None, d)) for d in self.distributions())}
        if self.failed:
            tags["runner.plugins.failed"] = "; ".join(map(str, self.failed))[:5000]
        if self.skipped:
            tags["runner.plugins.skipped"] = "; ".join(map(str, self.skipped))[:5000]
        return tags

    def report(self) -> dict[str, Any]:
        """Everything, as plain data: ``python -m runner.plugins --json`` and each run's plugins.json."""
        return {
            "plugins": [
                {
                    "kind": e.kind,
                    "name": e.name,
                    "description": e.spec.description,
                    "distribution": e.provider.distribution,
                    "version": e.provider.version,
                    "module": e.provider.module,
                    "entry_point": loaded.source.name if loaded.source else None,
                    "factory": _qualified_name(e.spec.factory),
                }
                for loaded in self.loaded
                for e in sorted(loaded.entries, key=lambda e: (KINDS.index(e.kind), e.name))
            ],
            "configs": [c.as_dict() for c in self.configs],
            "failed": [f.as_dict() for f in self.failed],
            "skipped": [s.as_dict() for s in self.skipped],
            "conflicts": self.conflicts(),
            "warnings": list(self.warnings),
            "settings": self.settings.describe(),
        }


def discover(settings: PluginSettings, extra: Iterable[object] = ()) -> Discovery:
    """Load every enabled plugin entry point (failures recorded, never raised), then ``extra``
    plugin objects (registered as they are; any problem with one of those is a RunnerError)."""
    found = Discovery(settings)
    sources = installed(ENTRY_POINT_GROUP)
    found.configs, config_failed, config_skipped = find_config_dirs(settings)
    found.warnings = settings.unmatched([(s.distribution, s.name) for s in sources + installed(CONFIG_GROUP)])
    pm = found.pm = plugin_manager()
    for source in sources:
        reason = settings.exclusion(source.distribution, source.name)
        if reason:
            found.skipped.append(Skipped(source, reason))
            continue
        try:
            plugin = source.entry_point.load()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - reported with its distribution, then skipped
            found.failed.append(Failure.of(source, e))
            continue
        provider = Provider(source.distribution, source.version, _module_of(plugin))
        try:
            entries = register(pm, plugin, f"{source.distribution}:{source.name}", provider)
        except PluginProblem as e:
            found.failed.append(Failure.of(source, str(e)))
            continue
        except HookRaised as e:
            found.failed.append(Failure.of(source, e.error, context=f"{e.hook}() raised"))
            continue
        found.loaded.append(Loaded(source, plugin, provider, entries))
    found.failed += config_failed
    found.skipped += config_skipped
    for plugin in extra:  # from runner.testing.plugin_registry
        provider = Provider("(not installed)", "", _module_of(plugin), passed_to="plugin_registry")
        try:
            entries = register(pm, plugin, f"(not installed):{provider.module}:{id(plugin)}", provider)
        except PluginProblem as e:
            raise RunnerError(f"plugin {provider.module}: {e}") from None
        except HookRaised as e:
            raise e.error from None  # the test's own plugin raised: its error, with its own traceback
        found.loaded.append(Loaded(None, plugin, provider, entries))
    return found


def _qualified_name(factory: Any) -> str:
    """``module.qualname`` of a plugin's factory (its repr where it has none)."""
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


class ObjectRegistry(Registry):
    """The registry ``runner.testing.plugin_registry`` returns: runner's built-ins (unless
    ``builtins=False``) and the plugin objects a test passed to it. A name it lacks is said in the
    terms of the plugin's author: what their objects provide, what the built-ins provide, and which
    installed distributions plugin_registry leaves out."""

    def __init__(self, found: Discovery, builtins: bool = True):
        self.builtins = builtins
        super().__init__(found.entries, found.not_loaded(), found)

    def unknown(self, kind: str, name: str) -> str:
        entries = [self.get(kind, n, "") for n in self.names(kind)]
        yours = [e.name for e in entries if e.provider.passed_to]
        builtin = [e.name for e in entries if not e.provider.passed_to]
        objects = list(dict.fromkeys(loaded.provider.module for loaded in self.discovery.loaded if loaded.source is None))
        if objects:
            several = len(objects) > 1
            passed = (
                f"your plugin object{'s' if several else ''} passed to plugin_registry ({', '.join(objects)}) "
                f"provide{'' if several else 's'} {', '.join(yours) or f'no {kind}'}"
            )
        else:
            passed = "no plugin object was passed to plugin_registry"
        builtins = (
            f"runner's built-ins provide {', '.join(builtin) or 'none'}"
            if self.builtins
            else "runner's built-ins are left out (builtins=False)"
        )
        left_out = list(
            dict.fromkeys(
                f"{s.source.distribution} {s.source.version}" for s in self.discovery.skipped if s.source.distribution != "runner"
            )
        )
        installed = (
            (
                f"; installed plugin distributions are left out ({', '.join(left_out)}): pass their plugin objects to "
                f"plugin_registry as well to use them"
            )
            if left_out
            else ""
        )
        return f"{kind} {name!r} is not registered{self.did_you_mean(kind, name)}: {passed}; {builtins}{installed}"


def load_registry(config: Any = None, environ: Any = None) -> Registry:
    """The registry of one run: settings from the ``plugins`` config section and the environment;
    failures logged as warnings (fatal in strict mode); a name provided twice is a RunnerError."""
    found = discover(PluginSettings.from_sources(config, environ))
    found.check_strict()
    for warning in found.warnings:
        log.warning("plugins: %s", warning)
    for failure in found.failed:
        log.warning("plugin %s failed to load and was skipped: %s", failure.source, failure.error)
    return found.registry()


def register(pm: pluggy.PluginManager, plugin: object, name: str, provider: Provider) -> list[Entry]:
    """Register ``plugin``, check its hooks, and collect what it provides; on any problem it is unregistered."""
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as e:
        raise PluginProblem(f"cannot be registered: {e}") from None
    try:
        return _collect(pm, plugin, provider)
    except BaseException:
        pm.unregister(plugin)
        raise


def _collect(pm: pluggy.PluginManager, plugin: object, provider: Provider) -> list[Entry]:
    callers = pm.get_hookcallers(plugin) or []
    known = list(HOOKS.values())
    for caller in callers:
        if not caller.has_spec():
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PluginProblem(
                f"implements {caller.name!r}, which is not a runner hook{hint}; runner's hooks: {', '.join(known)}"
            )
    marked = {caller.name for caller in callers}
    unmarked = [hook for hook in known if hook not in marked and callable(getattr(plugin, hook, None))]
    if unmarked:
        raise PluginProblem(
            f"{unmarked[0]} is not marked with @hookimpl (from runner.api import hookimpl), so runner cannot see it"
        )
    if not callers:
        raise PluginProblem(f"implements none of runner's hooks ({', '.join(known)}); mark them with @hookimpl from runner.api")
    entries = []
    for kind, hook in HOOKS.items():
        for impl in getattr(pm.hook, hook).get_hookimpls():
            if impl.plugin is plugin:
                try:
                    result = impl.function()
                except (Exception, SystemExit) as e:
                    raise HookRaised(hook, e) from e
                entries += _entries(kind, hook, result, provider)
    return entries


def _entries(kind: str, hook: str, result: Any, provider: Provider) -> list[Entry]:
    """The records a hook returned, checked: a list of PluginSpec with valid names and callable factories."""
    if not isinstance(result, (list, tuple)):
        raise PluginProblem(f"{hook}() returned {result!r}; expected a list of PluginSpec (return [] to provide none)")
    entries = []
    for i, spec in enumerate(result):
        if not isinstance(spec, PluginSpec):
            raise PluginProblem(
                f"{hook}() item {i} is {spec!r}; expected a PluginSpec(name, factory, description) from runner.api"
            )
        if not isinstance(spec.name, str) or not NAME_RULE.match(spec.name):
            raise PluginProblem(
                f"{hook}(): {kind} name {spec.name!r} is not allowed; names are {NAME_RULE_TEXT} (e.g. 'prelu', 'two_moons')"
            )
        if not callable(spec.factory):
            raise PluginProblem(f"{hook}(): {kind} {spec.name!r} has a factory that is not callable: {spec.factory!r}")
        entries.append(Entry(kind, spec, provider))
    return entries


def _module_of(plugin: object) -> str:
    name = getattr(plugin, "__name__", None)
    return name if isinstance(name, str) else f"{type(plugin).__module__}.{type(plugin).__qualname__}"
