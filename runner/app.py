"""The Hydra task: compose plugins, data, model and tracking into one recorded run."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from runner.api import DataContext, RunnerError
from runner.gradcheck import check_model, max_rel_error
from runner.model import build_model, mlp_layers
from runner.registry import Entry, Registry, load_registry
from runner.tracking import Tracker, default_store, flatten
from runner.schedules import make_schedule
from runner.train import TrainerConfig, targets_for, train

log = logging.getLogger("runner")


def options(section: DictConfig, *drop: str) -> dict:
    """A config section as plain keyword arguments, without the keys that select the plugin."""
    return {k: v for k, v in OmegaConf.to_container(section, resolve=True).items() if k not in drop}


def layer_configs(cfg: DictConfig, registry: Registry) -> list[dict]:
    model = cfg.model
    if model.type == "mlp":
        for key in ("activation", "output_activation", "norm"):
            if model.get(key):
                registry.get("layer", model[key], f"model.{key}")
        return mlp_layers(model.hidden, model.activation, model.get("output_activation"), options(model.linear),
                          model.get("dropout", 0.0), model.get("norm"))
    if model.type == "sequential":
        return [dict(layer) for layer in OmegaConf.to_container(model.layers, resolve=True)]
    raise RunnerError(f"model.type: expected 'mlp' or 'sequential', got {model.type!r}")


def data_dir(cfg: DictConfig) -> Path:
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "runner" / "data"


def dtype_of(cfg: DictConfig) -> np.dtype:
    if cfg.dtype not in ("float32", "float64"):
        raise RunnerError(f"dtype: expected 'float32' or 'float64', got {cfg.dtype!r}")
    return np.dtype(cfg.dtype)


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def experiment_name(cfg: DictConfig) -> str:
    from hydra.core.hydra_config import HydraConfig

    if cfg.tracking.experiment:
        return str(cfg.tracking.experiment)
    return HydraConfig.get().runtime.choices.get("experiment") or "default"


def execute(cfg: DictConfig) -> float:
    """One run; returns the objective (validation accuracy, or minus validation mae)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    seed = int(cfg.seed)
    dtype = dtype_of(cfg)
    init_seed, batch_seed, check_seed = np.random.SeedSequence(seed).spawn(3)

    registry: Registry = load_registry()
    used: list[Entry] = []

    def plugin(kind: str, section: DictConfig, key: str) -> object:
        entry = registry.get(kind, section.name, f"{key}.name")
        used.append(entry)
        return entry.create(options(section, "name"), f"{key} ({section.name})")

    dataset = plugin("dataset", cfg.dataset, "dataset")
    splits = dataset.load(DataContext(data_dir(cfg), seed, dtype))
    model = build_model(layer_configs(cfg, registry), registry, splits.meta, np.random.default_rng(init_seed), dtype)
    used += [registry.get("layer", t, "model") for t in dict.fromkeys(model.types)]
    loss = plugin("loss", cfg.loss, "loss")
    optimizer = plugin("optimizer", cfg.optimizer, "optimizer")
    trainer = TrainerConfig(**options(cfg.trainer))
    trainer.validate(len(splits.train))
    learning_rate = lr_schedule(cfg, optimizer, trainer.total_steps(len(splits.train)))

    cwd = Path.cwd()
    outputs = Path(cfg.tracking.outputs)
    uri, artifacts = (cfg.tracking.uri, None) if cfg.tracking.uri else default_store(cwd / outputs)
    name = experiment_name(cfg)
    log.info("data %s: %d train / %d val / %d test; model %s (%d parameters)", splits.meta.name,
             len(splits.train), len(splits.val), len(splits.test), model.summary(), model.parameter_count())
    tracker = Tracker(uri, name, f"{name}-{model.summary()}-{cfg.optimizer.name}", artifacts)
    try:
        tracker.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
        tags = {f"runner.plugin.{e.kind}.{e.name}": e.provider for e in used}
        tags["runner.overrides"] = " ".join(hydra_cfg.overrides.task)
        tags["runner.command"] = " ".join(sys.argv)
        tags["runner.seed"] = seed
        commit = git_commit(cwd)
        if commit:
            tags["mlflow.source.git.commit"] = commit
        tracker.set_tags(tags)

        if cfg.gradcheck.enabled:
            gradient_check(cfg, model, loss, splits, int(check_seed.generate_state(1)[0]), tracker)
        final = train(model, loss, optimizer, splits, trainer, np.random.default_rng(batch_seed), tracker.log_metrics, learning_rate)

        run_dir = Path(hydra_cfg.runtime.output_dir)
        weights = run_dir / "model.npz"
        np.savez(weights, **model.params, **model.buffers)
        (run_dir / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        tracker.log_artifact(weights)
        tracker.log_artifact(run_dir / "config.resolved.yaml")
        tracker.log_artifact(run_dir / ".hydra", "hydra")
        if (run_dir / "runner.log").is_file():
            tracker.log_artifact(run_dir / "runner.log")
    except KeyboardInterrupt:
        tracker.set_tags({"runner.error": "interrupted"})
        tracker.end("KILLED")
        raise
    except BaseException as e:
        tracker.set_tags({"runner.error": f"{type(e).__name__}: {e}"[:5000]})
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    log.info("final: %s", "  ".join(f"{k} {v:.4f}" for k, v in final.items() if k != "epoch"))
    log.info("recorded as run %s in experiment %r of %s; browse it with: %s", tracker.run_id, name, uri, tracker.ui_command())
    return final["val/accuracy"] if "val/accuracy" in final else -final["val/mae"]


def lr_schedule(cfg: DictConfig, optimizer, total_steps: int):
    """The configured schedule over optimizer.lr, or None for an optimizer without a learning rate."""
    name = cfg.schedule.name
    if not hasattr(optimizer, "lr"):
        if name != "constant":
            raise RunnerError(f"schedule.name: {name!r} needs an optimizer with a learning rate; {cfg.optimizer.name!r} has none")
        return None
    return make_schedule(name, float(optimizer.lr), total_steps, options(cfg.schedule, "name"))


def gradient_check(cfg: DictConfig, model, loss, splits, seed: int, tracker: Tracker) -> None:
    """Backprop against central differences on a float64 copy, per parameter, before training."""
    gc = cfg.gradcheck
    sample = splits.train.x[: gc.samples], targets_for(splits.train.y[: gc.samples], splits.meta, loss, splits.train.x.dtype)
    checks = check_model(model, loss, *sample, eps=gc.eps, max_entries=gc.max_entries, seed=seed)
    metrics = {}
    for name, c in checks.items():
        metrics[f"gradcheck/{name}/max_abs_diff"] = c.max_abs_diff
        metrics[f"gradcheck/{name}/rel_error"] = c.rel_error
    worst = max_rel_error(checks)
    kinks = sum(c.kinks for c in checks.values())
    metrics["gradcheck/max_rel_error"] = worst
    metrics["gradcheck/kinks_skipped"] = kinks
    tracker.log_metrics(metrics, 0)
    passed = worst <= gc.threshold
    tracker.set_tags({"runner.gradcheck": "passed" if passed else "failed"})
    log.info("gradient check: max relative error %.2e over %d parameter arrays, %d entries at kinks skipped (threshold %.0e)",
             worst, len(checks), kinks, gc.threshold)
    if not passed:
        message = f"gradient check failed: max relative error {worst:.2e} > gradcheck.threshold {gc.threshold:.0e}"
        if gc.fail:
            raise RunnerError(message)
        log.warning(message)


def task(cfg: DictConfig) -> float:
    """Run; a user's mistake becomes one clear line and exit 1 (a traceback with HYDRA_FULL_ERROR=1)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return execute(cfg)
    except RunnerError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"runner: error: {e}", file=sys.stderr)
        sys.exit(1)
