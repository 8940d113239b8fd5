"""Hydra config groups shipped by plugin distributions.

A distribution declares a directory of config groups inside one of its packages, in a second
entry-point group (next to its ``runner.plugins`` one):

    [project.entry-points."runner.configs"]
    runner-plugin-example = "runner_plugin_example.conf"

The value is a dotted package path, read as a directory: ``runner_plugin_example/conf/``, which
holds groups like runner's own ``conf/`` (``dataset/two_moons.yaml``, ``experiment/two_moons.yaml``).
It is found with ``importlib.util.find_spec`` of the top-level package, which locates the package
without importing it: finding configs runs no plugin code, so it can happen before Hydra starts.
``runner.config_search_path`` then appends each directory to Hydra's search path, after runner's own.
A config file that two sources provide (a plugin and runner, or two plugins) is an error naming both.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from runner.plugins.entry_points import Failure, Installed, Skipped, installed
from runner.plugins.settings import PluginSettings

#: The entry-point group of plugin config directories.
CONFIG_GROUP = "runner.configs"


def main_config_dir() -> Path:
    """runner's own conf/: the package ``runner.conf`` (the checkout's conf/ in an editable install)."""
    return Path(str(resources.files("runner.conf")))


def yaml_files(directory: Path) -> tuple[str, ...]:
    """The config files under ``directory``, as relative POSIX paths (``dataset/two_moons.yaml``)."""
    return tuple(
        sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    )


@dataclass(frozen=True)
class ConfigDir:
    """One plugin distribution's directory of config groups."""

    source: Installed
    path: Path
    files: tuple[str, ...]

    def options(self) -> list[str]:
        """What the directory adds, as Hydra names it: ``dataset/two_moons``, ``experiment/two_moons``."""
        return [f.rsplit(".", 1)[0] for f in self.files]

    def as_dict(self) -> dict:
        return {**self.source.as_dict(), "path": str(self.path), "options": self.options()}


def resolve(value: str) -> Path:
    """The directory a ``runner.configs`` entry point names, located without importing anything."""
    module, colon, _ = value.partition(":")
    if colon:
        raise ValueError(f"{value!r} names an object; expected a package path such as my_plugin.conf")
    top, *rest = module.strip().split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise FileNotFoundError(f"no package {top!r} is installed")
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise NotADirectoryError(f"{top!r} is a module, not a package: configs live in a package directory")
    for location in locations:
        candidate = Path(location).joinpath(*rest)
        if candidate.is_dir():
            return candidate.resolve()
    where = "/".join([top, *rest])
    raise FileNotFoundError(
        f"no directory {where}/ in {', '.join(locations)}; are the .yaml files packaged? (package-data, see docs/plugins.md)"
    )


def find_config_dirs(settings: PluginSettings) -> tuple[list[ConfigDir], list[Failure], list[Skipped]]:
    """Every config directory of an enabled distribution; the unusable ones and the skipped ones."""
    dirs, failed, skipped = [], [], []
    for source in installed(CONFIG_GROUP):
        reason = settings.exclusion(source.distribution, source.name)
        if reason:
            skipped.append(Skipped(source, reason))
            continue
        try:
            path = resolve(source.value)
            files = yaml_files(path)
            if not files:
                raise FileNotFoundError(f"no .yaml files in {path}; are they packaged? (package-data, see docs/plugins.md)")
        except Exception as e:  # noqa: BLE001 - any problem is reported, with the entry point, and skipped
            failed.append(Failure.of(source, f"{type(e).__name__}: {e}"))
            continue
        dirs.append(ConfigDir(source, path, files))
    return dirs, failed, skipped


def config_conflicts(main_dir: Path, dirs: list[ConfigDir]) -> list[str]:
    """One message per config file provided twice (no silent shadowing on Hydra's search path)."""
    owners = {f: f"runner's own conf ({main_dir})" for f in yaml_files(main_dir)} if main_dir.is_dir() else {}
    problems = []
    for d in dirs:
        for f in d.files:
            if f in owners:
                problems.append(
                    f"config {f} is provided twice: by {owners[f]} and by {d.source.distribution} "
                    f"{d.source.version} ({d.path}); uninstall or disable one of them"
                )
            else:
                owners[f] = f"{d.source.distribution} {d.source.version} ({d.path})"
    return problems
