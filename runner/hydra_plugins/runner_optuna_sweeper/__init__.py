"""runner's Optuna sweeper for Hydra (``hydra/sweeper=runner_optuna``), on Optuna's ask/tell API.

Hydra only instantiates plugin classes that live in the ``hydra_plugins`` namespace, so this
module is installed as ``hydra_plugins.runner_optuna_sweeper`` (see pyproject.toml); the search
logic is in ``runner.search``. A wheel install is found by Hydra's scan of ``hydra_plugins``; an
editable install is not (its namespace path is a path hook), so ``python -m runner`` registers the
class itself before Hydra starts (runner/__main__.py). Registering here, at import, would recurse:
Hydra imports this module while building ``Plugins.instance()``.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any, Literal

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from runner.api import RunnerError
from runner.sweeps.search import objective_value, search_space, trial_overrides

log = logging.getLogger("runner.search")

Direction = Literal["minimize", "maximize"]


def direction_of(value: str) -> Direction:
    """``hydra.sweeper.direction``: minimize or maximize (the objective is the task's return value)."""
    if value == "minimize":
        return "minimize"
    if value == "maximize":
        return "maximize"
    raise RunnerError(f"hydra.sweeper.direction: expected 'minimize' or 'maximize', got {value!r}")


def open_storage(url: str | None, attempts: int = 5):
    """An Optuna storage URL opened as an ``RDBStorage``. Optuna creates its tables the first time a database is
    opened: sweeps started at once on a fresh database race (on PostgreSQL the loser fails with a duplicate key on the
    ``trialstate`` enum type); the loser finds the tables made on its next try."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    if url is None or "://" not in url:
        return url
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.2)
    return url


def ask(study, distributions: dict[str, Any], seed: int | None):
    """A new trial, its parameters drawn by a sampler seeded from (``seed``, the trial's number). One sampler seeded
    once would draw the same points in every process that shares the study (two machines' sweeps started at once, or
    a study continued later); the trial's number is unique in the study, so the draws differ, and a lone sweep is
    still reproducible from its seed."""
    import numpy as np
    import optuna

    trial = study.ask()
    if seed is not None:
        study.sampler = optuna.samplers.TPESampler(seed=int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0]))
    for name, d in distributions.items():
        if isinstance(d, optuna.distributions.FloatDistribution):
            trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, optuna.distributions.IntDistribution):
            trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        else:
            trial.suggest_categorical(name, d.choices)
    return trial


class RunnerOptunaSweeper(Sweeper):
    def __init__(
        self,
        n_trials: int = 20,
        n_jobs: int = 1,
        direction: str = "maximize",
        study_name: str | None = None,
        storage: str | None = None,
        seed: int | None = None,
        params: dict[str, str] | None = None,
    ):
        self.n_trials, self.n_jobs, self.direction = int(n_trials), max(1, int(n_jobs)), direction_of(direction)
        self.study_name, self.storage, self.seed = study_name, storage, seed
        self.params = dict(params or {})

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        launcher, config = self.launcher, self.config
        if launcher is None or config is None:
            raise RuntimeError("RunnerOptunaSweeper.sweep() before setup(): Hydra sets a sweeper up first")
        space = search_space(self.params, arguments)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage),
            direction=self.direction,
            sampler=optuna.samplers.TPESampler(seed=self.seed),
            load_if_exists=True,  # a study on a shared storage is created by whichever process comes first
        )
        done_before = len(study.trials)
        log.info(
            "study %r (%s): %d trials before this sweep; searching %s",
            study.study_name,
            self.storage or "in memory",
            done_before,
            ", ".join(space.distributions),
        )
        job_index = 0
        while job_index < self.n_trials:
            trials = [ask(study, space.distributions, self.seed) for _ in range(min(self.n_jobs, self.n_trials - job_index))]
            returns = launcher.launch([trial_overrides(space, t) for t in trials], initial_job_idx=job_index)
            for trial, job_return in zip(trials, returns):
                value = objective_value(job_return)
                if value is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, value)
            job_index += len(trials)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        results = {"study": study.study_name, "trials": len(study.trials), "failed": len(study.trials) - len(complete)}
        if complete:
            results.update(best_value=study.best_value, best_params=study.best_params, best_trial=study.best_trial.number)
            log.info(
                "best trial %d: %s = %s with %s", study.best_trial.number, self.direction, study.best_value, study.best_params
            )
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        return results
