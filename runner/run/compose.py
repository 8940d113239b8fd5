"""Compose: what the config says, read once and checked, before anything is built or recorded.

Each function turns one part of the composed Hydra config into plain values (a seed, a dtype, the
data folder, BLAS threads, the objective, the learning-rate schedule), or one clear line naming the
key when the config cannot be honoured.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.api import RunnerError, option
from runner.core.schedules import make_schedule

log = logging.getLogger("runner")


def plain(section: DictConfig) -> dict[str, Any]:
    """A config section (or the whole config) as plain data, interpolations resolved."""
    data = OmegaConf.to_container(section, resolve=True)
    if not isinstance(data, dict):
        raise RunnerError(f"{section._key() or 'config'}: expected a mapping of options, got {data!r}")
    return {str(k): v for k, v in data.items()}


def options(section: DictConfig, *drop: str) -> dict[str, Any]:
    """A config section as plain keyword arguments, without the keys that select the plugin."""
    return {k: v for k, v in plain(section).items() if k not in drop}


#: The options of each model type, as conf/model/<type>.yaml has them.
MODEL_KEYS = {
    "mlp": ("type", "hidden", "activation", "output_activation", "norm", "dropout", "linear"),
    "sequential": ("type", "layers"),
    "graph": ("type", "nodes", "output"),
    "cnn": ("type", "channels", "kernel", "padding", "pool", "norm", "activation", "hidden", "dropout", "conv", "linear"),
}


def model_as_chosen(cfg: DictConfig, hydra_cfg) -> None:
    """``cfg.model`` as the model group the user chose. Hydra merges an experiment's ``model:`` keys onto
    whichever model the group gives, so ``+experiment=iris model=sequential`` also carries the
    experiment's mlp options (``hidden``, ``linear``, ...): options of the other model type are left
    out here, before anything is recorded. What cannot be honoured is one clear line: a ``model.type``
    that contradicts the ``model=...`` the user wrote, or an option of the other type the user wrote."""
    model = cfg.get("model")
    kind = model.get("type") if isinstance(model, DictConfig) else None
    if kind not in MODEL_KEYS:
        return  # layer_configs names it
    choices, overrides = hydra_cfg.runtime.choices, list(hydra_cfg.overrides.task)
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    choice, experiment = choices.get("model"), choices.get("experiment")
    if "model" in keys and choice in MODEL_KEYS and choice != kind:  # the user chose a model group; something else set model.type
        if "model.type" in keys:
            written = overrides[keys.index("model.type")]
            raise RunnerError(f"{written}: contradicts model={choice}; choose the model with model={kind} alone")
        source = f"+experiment={experiment}" if experiment else "the config"
        raise RunnerError(
            f"model={choice}: {source} sets model.type: {kind} itself, which overrides model={choice}; "
            f"add model.type={choice} to the command line (an experiment should select its model with "
            f"'- override /model: {kind}' in its defaults list instead of setting model.type)"
        )
    other = [k for k in model if k not in MODEL_KEYS[kind] and any(k in ks for ks in MODEL_KEYS.values())]
    for key, override in zip(keys, overrides):
        option = key.split(".")[1] if key.startswith("model.") else None
        if option in other:
            owner = next(t for t, ks in MODEL_KEYS.items() if option in ks)
            raise RunnerError(
                f"{override}: model.{option} is an option of model={owner}, but the model is {kind} "
                f"(model={choice}); its options: {', '.join(f'model.{k}' for k in MODEL_KEYS[kind][1:])}"
            )
    if other:
        log.info(
            "model=%s: leaving out %s, options of another model type%s",
            choice,
            ", ".join(f"model.{k}" for k in other),
            f" set by +experiment={experiment}" if experiment else "",
        )
        with open_dict(model):
            for key in other:
                model.pop(key)


def data_dir(cfg: DictConfig) -> Path:
    """Where datasets live: ``data_dir``, or the user's cache (``$XDG_CACHE_HOME/runner/data``)."""
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "runner" / "data"


def dtype_of(cfg: DictConfig) -> np.dtype:
    if cfg.dtype not in ("float32", "float64"):
        raise RunnerError(f"dtype: expected 'float32' or 'float64', got {cfg.dtype!r}")
    return np.dtype(cfg.dtype)


def objective(cfg: DictConfig, meta) -> tuple[str, str]:
    """(metric, direction) the run returns to Hydra's sweeper: by default val/accuracy (maximize),
    or val/mae (minimize) for regression."""
    score = "mae" if meta.task == "regression" else "accuracy"
    metric = cfg.objective.metric or f"val/{score}"
    measured = [
        f"{split}/{key}" for split in ("val", "test", "train") for key in ("loss", score) if (split, key) != ("train", "loss")
    ] + ["train/loss"]
    if metric not in measured:
        raise RunnerError(
            f"objective.metric: {metric!r} is not measured for a {meta.task} task; expected one of {', '.join(measured)}"
        )
    direction = cfg.objective.direction or ("maximize" if metric.endswith("accuracy") else "minimize")
    if direction not in ("maximize", "minimize"):
        raise RunnerError(f"objective.direction: expected 'maximize' or 'minimize', got {direction!r}")
    return metric, direction


def blas_threads(cfg: DictConfig, hydra_cfg) -> int:
    """BLAS threads for this job: ``threads``, or the CPUs of the Ray task it runs in, or the cores shared among the
    launcher's parallel jobs."""
    if cfg.threads is not None:
        return option("threads", cfg.threads, int, lambda v: v >= 1, "a positive number of BLAS threads or null (auto)")
    task = ray_task()
    if task is not None:  # Ray counts on the task using the CPUs it was given (hydra.launcher.ray.remote.num_cpus), no more
        return max(1, int(task.get_assigned_resources().get("CPU", 0)))
    parallel = hydra_cfg.launcher.get("n_jobs") if hydra_cfg.get("launcher") else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(parallel, int) and parallel > 0:
        return max(1, cores // min(parallel, cores))
    return cores


def spare_core(cfg: DictConfig, hydra_cfg) -> bool:
    """Whether a core is left over by this job's BLAS threads and the jobs beside it (the sidecar's painter process
    draws there; where there is none, it would only slow the training down: runner.tracking.painter)."""
    if ray_task() is not None:
        return False  # the node's other CPUs are Ray's to give
    parallel = hydra_cfg.launcher.get("n_jobs") if hydra_cfg.get("launcher") else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = parallel if isinstance(parallel, int) and parallel > 0 else 1
    return blas_threads(cfg, hydra_cfg) * jobs < cores


def painter_allowed(cfg: DictConfig, hydra_cfg) -> bool:
    """Whether the sidecar may draw in a second process (runner.tracking.painter). Not in a Ray task: the node's other
    CPUs are Ray's to give. A forked painter (Linux) costs nothing until it draws, and then it draws what the sidecar
    would have drawn, while the run waits for it at its end: always. A spawned one imports for about a second of CPU
    while the run trains: only where a core is left over (``spare_core``)."""
    from runner.tracking.painter import forks

    if ray_task() is not None:
        return False
    return forks() or spare_core(cfg, hydra_cfg)


def ray_task():
    """The runtime context of the Ray task this job runs in (hydra/launcher=ray_cluster), else None. Ray is looked up,
    never imported: a Ray worker has loaded it already, and a process that has not is in no Ray task."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return context if context.worker.mode == ray.WORKER_MODE else None  # not the driver (the sweep's launching process)


def ray_tags() -> dict[str, str]:
    """Where the job ran, when in a Ray task: its node's id and IP (``ray.nodes()`` lists them)."""
    task = ray_task()
    if task is None:
        return {}
    return {"runner.ray.node_id": task.get_node_id(), "runner.ray.node_ip": sys.modules["ray"].util.get_node_ip_address()}


def lr_schedule(cfg: DictConfig, optimizer, total_steps: int):
    """The configured schedule over optimizer.lr, or None for an optimizer without a learning rate."""
    name = cfg.schedule.name
    if not hasattr(optimizer, "lr"):
        if name != "constant":
            raise RunnerError(f"schedule.name: {name!r} needs an optimizer with a learning rate; {cfg.optimizer.name!r} has none")
        return None
    return make_schedule(name, float(optimizer.lr), total_steps, options(cfg.schedule, "name"))


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def threadpool_info() -> str:
    from threadpoolctl import threadpool_info as info

    return ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in info() if p["user_api"] == "blas") or "none"
