"""Build: the run's plugins, data and model, from the composed config.

What the config alone can get wrong (a plugin name, an option, the model's layers) is checked before
the data loads; the model's shapes are checked against the data before anything is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from runner.api import DataContext, Loss, Optimizer, Splits
from runner.core.model import Sequential, build_model, layer_configs, shaped_for
from runner.core.train import TrainerConfig
from runner.core.watch import WatchConfig
from runner.plugins.discovery import load_registry
from runner.plugins.registry import Entry, Registry
from runner.run.compose import data_dir, lr_schedule, objective, options, plain

log = logging.getLogger("runner")

#: Below this many FLOPs of matrix products per training step a second BLAS thread gains nothing and costs
#: a lot (docs/benchmarks.md, "Threads"): with ``threads: null`` smaller models get 1 thread.
SMALL_STEP_FLOPS = 100e6


@dataclass
class Built:
    """Everything a run trains with, and what it was built from."""

    registry: Registry
    used: list[Entry]  # the plugins the run uses: dataset, layers, loss, optimizer (tagged on the run)
    splits: Splits
    model: Sequential
    loss: Loss
    optimizer: Optimizer
    trainer: TrainerConfig
    learning_rate: Callable[[int], float] | None
    metric: str  # the objective returned to Hydra, e.g. val/accuracy
    direction: str  # maximize or minimize
    store: Any = None  # what ``before_data`` returned: the MLflow store prepared while the data loaded
    #: copies of the convolution kernels (4-axis parameters) as initialised, for the report's filters before
    #: training (a resumed run rebuilds the same initial weights from its seed before loading its checkpoint)
    initial_kernels: dict[str, np.ndarray] = field(default_factory=dict)
    #: the config section ``watch``, checked (runner.core.watch)
    watch: WatchConfig = field(default_factory=lambda: WatchConfig(enabled=False))


def step_flops(model, batch_size: int) -> float:
    """FLOPs of a training step's matrix products: forward, d(weights) and d(input), 2 m n k each
    (a layer that knows its forward product's FLOPs per sample says so: ``matmul_flops``, conv2d's)."""
    dense = sum(6.0 * batch_size * w.shape[0] * w.shape[1] for w in model.params.values() if w.ndim == 2)
    return dense + sum(3.0 * batch_size * getattr(layer, "matmul_flops", 0) for layer in model.layers)


#: A sweep's jobs run one after another in one process (Hydra's basic launcher, a joblib worker): the splits the last
#: job loaded, with what they were loaded from; a job that loads the same dataset (plugin, options, data folder, seed,
#: dtype) takes them instead of loading again (0.5 s of a default MNIST job). Their arrays are read-only: training only
#: reads them, and a write would otherwise reach the next job.
_last_splits: dict[tuple, Splits] = {}


def load_splits(entry: Entry, dataset: Any, section: DictConfig, context: DataContext, reuse: bool) -> Splits:
    """``dataset.load(context)``, or, with ``reuse`` (a sweep's job), the last job's splits when they were loaded from
    the same plugin, options, folder, seed and dtype."""
    import json

    key = (
        str(entry.provider),
        json.dumps(plain(section), sort_keys=True, default=str),
        str(context.data_dir),
        context.seed,
        str(context.dtype),
    )
    if reuse and key in _last_splits:
        log.debug("dataset %s: the splits of the sweep's previous job", section.name)
        return _last_splits[key]
    splits = dataset.load(context)
    _last_splits.clear()
    if reuse:
        for split in (splits.train, splits.val, splits.test):
            for array in (split.x, split.y):
                if isinstance(array, np.ndarray):
                    array.flags.writeable = False
        _last_splits[key] = splits
    return splits


def build(
    cfg: DictConfig,
    seed: int,
    dtype: np.dtype,
    init_seed: np.random.SeedSequence,
    before_data: Callable[[], Any] = lambda: None,
    reuse_data: bool = False,
) -> Built:
    """Plugins from the registry, the dataset loaded, the model built; ``before_data`` runs once the
    config is checked and before the data loads (the store is prepared meanwhile); ``reuse_data``: a sweep's
    job, which may take the previous job's splits (``load_splits``)."""
    registry: Registry = load_registry(cfg.get("plugins"))  # plugins.disable / allow / strict (docs/plugins.md)
    used: list[Entry] = []

    def plugin(kind: str, section: DictConfig, key: str) -> Any:
        entry = registry.get(kind, section.name, f"{key}.name")
        used.append(entry)
        return entry.create(options(section, "name"), f"{key} ({section.name})")

    dataset = plugin("dataset", cfg.dataset, "dataset")
    dataset_entry = used[-1]
    layers = layer_configs(plain(cfg.model), registry)
    loss = plugin("loss", cfg.loss, "loss")
    optimizer = plugin("optimizer", cfg.optimizer, "optimizer")
    trainer = TrainerConfig(**options(cfg.trainer))
    watch = WatchConfig(**options(cfg.watch)) if cfg.get("watch") is not None else WatchConfig(enabled=False)
    watch.validate()
    store = before_data()
    splits = load_splits(dataset_entry, dataset, cfg.dataset, DataContext(data_dir(cfg), seed, dtype), reuse_data)
    model = build_model(layers, registry, splits.meta, np.random.default_rng(init_seed), dtype)
    splits = shaped_for(model, splits)  # images for a model that starts with a convolution
    used[1:1] = [registry.get("layer", t, "model") for t in dict.fromkeys(model.types)]  # dataset, layers, loss, optimizer
    trainer.validate(len(splits.train))
    if cfg.threads is None and step_flops(model, trainer.batch_size) < SMALL_STEP_FLOPS:
        threadpool_limits(limits=1, user_api="blas")  # task()'s limits restore the previous ones afterwards
    learning_rate = lr_schedule(cfg, optimizer, trainer.total_steps(len(splits.train)))
    metric, direction = objective(cfg, splits.meta)
    log.info(
        "data %s: %d train / %d val / %d test; model %s (%d parameters)",
        splits.meta.name,
        len(splits.train),
        len(splits.val),
        len(splits.test),
        model.summary(),
        model.parameter_count(),
    )
    kernels = {name: p.copy() for name, p in model.params.items() if p.ndim == 4}
    return Built(registry, used, splits, model, loss, optimizer, trainer, learning_rate, metric, direction, store, kernels, watch)
