"""What ``model=graph`` says, checked before anything is built: the nodes in run order, and the output.

    model:
      type: graph
      nodes:
        - {name: h1, type: linear, out: 128, inputs: [x]}
        - {name: a1, type: relu, inputs: [h1]}
        - {name: h2, type: linear, out: 128, inputs: [a1]}
        - {name: sum, type: add, inputs: [h2, a1]}      # a1 is used twice: its gradients add up
        - {name: out, type: linear, out: auto, inputs: [sum]}
      output: out

Each node is a layer plugin (its options beside ``type``, as in ``model.layers``) with a ``name`` and
the names of its ``inputs``: ``x`` is the data, any other name a node's output. Single-input layers
take one input; merge layers (``runner.api.MergeLayer``: add, concat, multiply, a plugin's own) take
``n_inputs``. ``nodes`` may be written in any order that is a DAG; the model runs them in a
topological order (the written order wherever it is one), which is also the order they are built in
(and draw their initial weights), so a graph written as a chain equals the ``Sequential`` chain, bitwise.

Before anything is built, each of these is one RunnerError line naming the node: a node without a
name or type, a name used twice, an unknown input name, a missing or unknown ``model.output``, a
cycle, a node whose output nobody uses. Shapes are checked while building (runner.core.graph).
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.api import RunnerError

#: the name of the data in ``inputs``
DATA = "x"
#: a node's name: a metric-key-safe identifier, not starting with a digit (Sequential's indices do)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class NodeConfig:
    """One node as written: its ``name``, layer ``type``, ``inputs``, the layer's ``options``, and
    ``index``, its position in ``model.nodes`` (for messages)."""

    name: str
    type: str
    inputs: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    @property
    def where(self) -> str:
        return f"model.nodes[{self.index}] '{self.name}' ({self.type})"


class GraphConfig(list):
    """The nodes of a graph model in run (topological) order, and the name of its ``output`` node:
    what ``layer_configs`` gives for ``model.type: graph``, and ``build_model`` builds."""

    def __init__(self, nodes: Sequence[NodeConfig], output: str):
        super().__init__(nodes)
        self.output = output


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def graph_config(model: Mapping[str, Any]) -> GraphConfig:
    """``model.nodes`` and ``model.output`` checked and put in run order (see the module docstring)."""
    written = model.get("nodes")
    if isinstance(written, Mapping):  # {name: {type: ..., inputs: [...]}}: the name is the key
        written = [{"name": k, **dict(v)} if isinstance(v, Mapping) else v for k, v in written.items()]
    if not isinstance(written, Sequence) or isinstance(written, (str, bytes)) or not written:
        raise RunnerError(
            "model.nodes: expected a list of nodes, e.g. [{name: h1, type: linear, out: 16, inputs: [x]}, ...], "
            f"got {written!r}"
        )
    nodes: list[NodeConfig] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(written):
        if not isinstance(raw, Mapping):
            raise RunnerError(f"model.nodes[{i}]: expected a node {{name: ..., type: ..., inputs: [...]}}, got {raw!r}")
        options = dict(raw)
        name, kind, inputs = options.pop("name", None), options.pop("type", None), options.pop("inputs", None)
        if not isinstance(name, str) or not NAME.match(name):
            raise RunnerError(
                f"model.nodes[{i}]: 'name' must be an identifier (letters, digits, _; not starting with a digit), got {name!r}"
            )
        if name == DATA:
            raise RunnerError(f"model.nodes[{i}] '{name}': the name '{DATA}' is the data's; name the node otherwise")
        if name in seen:
            raise RunnerError(f"model.nodes[{i}] '{name}': the name '{name}' is taken by model.nodes[{seen[name]}]")
        if not isinstance(kind, str) or not kind:
            raise RunnerError(f"model.nodes[{i}] '{name}': missing 'type' (the layer plugin, e.g. linear, relu, add)")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, Sequence) or not inputs or not all(isinstance(n, str) for n in inputs):
            raise RunnerError(
                f"model.nodes[{i}] '{name}' ({kind}): 'inputs' must be a list of node names ('{DATA}': the data), got {inputs!r}"
            )
        seen[name] = i
        nodes.append(NodeConfig(name, kind, list(inputs), options, i))
    names = [DATA, *seen]
    for node in nodes:
        for source in node.inputs:
            if source not in seen and source != DATA:
                raise RunnerError(
                    f"{node.where}: input '{source}' is not a node (nodes: {', '.join(names)}){_suggest(source, names)}"
                )
    output = model.get("output")
    if output is None:
        raise RunnerError(f"model.output: missing; name the node whose output is the model's (one of {', '.join(seen)})")
    if output not in seen:
        raise RunnerError(f"model.output: '{output}' is not a node (nodes: {', '.join(seen)}){_suggest(str(output), list(seen))}")
    ordered = _topological(nodes, seen)
    used = {source for node in nodes for source in node.inputs} | {output}
    for node in ordered:
        if node.name not in used:
            raise RunnerError(
                f"{node.where}: its output is used by no node and is not model.output ('{output}'); "
                f"use it as an input or remove the node"
            )
    return GraphConfig(ordered, output)


def _topological(nodes: list[NodeConfig], index: dict[str, int]) -> list[NodeConfig]:
    """The nodes in an order where each comes after its inputs, the written order where it is one
    (Kahn's algorithm, the earliest written ready node first); a cycle names its nodes."""
    waiting = {node.name: {s for s in node.inputs if s != DATA} for node in nodes}
    consumers: dict[str, list[str]] = {node.name: [] for node in nodes}
    for node in nodes:
        for source in set(node.inputs) - {DATA}:
            consumers[source].append(node.name)
    ready = [index[name] for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    ordered = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        ordered.append(node)
        for consumer in consumers[node.name]:
            waiting[consumer].discard(node.name)
            if not waiting[consumer]:
                heapq.heappush(ready, index[consumer])
    if len(ordered) < len(nodes):  # what is left holds a cycle: follow inputs until one repeats
        left = {name for name, deps in waiting.items() if deps}
        path = [min(left, key=index.__getitem__)]
        while path.count(path[-1]) < 2:
            path.append(next(s for s in nodes[index[path[-1]]].inputs if s in left))
        cycle = path[path.index(path[-1]) :]
        first = nodes[index[cycle[0]]]
        raise RunnerError(
            f"{first.where}: the graph has a cycle: {' -> '.join(reversed(cycle))} (each node an input of the next)"
        )
    return ordered
