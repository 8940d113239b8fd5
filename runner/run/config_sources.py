"""Hydra's config sources, with a config file that is not valid YAML as one clear line.

Hydra loads each config file (runner's conf/, a plugin's shipped configs, a user's
``hydra.searchpath=[file://./conf]``) with ``OmegaConf.load``; a YAML syntax error there came out
as a ~95-line ``yaml.parser.ParserError`` traceback. These subclasses of Hydra's ``file://`` and
``pkg://`` sources turn it into one line naming the file, line and column, and exit status 1:
``runner: error: /abs/conf/experiment/mine.yaml, line 4, column 8: invalid YAML: expected ',' or ']', ...``
(a ``SystemExit``: Hydra reports any ``Exception`` with a traceback or a hint after it; one raised in a
joblib worker comes back to the launching process and ends it the same way). ``HYDRA_FULL_ERROR=1``
shows the traceback instead.
``install()`` puts them in Hydra's registry of sources before ``hydra.main`` builds its search path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import yaml
from hydra._internal.core_plugins.file_config_source import FileConfigSource as _HydraFileConfigSource
from hydra._internal.core_plugins.importlib_resources_config_source import (
    ImportlibResourcesConfigSource as _HydraImportlibResourcesConfigSource,
)
from hydra._internal.sources_registry import SourcesRegistry
from hydra.errors import ConfigCompositionException
from hydra.plugins.config_source import ConfigResult, ConfigSource


class ConfigSyntaxError(SystemExit):
    """A config file Hydra cannot parse: ``SystemExit(message)`` prints the message and exits with status 1."""


def syntax_message(error: Exception, fallback: str) -> str:
    """``<file>, line L, column C: invalid YAML: <problem> (<context> at line L, column C)``, 1-based."""
    if isinstance(error, UnicodeDecodeError):
        return f"runner: error: {fallback}: not UTF-8 text ({error.reason} at byte {error.start})"
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    name = getattr(mark, "name", None)
    where = name if name and not name.startswith("<") else fallback
    if mark is not None:
        where += f", line {mark.line + 1}, column {mark.column + 1}"
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        problem += f" ({context})"
    return f"runner: error: {where}: invalid YAML: {problem}"


@contextmanager
def _one_line(source: ConfigSource, config_path: str) -> Iterator[None]:
    try:
        yield
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        fallback = f"{source.full_path().rstrip('/')}/{ConfigSource._normalize_file_name(config_path)}"
        message = syntax_message(e, fallback)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise ConfigCompositionException(message) from e
        raise ConfigSyntaxError(message) from None


# Named as Hydra's own classes: Hydra's registry keeps (rather than refuses) a second registration of a name it holds.
class FileConfigSource(_HydraFileConfigSource):
    """``file://``: Hydra's, with a YAML syntax error as one line."""

    def load_config(self, config_path: str) -> ConfigResult:
        with _one_line(self, config_path):
            return super().load_config(config_path)


class ImportlibResourcesConfigSource(_HydraImportlibResourcesConfigSource):
    """``pkg://`` (Hydra's own configs, its plugins', a wheel's): Hydra's, with a YAML syntax error as one line."""

    def load_config(self, config_path: str) -> ConfigResult:
        with _one_line(self, config_path):
            return super().load_config(config_path)


def install() -> None:
    """Use these sources for ``file://`` and ``pkg://`` from now on (call after ``Plugins.instance()``,
    which registers Hydra's own)."""
    types = SourcesRegistry.instance().types
    for source in (FileConfigSource, ImportlibResourcesConfigSource):
        types[source.scheme()] = source
