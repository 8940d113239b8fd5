"""``python -m runner.plugins``: every plugin, where it comes from, and every entry point that failed.

    python -m runner.plugins                 a table: kind, name, distribution, version, module
    python -m runner.plugins --json          the same as JSON (what each run logs as plugins.json)
    python -m runner.plugins --traceback     with the full traceback of each failure

The RUNNER_*_PLUGINS environment variables apply, as in a run; ``--disable`` and ``--allow`` stand
for the config keys ``plugins.disable`` and ``plugins.allow``. Exit status 1 when a name or config
file is provided twice (every run would stop), or in strict mode when anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from runner.api import RunnerError
from runner.plugins.discovery import Discovery, discover
from runner.plugins.registry import KINDS
from runner.plugins.settings import ENV_STRICT, PluginSettings


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def text(found: Discovery, show_traceback: bool = False) -> str:
    report = found.report()
    rows = sorted(report["plugins"], key=lambda p: (KINDS.index(p["kind"]), p["name"], p["distribution"]))
    parts = [
        table(
            [[p["kind"], p["name"], p["distribution"], p["version"], p["module"]] for p in rows],
            ["kind", "name", "distribution", "version", "module"],
        )
    ]
    if report["configs"]:
        parts.append(
            "configs (Hydra config groups shipped by plugins, on the search path after runner's conf/):\n"
            + table(
                [[c["distribution"], c["version"], ", ".join(c["options"]), c["path"]] for c in report["configs"]],
                ["distribution", "version", "adds", "directory"],
            )
        )
    if found.failed:
        fatal = "fatal: strict mode" if found.settings.strict else f"skipped; {ENV_STRICT}=1 makes this fatal"
        lines = [f"failed to load ({fatal}):"]
        for f in found.failed:
            lines.append(
                f"  {f.source.distribution} {f.source.version}, entry point {f.source.name!r} = {f.source.value} "
                f"[{f.source.group}]: {f.error}"
            )
            if show_traceback and f.traceback:
                lines += ["    " + line for line in f.traceback.rstrip().splitlines()]
        parts.append("\n".join(lines))
    if found.skipped:
        parts.append(
            "not loaded:\n"
            + "\n".join(
                f"  {s.source.distribution} {s.source.version}, entry point {s.source.name!r} [{s.source.group}]: {s.reason}"
                for s in found.skipped
            )
        )
    if report["warnings"]:
        parts.append("warnings:\n" + "\n".join(f"  {w}" for w in report["warnings"]))
    if report["conflicts"]:
        parts.append("errors (every run stops on these):\n" + "\n".join(f"  {c}" for c in report["conflicts"]))
    return "\n\n".join(parts)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runner.plugins",
        description="List every runner plugin, where it comes from, and every entry point that failed to load.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Environment: RUNNER_DISABLE_PLUGINS, RUNNER_ALLOW_PLUGINS, RUNNER_STRICT_PLUGINS (docs/plugins.md).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of each failure")
    parser.add_argument(
        "--disable", metavar="NAMES", help="as plugins.disable: comma-separated distributions (or dist:entry-point)"
    )
    parser.add_argument(
        "--allow",
        metavar="NAMES",
        help="as plugins.allow: load only these distributions and the built-ins ('' for built-ins only)",
    )
    parser.add_argument("--strict", action="store_true", help="as plugins.strict=true: exit 1 when anything failed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    config: dict[str, Any] = {"strict": args.strict or None}
    if args.disable is not None:
        config["disable"] = args.disable
    if args.allow is not None:
        config["allow"] = args.allow
    try:
        found = discover(PluginSettings.from_sources(config, config_name="plugins"))
    except RunnerError as e:
        print(f"runner.plugins: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(found.report(), indent=2) if args.json else text(found, args.traceback))
    problems = found.conflicts()
    try:
        found.check_strict()
    except RunnerError as e:
        problems.append(str(e))
    for problem in problems:
        print(f"runner.plugins: error: {problem}", file=sys.stderr)
    return 1 if problems else 0
