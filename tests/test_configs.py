"""Every option of every config group, and every experiment, composed in-process as ``python -m runner``
composes them (runner's conf/ through ``runner.conf``, plugin config directories on the search path,
runner's config sources), then checked for what it should say: the dataset, model, loss and optimizer
it names, its learning rate, its trainer settings, and that the plugins it names accept its options.

Options are found on disk, so a new config file is composed here without a new test; a new experiment
also needs its line in EXPERIMENTS (the test says so).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.core.model import layer_configs
from runner.core.schedules import make_schedule
from runner.core.train import TrainerConfig
from runner.plugins.configs import main_config_dir
from runner.plugins.registry import Registry
from runner.plugins.search_path import install as install_plugin_configs
from runner.run.config_sources import install as install_config_sources
from runner.testing import plugin_registry

CONF = main_config_dir()
#: The groups whose options are the files conf/<group>/*.yaml (experiment is tested on its own).
GROUPS = ("model", "dataset", "loss", "optimizer", "schedule", "trainer", "hparams_search", "hydra/launcher", "hydra/sweeper")


def options_of(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def search_path(monkeypatch_module: pytest.MonkeyPatch) -> None:
    """What runner/__main__.py sets up before Hydra: runner's config sources and the plugin config
    directories (with the developer's plugin switches left out, as in every test run)."""
    for name in ("RUNNER_DISABLE_PLUGINS", "RUNNER_ALLOW_PLUGINS", "RUNNER_STRICT_PLUGINS"):
        monkeypatch_module.delenv(name, raising=False)
    install_config_sources()
    install_plugin_configs(CONF)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def registry() -> Registry:
    return plugin_registry()  # runner's built-ins, as a run finds them


@contextmanager
def hydra_config_dir() -> Iterator[None]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test_configs"):
        yield


def composed(*overrides: str, hydra: bool = False) -> DictConfig:
    """The config ``python -m runner <overrides>`` composes; ``hydra=True`` keeps the hydra section."""
    with hydra_config_dir():
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """Every interpolation outside the hydra section resolved (a broken one fails here, not in a run)."""
    plain: dict[str, Any] = {}
    for key in cfg:
        if key != "hydra":
            value = cfg[key]
            plain[str(key)] = (
                OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
            )
    return plain


def plugin_options(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "name"}


def check_runnable(cfg: DictConfig, registry: Registry) -> dict[str, Any]:
    """What a run reads first, from a composed config: each plugin the config names exists and accepts
    the options it is given, the model's layers expand, the trainer and the schedule are valid."""
    plain = resolved(cfg)
    for kind in ("dataset", "loss", "optimizer"):
        section = plain[kind]
        entry = registry.get(kind, section["name"], f"{kind}.name")
        entry.create(plugin_options(section), f"{kind} ({section['name']})")
    layers = layer_configs(plain["model"], registry)
    types = [layer.type if hasattr(layer, "type") else layer["type"] for layer in layers]  # a graph's nodes, a chain's dicts
    assert types and all(registry.get("layer", t, "model") for t in types)
    trainer = TrainerConfig(**plain["trainer"])
    trainer.validate(n_train=10_000)
    total = trainer.total_steps(10_000)
    schedule = plain["schedule"]
    learning_rate = make_schedule(schedule["name"], float(plain["optimizer"]["lr"]), total, plugin_options(schedule))
    assert all(math.isfinite(learning_rate(t)) and learning_rate(t) >= 0 for t in (1, total // 2, total))
    return plain


# --------------------------------------------------------------------------- the primary config


def test_the_primary_config_composes_to_its_defaults(registry: Registry) -> None:
    plain = check_runnable(composed(), registry)
    assert (plain["model"]["type"], plain["dataset"]["name"], plain["loss"]["name"]) == ("mlp", "iris", "softmax_cross_entropy")
    assert (plain["optimizer"]["name"], plain["optimizer"]["lr"], plain["schedule"]["name"]) == ("sgd", 0.1, "constant")
    assert plain["seed"] == 0 and plain["dtype"] == "float32"


def test_every_group_has_options() -> None:
    assert {group: options_of(group) for group in GROUPS if not options_of(group)} == {}


# --------------------------------------------------------------------------- each option of each group


@pytest.mark.parametrize("option", options_of("model"))
def test_model_option(option: str, registry: Registry) -> None:
    plain = check_runnable(composed(f"model={option}"), registry)
    assert plain["model"]["type"] == option


@pytest.mark.parametrize("option", options_of("dataset"))
def test_dataset_option(option: str, registry: Registry) -> None:
    cfg = composed(f"dataset={option}")
    plain = resolved(cfg)
    assert plain["dataset"]["name"] == option
    registry.get("dataset", option, "dataset.name").create(plugin_options(plain["dataset"]), f"dataset ({option})")


@pytest.mark.parametrize("option", options_of("loss"))
def test_loss_option(option: str, registry: Registry) -> None:
    plain = resolved(composed(f"loss={option}"))
    assert plain["loss"]["name"] == option
    registry.get("loss", option, "loss.name").create(plugin_options(plain["loss"]), f"loss ({option})")


@pytest.mark.parametrize("option", options_of("optimizer"))
def test_optimizer_option(option: str, registry: Registry) -> None:
    plain = check_runnable(composed(f"optimizer={option}"), registry)
    assert plain["optimizer"]["name"] == option
    lr = plain["optimizer"]["lr"]
    assert isinstance(lr, float) and 0 < lr <= 1, lr


@pytest.mark.parametrize("option", options_of("schedule"))
def test_schedule_option(option: str, registry: Registry) -> None:
    plain = check_runnable(composed(f"schedule={option}", "optimizer.lr=0.5", "trainer.iterations=2000"), registry)
    assert plain["schedule"]["name"] == option
    rate = make_schedule(option, 0.5, 2000, plugin_options(plain["schedule"]))
    assert rate(2000) <= 0.5 and (rate(1000) == 0.5 or option != "constant")


@pytest.mark.parametrize("option", options_of("trainer"))
def test_trainer_option(option: str, registry: Registry) -> None:
    plain = check_runnable(composed(f"trainer={option}"), registry)
    assert plain["trainer"]["batch_size"] > 0 and plain["trainer"]["sampling"] in ("shuffle", "replacement")


@pytest.mark.parametrize("option", options_of("hparams_search"))
def test_hparams_search_option(option: str, registry: Registry) -> None:
    from runner.sweeps.search import search_space

    cfg = composed("+experiment=mnist", f"hparams_search={option}", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.runner_optuna_sweeper.RunnerOptunaSweeper"
    assert sweeper.direction in ("minimize", "maximize") and sweeper.direction == cfg.objective.direction
    params = OmegaConf.to_container(sweeper.params, resolve=True)
    assert isinstance(params, dict) and params
    space = search_space({str(k): str(v) for k, v in params.items()}, [])
    assert set(space.distributions) == set(params)
    check_runnable(cfg, registry)


@pytest.mark.parametrize("option", options_of("hydra/sweeper"))
def test_hydra_sweeper_option(option: str) -> None:
    cfg = composed(f"hydra/sweeper={option}", hydra=True)
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.runner_optuna_sweeper.RunnerOptunaSweeper"
    assert cfg.hydra.sweeper.n_trials > 0 and cfg.hydra.sweeper.direction in ("minimize", "maximize")


#: hydra/launcher options, the Hydra plugin each needs (an optional extra: runner[slurm], runner[ray]) and its launcher
#: class (ray_cluster: runner's own, on hydra-ray-launcher's job function: runner.sweeps.ray_launch)
LAUNCHERS = {
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    "ray_cluster": ("hydra_plugins.hydra_ray_launcher", "hydra_plugins.runner_ray_launcher.RunnerRayLauncher"),
}


def test_every_launcher_is_listed() -> None:
    assert sorted(LAUNCHERS) == options_of("hydra/launcher")


@pytest.mark.parametrize("option", options_of("hydra/launcher"))
def test_hydra_launcher_option(option: str) -> None:
    plugin, target = LAUNCHERS[option]
    pytest.importorskip(plugin, reason=f"hydra/launcher={option} needs {plugin} (an optional extra)")
    cfg = composed(f"hydra/launcher={option}", hydra=True)
    assert cfg.hydra.launcher._target_ == target
    written = OmegaConf.load(CONF / "hydra" / "launcher" / f"{option}.yaml")
    for key, value in written.items():
        if key != "defaults":
            assert cfg.hydra.launcher[key] == value, key


# --------------------------------------------------------------------------- every experiment

#: What each experiment in conf/experiment/ should give: the dataset, model type and hidden widths,
#: loss, optimizer, learning rate, schedule, and trainer settings it sets.
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "adaline": dict(dataset="linear", hidden=[], loss="l1", optimizer="sgd", lr=0.01, trainer=dict(epochs=200, batch_size=10)),
    "adaline_graph": dict(
        dataset="linear", nodes=2, loss="l1", optimizer="sgd", lr=0.01, schedule="cosine", trainer=dict(epochs=200, batch_size=10)
    ),
    "fashion_mnist": dict(
        dataset="fashion_mnist",
        hidden=[50],
        loss="softmax_cross_entropy",
        optimizer="sgd",
        lr=0.1,
        trainer=dict(iterations=10000, batch_size=100, sampling="replacement"),
    ),
    "fashion_mnist_cnn": dict(
        dataset="fashion_mnist",
        channels=[32, 64],
        hidden=[128],
        loss="softmax_cross_entropy",
        optimizer="adam",
        lr=0.002,
        schedule="cosine",
        trainer=dict(epochs=6, batch_size=100),
    ),
    "init_activations": dict(
        dataset="mnist",
        hidden=[100] * 5,
        loss="softmax_cross_entropy",
        optimizer="sgd",
        lr=0.01,
        trainer=dict(iterations=300, batch_size=100, sampling="replacement", clip_grad_norm=5.0),
    ),
    "iris": dict(
        dataset="iris",
        hidden=[32],
        loss="softmax_cross_entropy",
        optimizer="sgd",
        lr=0.02,
        trainer=dict(epochs=300, batch_size=15),
    ),
    "iris_binary": dict(
        dataset="iris_binary",
        hidden=[20],
        loss="sum_squared",
        optimizer="sgd",
        lr=0.1,
        trainer=dict(iterations=1000, batch_size=15),
    ),
    "mnist": dict(
        dataset="mnist",
        hidden=[50],
        loss="softmax_cross_entropy",
        optimizer="sgd",
        lr=0.1,
        trainer=dict(iterations=10000, batch_size=100, sampling="replacement"),
    ),
    "mnist_cnn": dict(
        dataset="mnist",
        channels=[32, 64],
        hidden=[128],
        loss="softmax_cross_entropy",
        optimizer="adam",
        lr=0.002,
        schedule="cosine",
        trainer=dict(epochs=6, batch_size=100),
    ),
    "mnist_mlp": dict(
        dataset="mnist",
        hidden=[512, 512],
        loss="softmax_cross_entropy",
        optimizer="adam",
        lr=0.001,
        schedule="cosine",
        trainer=dict(epochs=15, batch_size=128),
    ),
    "mnist_resmlp": dict(
        dataset="mnist",
        nodes=14,
        loss="softmax_cross_entropy",
        optimizer="adam",
        lr=0.001,
        schedule="cosine",
        trainer=dict(epochs=15, batch_size=128),
    ),
    "mnist_optimizers": dict(
        dataset="mnist",
        hidden=[100, 100, 100, 100],
        loss="softmax_cross_entropy",
        optimizer="sgd",
        lr=0.1,
        trainer=dict(iterations=2000, batch_size=128, sampling="replacement"),
    ),
    "vanishing_gradients": dict(
        dataset="mnist",
        hidden=[100] * 10,
        loss="softmax_cross_entropy",
        optimizer="sgd",
        lr=0.05,
        trainer=dict(iterations=500, batch_size=100, sampling="replacement"),
    ),
    "regression": dict(
        dataset="regression", hidden=[16, 16], loss="mse", optimizer="sgd", lr=0.05, trainer=dict(iterations=2000, batch_size=256)
    ),
}


def test_every_experiment_is_listed() -> None:
    assert sorted(EXPERIMENTS) == options_of("experiment"), "add the new experiment's expected values to EXPERIMENTS"


@pytest.mark.parametrize("name", options_of("experiment"))
def test_experiment(name: str, registry: Registry) -> None:
    expected = EXPERIMENTS[name]
    cfg = composed(f"+experiment={name}", hydra=True)
    assert cfg.hydra.runtime.choices["experiment"] == name
    plain = check_runnable(cfg, registry)
    assert plain["dataset"]["name"] == expected["dataset"]
    if "nodes" in expected:  # a graph: its nodes as written
        assert (plain["model"]["type"], len(plain["model"]["nodes"])) == ("graph", expected["nodes"])
    elif "channels" in expected:  # a ConvNet: its conv blocks' channels and dense widths
        model = plain["model"]
        assert (model["type"], model["channels"], model["hidden"]) == ("cnn", expected["channels"], expected["hidden"])
    else:
        assert (plain["model"]["type"], plain["model"]["hidden"]) == ("mlp", expected["hidden"])
    assert plain["loss"]["name"] == expected["loss"]
    assert (plain["optimizer"]["name"], plain["optimizer"]["lr"]) == (expected["optimizer"], expected["lr"])
    assert plain["schedule"]["name"] == expected.get("schedule", "constant")
    assert {key: plain["trainer"][key] for key in expected["trainer"]} == expected["trainer"]


@pytest.mark.parametrize("name", options_of("experiment"))
def test_experiment_on_the_command_line_wins(name: str) -> None:
    """An override after +experiment=... replaces the experiment's value, as on the command line."""
    plain = resolved(composed(f"+experiment={name}", "optimizer.lr=0.0123", "seed=7"))
    assert (plain["optimizer"]["lr"], plain["seed"]) == (0.0123, 7)


def test_experiment_sweep_points_compose(registry: Registry) -> None:
    """mnist_optimizers sweeps the optimizer group: each point is that optimizer at its group's default rate."""
    cfg = composed("+experiment=mnist_optimizers", hydra=True)
    choices = str(cfg.hydra.sweeper.params.optimizer).split(",")
    assert choices == ["sgd", "momentum", "adagrad", "adam"]
    for choice in choices:
        plain = check_runnable(composed("+experiment=mnist_optimizers", f"optimizer={choice}"), registry)
        default = OmegaConf.load(CONF / "optimizer" / f"{choice}.yaml")
        assert (plain["optimizer"]["name"], plain["optimizer"]["lr"]) == (choice, default.lr)
        assert plain["model"]["hidden"] == [100, 100, 100, 100]


def test_the_watch_experiments_sweep_their_arms(registry: Registry) -> None:
    """init_activations: 3 activations x 4 inits (std 1, std 0.01, Xavier, He); vanishing_gradients: sigmoid vs relu."""
    cfg = composed("+experiment=init_activations", hydra=True)
    params = cfg.hydra.sweeper.params
    assert str(params["model.activation"]).split(",") == ["sigmoid", "tanh", "relu"]
    arms = str(params["model.linear"])
    for init in ("{init:normal,std:1.0}", "{init:normal,std:0.01}", "{init:xavier_normal}", "{init:he_normal}"):
        plain = check_runnable(
            composed("+experiment=init_activations", f"model.linear={init}", "model.activation=tanh"), registry
        )
        assert init in arms and plain["model"]["linear"]["init"] == init.split(",")[0].removeprefix("{init:").rstrip("}")
        assert plain["model"]["activation"] == "tanh" and plain["watch"]["enabled"]
    assert (
        check_runnable(composed("+experiment=init_activations", "model.linear={init:normal,std:0.01}"), registry)["model"][
            "linear"
        ]["std"]
        == 0.01
    )
    cfg = composed("+experiment=vanishing_gradients", hydra=True)
    assert str(cfg.hydra.sweeper.params["model.activation"]).split(",") == ["sigmoid", "relu"]
    assert resolved(cfg)["model"]["linear"]["init"] == "he_normal"


def test_conf_is_the_installed_package() -> None:
    """runner.conf is the checkout's conf/ in the editable install the tests run from."""
    assert CONF == Path(__file__).resolve().parents[1] / "conf"
