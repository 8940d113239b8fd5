"""model=graph (runner.core.graph): checks before training, a chain equal to Sequential bitwise,
fan-out gradients, the gradient check of every node, checkpoints, the pyfunc model, the summary."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from omegaconf import OmegaConf

from runner.api import DataContext, Meta, RunnerError
from runner.core.gradcheck import check_run, failure_message
from runner.core.graph import Graph
from runner.core.model import Sequential, build_model, layer_configs, mlp_layers
from runner.core.train import TrainerConfig, Training, targets_for
from runner.plugins.discovery import load_registry
from runner.run import checkpoint, resume

IRIS = Meta("iris", (4,), 3, "classification")


@cache
def registry():
    return load_registry()


def graph(nodes: list[dict], output: str, meta: Meta = IRIS, dtype=np.float64, seed: int = 0):
    config = layer_configs({"type": "graph", "nodes": nodes, "output": output}, registry())
    return build_model(config, registry(), meta, np.random.default_rng(seed), dtype)


def chain_as_graph(layers: list[dict]) -> list[dict]:
    """``model.layers`` of a Sequential as graph nodes n0, n1, ..., each reading the one before."""
    return [{**layer, "name": f"n{i}", "inputs": [f"n{i - 1}" if i else "x"]} for i, layer in enumerate(layers)]


RESIDUAL = [
    {"name": "h1", "type": "linear", "out": 8, "inputs": ["x"]},
    {"name": "a1", "type": "tanh", "inputs": ["h1"]},
    {"name": "h2", "type": "linear", "out": 8, "inputs": ["a1"]},
    {"name": "sum", "type": "add", "inputs": ["h2", "a1"]},
    {"name": "out", "type": "linear", "out": "auto", "inputs": ["sum"]},
]


# --------------------------------------------------------------------------- malformed graphs: one line naming the node


MALFORMED = {
    "unknown input": (
        [{"name": "h1", "type": "linear", "out": 3, "inputs": ["x"]}, {"name": "a", "type": "relu", "inputs": ["h2"]}],
        "a",
        r"model.nodes\[1\] 'a' \(relu\): input 'h2' is not a node \(nodes: x, h1, a\); did you mean 'h1'\?",
    ),
    "cycle": (
        [
            {"name": "h1", "type": "linear", "out": 3, "inputs": ["x"]},
            {"name": "a", "type": "add", "inputs": ["h1", "b"]},
            {"name": "b", "type": "tanh", "inputs": ["a"]},
            {"name": "out", "type": "identity", "inputs": ["b"]},
        ],
        "out",
        r"model.nodes\[1\] 'a' \(add\): the graph has a cycle: a -> b -> a",
    ),
    "unused node": (
        [
            {"name": "h1", "type": "linear", "out": 3, "inputs": ["x"]},
            {"name": "dead", "type": "relu", "inputs": ["h1"]},
            {"name": "out", "type": "tanh", "inputs": ["h1"]},
        ],
        "out",
        r"model.nodes\[1\] 'dead' \(relu\): its output is used by no node and is not model.output \('out'\)",
    ),
    "missing output": (
        [{"name": "h1", "type": "linear", "out": 3, "inputs": ["x"]}],
        None,
        r"model.output: missing; name the node whose output is the model's \(one of h1\)",
    ),
    "unknown output": (
        [{"name": "h1", "type": "linear", "out": 3, "inputs": ["x"]}],
        "h2",
        r"model.output: 'h2' is not a node \(nodes: h1\); did you mean 'h1'\?",
    ),
    "mismatched merge shapes": (
        [
            {"name": "h1", "type": "linear", "out": 3, "inputs": ["x"]},
            {"name": "h2", "type": "linear", "out": 5, "inputs": ["x"]},
            {"name": "sum", "type": "add", "inputs": ["h1", "h2"]},
        ],
        "sum",
        r"model.nodes\[2\] 'sum' \(add\): add: inputs of shapes 3, 5; add needs equal shapes \(inputs: h1 3, h2 5\)",
    ),
    "one input to a merge": (
        [{"name": "h1", "type": "linear", "out": 3, "inputs": ["x"]}, {"name": "cat", "type": "concat", "inputs": ["h1"]}],
        "cat",
        r"model.nodes\[1\] 'cat' \(concat\): takes two or more inputs, got 1 \(h1\)",
    ),
    "two inputs to a layer": (
        [{"name": "h1", "type": "linear", "out": 3, "inputs": ["x", "x"]}],
        "h1",
        r"model.nodes\[0\] 'h1' \(linear\): takes one input, got 2 \(x, x\)",
    ),
    "a name used twice": (
        [{"name": "h", "type": "linear", "out": 3, "inputs": ["x"]}, {"name": "h", "type": "relu", "inputs": ["h"]}],
        "h",
        r"model.nodes\[1\] 'h': the name 'h' is taken by model.nodes\[0\]",
    ),
    "the data's name": (
        [{"name": "x", "type": "linear", "out": 3, "inputs": ["x"]}],
        "x",
        r"model.nodes\[0\] 'x': the name 'x' is the data's",
    ),
    "no inputs": (
        [{"name": "h1", "type": "linear", "out": 3}],
        "h1",
        r"model.nodes\[0\] 'h1' \(linear\): 'inputs' must be a list of node names",
    ),
    "output of the wrong width": (
        [{"name": "h1", "type": "linear", "out": 4, "inputs": ["x"]}],
        "h1",
        r"model.nodes\[0\] 'h1' \(linear\): the model gives 4 outputs \(model.output\), "
        r"but dataset 'iris' \(classification\) needs 3",
    ),
    "a declared input width that does not fit": (
        [{"name": "h1", "type": "linear", "in": 5, "out": 3, "inputs": ["x"]}],
        "h1",
        r"model.nodes\[0\] 'h1' \(linear\): expected input of 5 features, got 4 \(x\)",
    ),
    "an unknown option": (
        [{"name": "h1", "type": "linear", "outt": 3, "inputs": ["x"]}],
        "h1",
        r"model.nodes\[0\] 'h1' \(linear\): unknown option 'outt' for layer 'linear'",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_graph_is_one_line_naming_the_node(case):
    nodes, output, message = MALFORMED[case]
    with pytest.raises(RunnerError, match=message) as e:
        graph(nodes, output)
    assert "\n" not in str(e.value)


def test_a_merge_layer_in_a_chain_is_one_line():
    with pytest.raises(RunnerError, match=r"model.layers\[1\] \(add\): a merge layer of several inputs; merge in a graph"):
        build_model([{"type": "linear", "out": 3}, {"type": "add"}], registry(), IRIS, np.random.default_rng(0), np.float32)


def test_nodes_run_in_a_topological_order_the_written_one_where_it_is_one():
    shuffled = [RESIDUAL[4], RESIDUAL[3], RESIDUAL[0], RESIDUAL[2], RESIDUAL[1]]
    model = graph(shuffled, "out")
    assert model.names == ["h1", "a1", "h2", "sum", "out"]
    assert graph(RESIDUAL, "out").names == model.names
    assert model.input_names(3) == ["h2", "a1"] and model.input_shapes(3) == [(8,), (8,)]


def test_nodes_may_be_a_mapping_from_name_to_node():
    nodes = {n["name"]: {k: v for k, v in n.items() if k != "name"} for n in RESIDUAL}
    model = build_model(layer_configs({"type": "graph", "nodes": nodes, "output": "out"}, registry()), registry(), IRIS,
                        np.random.default_rng(0), np.float64)  # fmt: skip
    assert model.names == ["h1", "a1", "h2", "sum", "out"]


# --------------------------------------------------------------------------- the chain case equals Sequential, bitwise


@cache
def iris(dtype: str = "float32"):
    entry = registry().get("dataset", "iris", "test")
    return entry.create({}, "test").load(DataContext(Path(SHARED_DATA), 0, np.dtype(dtype)))


def train(model, steps_seed: int = 1, epochs: int = 3, optimizer: str = "adam") -> tuple[list, dict]:
    splits = iris()
    points = []
    opt = registry().get("optimizer", optimizer, "test").create({"lr": 0.01}, "test")
    loss = registry().get("loss", "softmax_cross_entropy", "test").create({}, "test")
    trainer = TrainerConfig(epochs=epochs, batch_size=16, log_every=2)
    training = Training(
        model, loss, opt, splits, trainer, np.random.default_rng(steps_seed), lambda m, s: points.append((s, dict(m)))
    )
    return points, training.run()


def untimed(points):
    return [(s, {k: v for k, v in m.items() if not k.startswith("time/")}) for s, m in points]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_graph_equal_to_a_chain_trains_bitwise_as_the_chain(dtype):
    layers = mlp_layers([16, 8], "relu", None, {"init": "he_normal"}, dropout=0.2, norm="layernorm")
    chain = build_model(layers, registry(), IRIS, np.random.default_rng(5), np.dtype(dtype))
    config = layer_configs({"type": "graph", "nodes": chain_as_graph(layers), "output": f"n{len(layers) - 1}"}, registry())
    as_graph = build_model(config, registry(), IRIS, np.random.default_rng(5), np.dtype(dtype))
    assert isinstance(chain, Sequential) and isinstance(as_graph, Graph)
    assert as_graph.summary() == chain.summary() == "4-16-8-3"
    assert as_graph.parameter_count() == chain.parameter_count()
    assert [n.split(".", 1)[1] for n in as_graph.params] == [n.split(".", 1)[1] for n in chain.params]
    for a, b in zip(as_graph.params.values(), chain.params.values()):
        np.testing.assert_array_equal(a, b)  # built in the same order from the same stream
    chain_points, chain_final = train(chain)
    graph_points, graph_final = train(as_graph)
    assert untimed(graph_points) == untimed(chain_points)
    assert {k: v for k, v in graph_final.items() if not k.startswith("time/")} == {
        k: v for k, v in chain_final.items() if not k.startswith("time/")
    }
    for a, b in zip(as_graph.params.values(), chain.params.values()):
        assert a.tobytes() == b.tobytes()
    # the in-place work granted along the chain is Sequential's
    granted = lambda m: [(layer.overwrite_input, layer.overwrite_dout) for layer in m.layers if hasattr(layer, "overwrite_input")]  # noqa: E731
    assert granted(as_graph) == granted(chain)


# --------------------------------------------------------------------------- fan-out and the gradient check


FAN_OUT = [
    {"name": "h1", "type": "linear", "out": 6, "inputs": ["x"]},
    {"name": "a1", "type": "relu", "inputs": ["h1"]},  # used by h2, sq (twice) and cat
    {"name": "h2", "type": "linear", "out": 6, "inputs": ["a1"]},
    {"name": "sq", "type": "multiply", "inputs": ["a1", "a1"]},
    {"name": "sum", "type": "add", "inputs": ["h2", "sq", "a1"]},
    {"name": "act", "type": "relu", "inputs": ["sum"]},  # its input is a sum: it may work in place
    {"name": "cat", "type": "concat", "inputs": ["act", "x"]},
    {"name": "out", "type": "linear", "out": "auto", "inputs": ["cat"]},
]


def test_fan_out_gradients_are_the_sum_over_consumers():
    model = graph(FAN_OUT, "out")
    x = np.random.default_rng(1).standard_normal((5, 4))
    dout = np.random.default_rng(2).standard_normal((5, 3))
    x_saved, dout_saved = x.copy(), dout.copy()
    model.forward(x, training=True)
    for layer in model.layers:
        layer.needs_input_grad = True
    dx = model.backward(dout)
    np.testing.assert_array_equal(x, x_saved)
    np.testing.assert_array_equal(dout, dout_saved)

    def f(x):  # the same network written out by hand
        p = model.params
        h1 = x @ p["h1.linear.W"] + p["h1.linear.b"]
        a1 = np.maximum(h1, 0)
        s = a1 @ p["h2.linear.W"] + p["h2.linear.b"] + a1 * a1 + a1
        cat = np.concatenate([np.maximum(s, 0), x], axis=1)
        return np.sum((cat @ p["out.linear.W"] + p["out.linear.b"]) * dout)

    h = 1e-6
    numerical = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        numerical[i] = (f(plus) - f(minus)) / (2 * h)
    np.testing.assert_allclose(dx, numerical, rtol=1e-6, atol=1e-8)


def test_fan_out_and_merges_pass_the_runs_gradient_check():
    model = graph(FAN_OUT, "out", dtype=np.float32)
    loss = registry().get("loss", "softmax_cross_entropy", "test").create({}, "test")
    splits = iris()
    x, target = splits.train.x[:4], targets_for(splits.train.y[:4], IRIS, loss, np.float32)
    rows = check_run(model, loss, x, target, eps=1e-5, max_entries=64, seed=0, loss_name="softmax_cross_entropy")
    metrics = {r.metric for r in rows}
    assert {"gradcheck/sq.multiply.x0", "gradcheck/sq.multiply.x1", "gradcheck/sum.add.x2", "gradcheck/cat.concat.x1"} <= metrics
    assert {"gradcheck/h1.linear.x", "gradcheck/model/h1.linear.W", "gradcheck/model/out.linear.b"} <= metrics
    assert failure_message(rows, 1e-6, {}) is None, [(r.metric, r.check.rel_error) for r in rows]


def test_a_wrong_merge_gradient_is_caught_on_its_node():
    from runner.api import PluginSpec, hookimpl
    from runner.builtins.layers import Add
    from runner.testing import plugin_registry

    class BadAdd(Add):
        def backward(self, dout):
            return (dout, 2.0 * dout)

    class Plugin:
        @hookimpl
        def runner_layers(self):
            return [PluginSpec("bad_add", BadAdd)]

    reg = plugin_registry(Plugin())
    nodes = [{**n, "type": "bad_add"} if n["name"] == "sum" else n for n in RESIDUAL]
    model = build_model(
        layer_configs({"type": "graph", "nodes": nodes, "output": "out"}, reg), reg, IRIS, np.random.default_rng(0), np.float32
    )
    loss = reg.get("loss", "mse", "test").create({}, "test")
    x = iris().train.x[:4]
    rows = check_run(model, loss, x, np.zeros((4, 3), np.float32), eps=1e-5, max_entries=64, seed=0, loss_name="mse")
    message = failure_message(rows, 1e-6, {"sum": "a plugin"})
    assert message.startswith("gradient check failed: node sum (bad_add, from a plugin) d(input 1) x1: relative error")


# --------------------------------------------------------------------------- checkpoints, the pyfunc model, the summary


def test_a_graph_resumes_from_a_checkpoint_bitwise(tmp_path):
    nodes = [*RESIDUAL[:1], {"name": "drop", "type": "dropout", "p": 0.3, "inputs": ["h1"]}, *RESIDUAL[1:]]
    nodes[2] = {**nodes[2], "inputs": ["drop"]}
    reference = graph(nodes, "out", dtype=np.float32)
    ref_points, _ = train(reference, epochs=4)

    model = graph(nodes, "out", dtype=np.float32)
    splits, points = iris(), []
    opt = registry().get("optimizer", "adam", "test").create({"lr": 0.01}, "test")
    loss = registry().get("loss", "softmax_cross_entropy", "test").create({}, "test")
    trainer = TrainerConfig(epochs=4, batch_size=16, log_every=2)
    training = Training(model, loss, opt, splits, trainer, np.random.default_rng(1), lambda m, s: points.append((s, dict(m))))

    def stop(t):
        if t.epoch == 2:
            raise KeyboardInterrupt

    training.after_epoch = stop
    with pytest.raises(KeyboardInterrupt):
        training.run()
    path = checkpoint.save(tmp_path, resume.state_of(model, opt, training, {"a": 1}, "run", "uri"))

    fresh = graph(nodes, "out", dtype=np.float32, seed=9)
    opt2 = registry().get("optimizer", "adam", "test").create({"lr": 0.01}, "test")
    training2 = Training(fresh, loss, opt2, splits, trainer, np.random.default_rng(7), lambda m, s: points.append((s, dict(m))))
    resume.restore(checkpoint.load(path), fresh, opt2, training2)
    training2.run()
    assert untimed(points) == untimed(ref_points)
    for a, b in zip(fresh.params.values(), reference.params.values()):
        assert a.tobytes() == b.tobytes()


def test_the_pyfunc_model_rebuilds_a_graph_and_predicts(tmp_path):
    from runner.report.pyfunc import describe, outputs_of, read_outputs, rebuild

    model = graph(RESIDUAL, "out", dtype=np.float32, seed=3)
    train(model, epochs=2)
    np.savez(tmp_path / "model.npz", **model.params, **model.buffers)
    OmegaConf.save({"model": {"type": "graph", "nodes": RESIDUAL, "output": "out"}}, tmp_path / "config.yaml")
    described = describe(IRIS, "float32", "softmax_cross_entropy", 0.5, model.types[-1])
    again, meta = rebuild(tmp_path / "model.npz", tmp_path / "config.yaml", described)
    x = iris().test.x
    assert isinstance(again, Graph) and meta == IRIS
    np.testing.assert_array_equal(outputs_of(again, x), outputs_of(model, x))
    assert read_outputs(outputs_of(again, x), described).shape == (len(x),)


def test_the_summary_names_nodes_and_their_inputs():
    from runner.report.figures import model_summary

    text = model_summary(graph(RESIDUAL, "out", dtype=np.float32))
    assert text.startswith("model 4-8-8-3: 5 nodes, 139 trainable parameters")
    assert "sum     h2, a1    add" in text and "8, 8" in text


def test_scalars_are_the_graphs_one_element_parameters():
    nodes = [{"name": "w", "type": "scale", "init": 0.5, "inputs": ["x"]}, {"name": "b", "type": "bias", "inputs": ["w"]}]
    model = graph(nodes, "b", meta=Meta("linear", (1,), 1, "regression"))
    assert list(model.params) == ["w.scale.w", "b.bias.b"]
    assert model.scalars() == {"model/w": 0.5, "model/b": 0.0}
