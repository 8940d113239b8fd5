"""Plugin config directories on Hydra's search path, through a Hydra SearchPathPlugin runner registers itself.

Hydra finds SearchPathPlugins by scanning the ``hydra_plugins`` namespace package; runner instead
registers its one explicitly (``Plugins.instance().register``) before ``hydra.main`` starts, so it
works the same for an editable install and a wheel. ``python -m runner --info searchpath`` shows the result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from runner.api import RunnerError
from runner.plugins.configs import ConfigDir, config_conflicts, find_config_dirs
from runner.plugins.settings import ENV_DISABLE, PluginSettings


class PluginConfigSearchPath(SearchPathPlugin):
    """Appends each enabled plugin's config directory, provider = its distribution name."""

    dirs: ClassVar[list[tuple[str, str]]] = []

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for provider, path in self.dirs:
            search_path.append(provider=provider, path=f"file://{path}")


def install(main_dir: Path, settings: PluginSettings | None = None) -> list[ConfigDir]:
    """Find the enabled plugins' config directories (environment settings only: the config is not
    composed yet) and add them to Hydra's search path. Two sources of one config file, or a broken
    config entry point in strict mode, is a RunnerError."""
    settings = settings if settings is not None else PluginSettings.from_sources(environ=os.environ)
    dirs, failed, _ = find_config_dirs(settings)
    if failed and settings.strict:
        raise RunnerError(
            f"{settings.strict_source}: "
            + "; ".join(f"{f} (disable it with {ENV_DISABLE}={f.source.distribution})" for f in failed)
        )
    problems = config_conflicts(main_dir, dirs)
    if problems:
        raise RunnerError("; ".join(problems) + f" (e.g. {ENV_DISABLE}=<distribution>)")
    PluginConfigSearchPath.dirs = [(d.source.distribution, str(d.path)) for d in dirs]
    if dirs:
        from hydra.core.plugins import Plugins

        Plugins.instance().register(PluginConfigSearchPath)
    return dirs
