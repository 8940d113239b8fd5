"""The watch's two ready experiments, run as users run them (``--multirun``, shortened), and the numbers their
pictures are drawn from: the arms differ as the book says they do.

    +experiment=init_activations     sigmoid saturates with std 1, not with Xavier; relu's activations keep their
                                     spread layer after layer with He init and shrink with Xavier
    +experiment=vanishing_gradients  a deep sigmoid net's gradient norm falls by orders of magnitude toward the
                                     input (the ``vanishing`` warning); relu with He init keeps it level

Their sweeps' summaries carry every watch metric: ``python -m runner.results --sort watch/...`` sorts by one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import SHARED_DATA, run_cli

pytestmark = [
    pytest.mark.slow,  # two sweeps of short MNIST runs: about 30 s
    pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs MNIST in ../shared/data"),
]

#: what keeps the runs short: the numbers compared are the network's as initialised (step 1) and early on
SHORT = ("gradcheck.enabled=false", "checkpoint.enabled=false", "threads=1")
HIDDEN = (1, 3, 5, 7, 9)  # init_activations' five hidden activations: layers 1, 3, ..., 9 (after each linear layer)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Both experiments in one store: init_activations with sigmoid and relu x std 1, Xavier and He (6 of its 12
    arms), 30 steps; vanishing_gradients as it is (2 arms), 60 steps, with its pictures."""
    cwd = tmp_path_factory.mktemp("watch_experiments")
    arms = "model.linear={init:normal,std:1.0},{init:xavier_normal},{init:he_normal}"
    first = run_cli(
        cwd,
        "--multirun",
        "+experiment=init_activations",
        "model.activation=sigmoid,relu",
        arms,
        "trainer.iterations=30",
        "report.enabled=false",
        *SHORT,
        timeout=600,
    )
    assert first.proc.returncode == 0, first.proc.stderr[-3000:]
    second = run_cli(
        cwd, "--multirun", "+experiment=vanishing_gradients", "trainer.iterations=60", "report.model=false", *SHORT, timeout=600
    )
    assert second.proc.returncode == 0, second.proc.stderr[-3000:]
    return second


def arms_of(result, experiment: str) -> dict[str, object]:
    """The child runs of the experiment's sweep by their overrides (``model.activation=relu model.linear=...``)."""
    children = [r for r in result.runs(experiment) if r.data.tags.get("runner.sweep") != "parent"]
    assert all(r.info.status == "FINISHED" for r in children)
    return {" ".join(o for o in r.data.tags["runner.job.overrides"].split() if o.startswith("model.")): r for r in children}


def at_step(result, run, key: str, step: int = 1) -> float:
    [value] = [m.value for m in result.client().get_metric_history(run.info.run_id, key) if m.step == step]
    return value


def test_init_activations_sigmoid_saturates_with_std_1_and_relu_keeps_its_spread_with_he(sweeps):
    arms = arms_of(sweeps, "init_activations")
    assert len(arms) == 6
    run = lambda activation, init: arms[f"model.activation={activation} model.linear={init}"]  # noqa: E731
    std1, xavier, he = "{init:normal,std:1.0}", "{init:xavier_normal}", "{init:he_normal}"

    def saturated(init: str) -> float:  # the mean over the five sigmoid layers, as initialised
        return sum(at_step(sweeps, run("sigmoid", init), f"watch/{i}.sigmoid/saturated_fraction") for i in HIDDEN) / 5

    assert saturated(std1) > 0.3 and saturated(xavier) < 0.02  # std 1: piled up at 0 and 1; Xavier: spread

    def spread(init: str) -> float:  # relu: the last hidden layer's std over the first's, as initialised
        last, first = (at_step(sweeps, run("relu", init), f"watch/{i}.relu/std") for i in (HIDDEN[-1], HIDDEN[0]))
        return last / first

    assert 0.7 < spread(he) < 1.4 and spread(xavier) < 0.4  # He keeps it; Xavier halves it every other layer
    assert spread(std1) > 100  # std 1: it explodes
    for init in (xavier, he):
        assert at_step(sweeps, run("relu", init), "watch/9.relu/dead_fraction") < 0.5


def test_vanishing_gradients_fall_toward_the_input_with_sigmoid_not_with_relu_and_he(sweeps):
    arms = arms_of(sweeps, "vanishing_gradients")
    sigmoid, relu = arms["model.activation=sigmoid"], arms["model.activation=relu"]

    def flow(run, step: int) -> float:  # the first weight matrix's gradient norm over the last one's
        return at_step(sweeps, run, "watch/0.linear.W/grad_norm", step) / at_step(
            sweeps, run, "watch/20.linear.W/grad_norm", step
        )

    for step in (1, 60):
        assert flow(sigmoid, step) < 1e-3 < 0.1 < flow(relu, step), step  # orders of magnitude apart
    assert "vanishing 0.linear.W vs 20.linear.W" in sigmoid.data.tags["runner.watch.warnings"]
    warned = relu.data.tags.get("runner.watch.warnings", "")
    assert "vanishing" not in warned and "dead_relu" not in warned
    assert max(at_step(sweeps, relu, f"watch/{i}.relu/dead_fraction", 60) for i in range(1, 20, 2)) < 0.5
    artifacts = {a.path for a in sweeps.client().list_artifacts(sigmoid.info.run_id, "plots")}
    assert {"plots/gradient_flow.png", "plots/watch_gradients.png", "plots/watch_activations.png"} <= artifacts


def test_a_sweep_summary_sorts_by_a_watch_metric(sweeps):
    """The parent's summary.csv has each job's watch metrics (at its last step); runner.results sorts by one."""
    import pandas as pd

    client = sweeps.client()
    [parent] = [r for r in sweeps.runs("init_activations") if r.data.tags.get("runner.sweep") == "parent"]
    summary = pd.read_csv(client.download_artifacts(parent.info.run_id, "summary.csv", str(sweeps.cwd)))
    assert "metrics.watch/9.relu/dead_fraction" in summary and "metrics.watch/0.linear.W/update_ratio" in summary
    key = "watch/0.linear.W/grad_norm"
    proc = subprocess.run(
        [sys.executable, "-m", "runner.results", "--sweep", parent.info.run_id, "--sort", key, "--csv", "sorted.csv"],
        cwd=sweeps.cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(sweeps.cwd / "sorted.csv")
    assert len(table) == 6 and table[key].tolist() == sorted(table[key], reverse=True)
