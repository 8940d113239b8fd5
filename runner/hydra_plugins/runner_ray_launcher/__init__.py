"""runner's Hydra launcher for a Ray cluster (``hydra/launcher=ray_cluster``): hydra-ray-launcher's way of running each
job as a Ray task, fit for runner's sweeps (runner.sweeps.ray_launch says how).

Hydra only instantiates plugin classes that live in the ``hydra_plugins`` namespace, so this module is installed as
``hydra_plugins.runner_ray_launcher`` (see pyproject.toml), and ``python -m runner`` registers the class itself for
editable installs (runner/__main__.py), as it does its Optuna sweeper. Importing it imports neither Ray nor
hydra-ray-launcher: Hydra imports every plugin module when it starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RunnerRayLauncher(Launcher):
    def __init__(self, ray: DictConfig) -> None:
        self.ray = ray  # init: ray.init's arguments; remote: ray.remote's options for each job's task
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runner.sweeps.ray_launch import launch

        return launch(self, job_overrides, initial_job_idx)
