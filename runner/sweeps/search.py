"""Hyperparameter search with Optuna's ask/tell API, driving any Hydra launcher.

The search space is written in Hydra's sweep syntax, in ``hydra.sweeper.params`` or on the command line:

    optimizer.lr: tag(log, interval(1e-4, 1.0))     a float, sampled on a log scale
    trainer.batch_size: range(32, 257, 32)          an integer grid -> categorical
    model.hidden: choice([50], [100], [100,100])    a categorical choice of any values
    seed: int(interval(0, 100))                     an integer interval

A trial whose job failed, or whose objective is NaN or infinite (a diverged run), is told to the
study as FAILED and the search goes on. With a storage (e.g. ``sqlite:///outputs/optuna.db``) and a
study name the study persists: running the same command again continues it with n_trials more.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from runner.api import RunnerError

log = logging.getLogger("runner.search")


@dataclass(frozen=True)
class Space:
    """The fixed overrides every trial gets, and the distributions Optuna samples from."""

    fixed: list[str]
    distributions: dict[str, Any]


def distribution(override: Override):
    """An Optuna distribution from one sweep override (``key=interval(...)``, ``choice(...)``, ...)."""
    import optuna.distributions as d

    sweep = override.value()
    log_scale = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, IntervalSweep):
        if sweep.start is None or sweep.end is None:
            raise RunnerError(f"hydra.sweeper.params.{override.get_key_element()}: {override.input_line!r} needs both ends")
        if isinstance(sweep.start, int) and isinstance(sweep.end, int) and not isinstance(sweep.start, bool):
            return d.IntDistribution(sweep.start, sweep.end, log=log_scale)
        return d.FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    if isinstance(sweep, RangeSweep):
        values = [v for v in override.sweep_iterator() if isinstance(v, (int, float))]  # range() yields numbers
        return d.CategoricalDistribution(values)
    if isinstance(sweep, ChoiceSweep):
        # values Optuna can store: the override text of each choice ("[100,100]" for a list)
        return d.CategoricalDistribution([Override._get_value_element_as_str(v) for v in sweep.list])
    raise RunnerError(
        f"hydra.sweeper.params.{override.get_key_element()}: cannot search over {override.input_line!r}; "
        "use interval(a, b), tag(log, interval(a, b)), range(a, b, step) or choice(...)"
    )


def search_space(params: dict[str, str] | None, arguments: list[str]) -> Space:
    """``hydra.sweeper.params`` and the command-line overrides; the command line wins for the same key."""
    parser = OverridesParser.create()
    lines = {key: f"{key}={value}" for key, value in (params or {}).items()}
    for line, override in zip(arguments, parser.parse_overrides(arguments)):
        lines[override.get_key_element()] = line
    fixed: list[str] = []
    distributions: dict[str, Any] = {}
    for line, override in zip(lines.values(), parser.parse_overrides(list(lines.values()))):
        if override.is_sweep_override():
            distributions[override.get_key_element()] = distribution(override)
        else:
            fixed.append(line)
    if not distributions:
        raise RunnerError("hydra.sweeper.params: nothing to search; give e.g. optimizer.lr: tag(log, interval(1e-4, 1))")
    return Space(fixed, distributions)


def trial_overrides(space: Space, trial) -> list[str]:
    """The overrides of one trial: the fixed ones, then key=value for every sampled parameter."""
    return space.fixed + [f"{key}={trial.params[key]}" for key in space.distributions]


def objective_value(job_return) -> float | None:
    """The job's objective, or None when the job failed or diverged (NaN, inf, not a number)."""
    try:
        value = job_return.return_value  # raises the job's exception when it failed
    except Exception as e:  # noqa: BLE001 - any job failure is a failed trial, not a failed search
        log.warning("trial failed: %s: %s", type(e).__name__, e)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        log.warning("trial failed: objective %r is not a finite number", value)
        return None
    return float(value)
