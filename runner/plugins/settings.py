"""Which plugin entry points load: the config section ``plugins`` and three environment variables.

    plugins.disable / RUNNER_DISABLE_PLUGINS   never load these (the lists add up)
    plugins.allow   / RUNNER_ALLOW_PLUGINS     load only these, plus runner's built-ins (each list given narrows)
    plugins.strict  / RUNNER_STRICT_PLUGINS    a plugin that fails to load stops the run (either one turns it on)

An item is a distribution name as pip knows it (``runner-plugin-example``; case, ``-``, ``_`` and
``.`` do not matter), or ``distribution:entry-point`` for one entry point of it. Filtering
happens before anything is imported: a disabled plugin's code never runs. The environment
can only make loading stricter than the config, never looser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.api import RunnerError

#: The distribution of runner's own plugins: never excluded by an allow-list.
BUILTIN = "runner"
ENV_DISABLE, ENV_ALLOW, ENV_STRICT = "RUNNER_DISABLE_PLUGINS", "RUNNER_ALLOW_PLUGINS", "RUNNER_STRICT_PLUGINS"
CONFIG_KEYS = ("disable", "allow", "strict")

_DIST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def canonical(distribution: str) -> str:
    """A distribution name as PyPA compares them: ``Runner_Plugin.Example`` -> ``runner-plugin-example``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


@dataclass(frozen=True)
class Selector:
    """One item of a disable or allow list: a distribution, or one entry point of it."""

    text: str  # as the user wrote it
    source: str  # where: RUNNER_DISABLE_PLUGINS, plugins.allow, --disable...
    distribution: str  # canonical
    entry_point: str | None = None

    @classmethod
    def parse(cls, text: Any, source: str) -> Selector:
        if not isinstance(text, str):
            raise RunnerError(f"{source}: expected distribution names (strings), got {text!r}")
        dist, _, entry_point = text.strip().partition(":")
        if not _DIST_NAME.match(dist) or (":" in text and not entry_point.strip()):
            raise RunnerError(
                f"{source}: {text!r} is not a distribution name; expected e.g. runner-plugin-example, "
                f"or runner-plugin-example:plugin for one of its entry points"
            )
        return cls(text.strip(), source, canonical(dist), entry_point.strip() or None)

    def matches(self, distribution: str, entry_point: str) -> bool:
        return self.distribution == canonical(distribution) and self.entry_point in (None, entry_point)


def _items(value: Any, source: str) -> list[Selector]:
    """A list from the config (or a comma-separated string, as environment variables are)."""
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, (list, tuple)):
        raise RunnerError(f"{source}: expected a list of distribution names, got {value!r}")
    return [Selector.parse(item, source) for item in value if not (isinstance(item, str) and not item.strip())]


def _flag(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise RunnerError(f"{source}: expected 1 or 0 (true or false), got {value!r}")


@dataclass(frozen=True)
class PluginSettings:
    """The effective disable list, allow-lists and strictness, each item remembering its source."""

    disable: tuple[Selector, ...] = ()
    allow: tuple[tuple[str, tuple[Selector, ...]], ...] = ()  # (source, items): every list given must admit
    strict: bool = False
    strict_source: str = ""

    @classmethod
    def from_sources(
        cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, config_name: str = "plugins"
    ) -> PluginSettings:
        """Settings from the config section ``plugins`` (``config_name`` names it in messages) and the environment."""
        environ = os.environ if environ is None else environ
        config = _plain(config)
        unknown = [key for key in config if key not in CONFIG_KEYS]
        if unknown:
            raise RunnerError(f"{config_name}.{unknown[0]}: unknown key; the plugins section takes {', '.join(CONFIG_KEYS)}")
        disable: list[Selector] = []
        allow: list[tuple[str, tuple[Selector, ...]]] = []
        if config.get("disable") is not None:
            disable += _items(config["disable"], f"{config_name}.disable")
        if ENV_DISABLE in environ:
            disable += _items(environ[ENV_DISABLE], ENV_DISABLE)
        if config.get("allow") is not None:
            allow.append((f"{config_name}.allow", tuple(_items(config["allow"], f"{config_name}.allow"))))
        if ENV_ALLOW in environ:  # set, even to "": an allow-list (empty: built-ins only)
            allow.append((ENV_ALLOW, tuple(_items(environ[ENV_ALLOW], ENV_ALLOW))))
        strict, strict_source = False, ""
        if config.get("strict") is not None and _flag(config["strict"], f"{config_name}.strict"):
            strict, strict_source = True, f"{config_name}.strict=true"
        if ENV_STRICT in environ and _flag(environ[ENV_STRICT], ENV_STRICT):
            strict, strict_source = True, f"{ENV_STRICT}={environ[ENV_STRICT]}"
        return cls(tuple(disable), tuple(allow), strict, strict_source)

    def exclusion(self, distribution: str, entry_point: str) -> str | None:
        """Why this entry point is not loaded (``"disabled by RUNNER_DISABLE_PLUGINS"``), or None to load it."""
        for item in self.disable:
            if item.matches(distribution, entry_point):
                return f"disabled by {item.source}"
        if canonical(distribution) == BUILTIN:
            return None
        for source, items in self.allow:
            if not any(item.matches(distribution, entry_point) for item in items):
                return f"not in the allow-list {source}" + ("" if items else " (empty: built-ins only)")
        return None

    def unmatched(self, installed: Iterable[tuple[str, str]]) -> list[str]:
        """Warnings for list items that name nothing installed, e.g. a typo in a distribution name."""
        installed = list(installed)
        dists = sorted({canonical(d) for d, _ in installed})
        items = list(self.disable) + [item for _, items in self.allow for item in items]
        warnings = []
        for item in items:
            if not any(item.matches(d, e) for d, e in installed):
                what = f"entry point {item.entry_point!r} of " if item.entry_point else ""
                warnings.append(
                    f"{item.source}: {item.text!r} names no installed {what}plugin distribution; "
                    f"installed: {', '.join(dists) or 'none'}"
                )
        return warnings

    def describe(self) -> dict[str, Any]:
        """Plain data for listings and the run record."""
        return {
            "disable": [f"{i.text} ({i.source})" for i in self.disable],
            "allow": [{"source": source, "names": [i.text for i in items]} for source, items in self.allow] or None,
            "strict": self.strict,
        }


def _plain(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(config):
            config = OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    if not isinstance(config, Mapping):
        raise RunnerError(f"plugins: expected a section with keys {', '.join(CONFIG_KEYS)}, got {config!r}")
    return dict(config)
