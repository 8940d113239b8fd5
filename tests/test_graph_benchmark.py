"""The benchmarks' graph section measures what it says: the recipe's chain written as a graph is a Graph
(nodes linear1 -> relu1 -> linear2, ...) that trains exactly as the Sequential chain — the same final
parameters, bit for bit — through the very code the benchmark times (benchmarks.runner_engine.train).
Synthetic data of the recipes' shapes, a few steps: fast, no dataset needed, no timing asserted."""

import sys

import numpy as np
import pytest
from conftest import ROOT

if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package of the checkout, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import recipes as R  # noqa: E402
from benchmarks.report import graph_mismatches, graph_summary  # noqa: E402
from benchmarks.runner_engine import MODELS, build, param_digest, train  # noqa: E402
from runner.api import Meta, Split, Splits  # noqa: E402
from runner.core.graph import Graph  # noqa: E402
from runner.core.model import Sequential  # noqa: E402


class Synthetic:
    """As benchmarks.data.Data for runner's engine (``splits()``): random inputs of the recipe's dataset's shape."""

    def __init__(self, meta: Meta, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        n_in, classes = int(np.prod(meta.input_shape)), max(meta.output_size, 2)

        def split(size: int) -> Split:
            return Split(rng.random((size, n_in), dtype=np.float32), rng.integers(0, classes, size).astype(np.int64))

        self._splits = Splits(split(n), split(n // 4), split(n // 4), meta)

    def splits(self) -> Splits:
        return self._splits


DATA = {
    "mnist": lambda: Synthetic(Meta("mnist", (784,), 10, "classification", tuple("0123456789")), 500),
    "tiny": lambda: Synthetic(Meta("iris_binary", (4,), 1, "binary", ("other", "setosa")), 90),
}
NODES = {"mnist": ["linear1", "relu1", "linear2"], "tiny": ["linear1", "relu1", "linear2", "sigmoid1"]}


@pytest.mark.parametrize("name", ["mnist", "tiny"])
def test_the_recipe_as_a_graph_trains_bitwise_as_the_chain(name):
    recipe, data = R.get(name, quick=True), DATA[name]()
    runs = {model: train(recipe, data, model_type=model, keep_model=True) for model in MODELS}
    chain, graph = runs["sequential"]["model"], runs["graph"]["model"]
    assert type(chain) is Sequential and type(graph) is Graph
    assert graph.names == NODES[name] and graph.types == chain.types
    assert graph.summary() == chain.summary()
    assert runs["graph"]["steps"] == runs["sequential"]["steps"] == recipe.iterations
    assert len(graph.params) == len(chain.params) == 4
    for a, b in zip(graph.params.values(), chain.params.values()):
        assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()
    assert runs["graph"]["params"] == runs["sequential"]["params"] == param_digest(chain)
    assert runs["graph"]["test_accuracy"] == runs["sequential"]["test_accuracy"]
    # the digest sees the training, not only the shared initial weights
    assert param_digest(build(recipe, data, model="graph")[0]) != runs["graph"]["params"]


def test_a_differing_final_parameter_is_reported():
    run = lambda digest: {"runs": [{"seconds": 1.0, "steps": 10, "test_accuracy": 0.5, "params": digest}]}  # noqa: E731
    same = {"mnist": {"1": {"sequential": [run("aa"), run("aa")], "graph": [run("aa"), run("aa")]}}}
    differ = {"mnist": {"1": {"sequential": [run("aa")], "graph": [run("bb")]}}}
    missing = {"mnist": {"1": {"sequential": [run("aa")], "graph": [run(None)]}}}
    assert graph_mismatches(same) == []
    assert graph_mismatches(differ) and graph_mismatches(missing)
    summary = graph_summary({"graph": same})["mnist"]["1"]
    assert summary["equal"] and summary["ratio"] == 1.0 and summary["pairs"] == [1.0, 1.0]
    assert graph_summary({"graph": differ})["mnist"]["1"]["equal"] is False
