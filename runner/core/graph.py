"""Models as a directed acyclic graph of named nodes (``model=graph``): a ``GraphConfig`` built and run.

How a graph is written, and what is checked before anything is built: runner.core.graph_config (its
names are importable from here too). While building, shapes are inferred node by node from the data's:
a wrong number of inputs, mismatched merge shapes and an output that does not fit the data name the node
and its inputs' shapes.

Parameters are named ``<node name>.<type>.<key>`` (``h1.linear.W``), in the nodes' run order; so
are the gradient check's metrics (``gradcheck/h1.linear.W/...``). Backward runs the nodes in reverse
order; an output used by several nodes (fan-out) receives the sum of their gradients.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from runner.api import Layer, Meta, RunnerError, input_count
from runner.core.graph_config import DATA as DATA
from runner.core.graph_config import NAME as NAME
from runner.core.graph_config import GraphConfig as GraphConfig
from runner.core.graph_config import NodeConfig as NodeConfig
from runner.core.graph_config import graph_config as graph_config
from runner.core.images import model_input_shape
from runner.plugins.registry import Registry


def build_graph(config: GraphConfig, registry: Registry, meta: Meta, rng: np.random.Generator, dtype: Any) -> Graph:
    """Instantiate and build every node in run order, shapes inferred from the data's; mismatches name the node."""
    position = {node.name: i for i, node in enumerate(config)}
    shapes: dict[str, tuple[int, ...]] = {DATA: tuple(meta.input_shape)}
    layers, types, origins, inputs = [], [], [], []
    layers_read_data = False
    for node in config:
        options = dict(node.options)
        expected_in = options.pop("in", None)  # as in model.layers: asserts the input's width
        if expected_in is not None and len(node.inputs) == 1 and (expected_in,) != shapes[node.inputs[0]]:
            got = "x".join(map(str, shapes[node.inputs[0]]))
            raise RunnerError(f"{node.where}: expected input of {expected_in} features, got {got} ({node.inputs[0]})")
        if options.get("out") == "auto":
            options["out"] = meta.output_size
        entry = registry.get("layer", node.type, f"model.nodes[{node.index}].type")
        layer = entry.create(options, node.where)
        if DATA in node.inputs and not layers_read_data:  # the first node that reads the data decides its shape
            shapes[DATA] = model_input_shape(layer, meta, node.where)
        layers_read_data = layers_read_data or DATA in node.inputs
        wanted, given = input_count(layer), len(node.inputs)
        if (wanted is None and given < 2) or (wanted is not None and given != wanted):
            expected = "two or more inputs" if wanted is None else "one input" if wanted == 1 else f"{wanted} inputs"
            raise RunnerError(f"{node.where}: takes {expected}, got {given} ({', '.join(node.inputs)})")
        in_shapes = tuple(shapes[source] for source in node.inputs)
        try:
            shape = tuple(layer.build(in_shapes[0] if wanted == 1 else in_shapes, rng, dtype))
        except RunnerError as e:
            fed = ", ".join(f"{source} {'x'.join(map(str, shapes[source]))}" for source in node.inputs)
            raise RunnerError(f"{node.where}: {e} (inputs: {fed})") from None
        if wanted == 1 and node.inputs[0] == DATA:
            layer.needs_input_grad = False  # d(data) is never used
        shapes[node.name] = shape
        layers.append(layer)
        types.append(node.type)
        origins.append(str(entry.provider))
        inputs.append(tuple(-1 if source == DATA else position[source] for source in node.inputs))
    out = config[-1]
    if shapes[out.name] != (meta.output_size,):
        raise RunnerError(
            f"{out.where}: the model gives {'x'.join(map(str, shapes[out.name]))} outputs (model.output), "
            f"but dataset {meta.name!r} ({meta.task}) needs {meta.output_size}"
        )
    return Graph(layers, types, [shapes[DATA], *(shapes[n.name] for n in config)], origins, [n.name for n in config], inputs)


class Graph:
    """Layers run as a DAG. Node i reads ``inputs[i]`` (indices of earlier nodes, -1 the data); the last
    node is the output. Parameters are named ``<node name>.<type>.<key>``, e.g. ``h1.linear.W``.

    The interface is ``Sequential``'s (``layers``, ``types``, ``shapes``, ``origins``, ``params``,
    ``grads``, ``buffers``, ``forward``, ``backward``, ``astype``, ``summary``, ``parameter_count``),
    plus ``names``, ``inputs``, ``input_shapes(i)``, ``input_names(i)`` and ``scalars()``.
    ``shapes[0]`` is the data's shape, ``shapes[i + 1]`` node i's output shape.
    """

    def __init__(
        self,
        layers: list[Layer],
        types: list[str],
        shapes: list[tuple[int, ...]],
        origins: list[str] | None,
        names: list[str],
        inputs: list[tuple[int, ...]],
    ):
        self.layers, self.types, self.shapes, self.names, self.inputs = layers, types, shapes, names, inputs
        self.origins = origins or []
        self.single = [input_count(layer) == 1 for layer in layers]
        self.uses = [0] * len(layers)  # how many inputs read node i's output (the model's output counts as one)
        for sources in inputs:
            for j in sources:
                if j >= 0:
                    self.uses[j] += 1
        self.uses[-1] += 1
        last = {j: i for i, sources in enumerate(inputs) for j in sources if j >= 0}
        #: the outputs node i reads last, dropped after it runs (the layers keep what their backward needs)
        self._free_after = [sorted({j for j in sources if j >= 0 and last[j] == i}) for i, sources in enumerate(inputs)]
        self._granted: list[Layer] = []
        #: ``watcher(i, output)``: set for one forward pass by the watch (runner.core.watch), None otherwise
        self.watcher: Callable[[int, np.ndarray], None] | None = None
        self._downstream: dict[int, list[int]] = {}

    # ---- names and shapes

    def _named(self, kind: str) -> dict[str, np.ndarray]:
        return {
            f"{name}.{t}.{k}": v
            for name, t, layer in zip(self.names, self.types, self.layers)
            for k, v in (getattr(layer, kind, {}) or {}).items()
        }

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self._named("params")

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return self._named("grads")

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        return self._named("buffers")

    def input_names(self, i: int) -> list[str]:
        return [DATA if j < 0 else self.names[j] for j in self.inputs[i]]

    def input_shapes(self, i: int) -> list[tuple[int, ...]]:
        return [self.shapes[j + 1] for j in self.inputs[i]]  # -1 + 1: the data's

    def scalars(self) -> dict[str, float]:
        """Each parameter of one element, as a metric: ``model/<node name>`` when it is its node's only
        parameter (adaline_graph: ``model/w``, ``model/b``), else ``model/<node name>.<key>``."""
        found = {}
        for name, layer in zip(self.names, self.layers):
            params = getattr(layer, "params", {}) or {}
            for key, value in params.items():
                if value.size == 1:
                    found[f"model/{name}" if len(params) == 1 else f"model/{name}.{key}"] = float(value.reshape(-1)[0])
        return found

    # ---- running

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        layers, inputs, single = self.layers, self.inputs, self.single
        if self._granted != layers:
            self._grant_in_place()
        values: list[Any] = [None] * len(layers)
        watcher, i = self.watcher, 0
        try:
            for i, layer in enumerate(layers):
                sources = inputs[i]
                if single[i]:
                    j = sources[0]
                    values[i] = layer.forward(x if j < 0 else values[j], training)
                else:
                    values[i] = cast(Any, layer).forward(*(x if j < 0 else values[j] for j in sources), training=training)
                if watcher is not None:  # now: a later node may overwrite its output in place
                    watcher(i, values[i])
                for j in self._free_after[i]:
                    values[j] = None
        except Exception as e:
            raise self._failed(i, "forward", e) from e
        return values[-1]

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Gradients through the nodes in reverse order; returns d(data), None when a node skipped it."""
        layers, inputs, single = self.layers, self.inputs, self.single
        pending: list[Any] = [None] * len(layers)
        pending[-1] = dout
        data_grad, skipped = None, False
        i = len(layers) - 1
        try:
            for i in range(len(layers) - 1, -1, -1):
                grad, pending[i] = pending[i], None
                found: Any = layers[i].backward(grad)
                sources = inputs[i]
                if single[i]:
                    found = (found,)
                elif not isinstance(found, (tuple, list)) or len(found) != len(sources):
                    raise TypeError(
                        f"backward must return a tuple of {len(sources)} gradients, one per input; got {type(found).__name__}"
                    )
                for j, dx in zip(sources, found):
                    if j < 0:
                        if dx is None:
                            skipped = True
                        else:
                            data_grad = dx if data_grad is None else data_grad + dx
                    else:
                        pending[j] = dx if pending[j] is None else pending[j] + dx  # fan-out: a new array, the sum
        except Exception as e:
            raise self._failed(i, "backward", e) from e
        return None if skipped else data_grad

    def _grant_in_place(self) -> None:
        """``Sequential._grant_in_place`` on the graph's edges: a node may overwrite its input when that
        input is another node's output, read by it alone, which that node declared unshared; and its
        dout when that is a sum of several gradients (a new array) or the d(input) of its one consumer,
        a single-input layer that declared it unshared. Never the data, nor the loss's gradient."""
        layers, inputs = self.layers, self.inputs
        for i, layer in enumerate(layers):
            if hasattr(type(layer), "overwrite_input") and self.single[i]:
                j = inputs[i][0]
                layer.overwrite_input = j >= 0 and self.uses[j] == 1 and bool(getattr(layers[j], "output_unshared", False))
        consumer = {j: i for i, sources in enumerate(inputs) for j in sources if j >= 0}
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            if hasattr(type(layer), "overwrite_dout"):
                if self.uses[i] >= 2:
                    layer.overwrite_dout = True
                elif i == len(layers) - 1:
                    layer.overwrite_dout = False
                else:
                    c = consumer[i]
                    layer.overwrite_dout = self.single[c] and bool(getattr(layers[c], "input_grad_unshared", False))
        self._granted = list(layers)

    def _failed(self, i: int, method: str, e: Exception) -> RunnerError:
        origin = f", from {self.origins[i]}" if self.origins else ""
        return RunnerError(f"model node '{self.names[i]}' ({self.types[i]}{origin}): {method} raised {type(e).__name__}: {e}")

    # ---- for the gradient check: each node's inputs, and a pass from one node on

    def node_inputs(self, x: np.ndarray, training: bool) -> list[tuple[np.ndarray, ...]]:
        """The inputs each node receives for ``x`` (float64 copies, one per input), randomness as in one pass."""
        values: list[Any] = [None] * len(self.layers)
        found = []
        for i, layer in enumerate(self.layers):
            xs = tuple(np.array(x if j < 0 else values[j], dtype=np.float64) for j in self.inputs[i])
            found.append(xs)
            values[i] = layer.forward(xs[0], training) if self.single[i] else cast(Any, layer).forward(*xs, training=training)
        return found

    def outputs(self, x: np.ndarray, training: bool) -> list[np.ndarray]:
        """Every node's output for ``x``."""
        values: list[Any] = [None] * len(self.layers)
        for i, layer in enumerate(self.layers):
            xs = [x if j < 0 else values[j] for j in self.inputs[i]]
            values[i] = layer.forward(xs[0], training) if self.single[i] else cast(Any, layer).forward(*xs, training=training)
        return values

    def downstream(self, start: int) -> list[int]:
        """Node ``start`` and every node that depends on it, in run order."""
        if start not in self._downstream:
            marked = {start}
            for i in range(start + 1, len(self.layers)):
                if any(j in marked for j in self.inputs[i]):
                    marked.add(i)
            self._downstream[start] = sorted(marked)
        return self._downstream[start]

    def rerun(
        self,
        x: np.ndarray,
        values: list[np.ndarray],
        start: int,
        training: bool,
        visit: Callable[[Layer, tuple[np.ndarray, ...]], None] | None = None,
    ) -> np.ndarray:
        """The output again, computing only node ``start`` and what depends on it; the other nodes'
        outputs are read from ``values`` (left as they are). ``visit(layer, inputs)`` before each node runs."""
        values = list(values)
        for i in self.downstream(start):
            layer = self.layers[i]
            xs = tuple(x if j < 0 else values[j] for j in self.inputs[i])
            if visit is not None:
                visit(layer, xs)
            values[i] = layer.forward(xs[0], training) if self.single[i] else cast(Any, layer).forward(*xs, training=training)
        return values[-1]

    # ---- as Sequential

    def astype(self, dtype: Any) -> Graph:
        """A deep copy whose parameters, gradients and buffers are of ``dtype``."""
        twin = copy.deepcopy(self)
        for layer in twin.layers:
            layer.params = {k: v.astype(dtype) for k, v in layer.params.items()}
            layer.grads = {k: v.astype(dtype) for k, v in layer.grads.items()}
            layer.buffers = {k: v.astype(dtype) for k, v in getattr(layer, "buffers", {}).items()}
        return twin

    def summary(self) -> str:
        """As ``Sequential.summary``, in run order: the data's width, then the output width of each node
        that maps to new features (a weight matrix, or parameters and a new shape). A chain gives the
        chain's summary."""
        widths = [self.shapes[0]]
        for i, layer in enumerate(self.layers):
            params = [np.ndim(p) for p in layer.params.values()]
            if any(n >= 2 for n in params) or (params and self.shapes[i + 1] != self.input_shapes(i)[0]):
                widths.append(self.shapes[i + 1])
        return "-".join("x".join(map(str, shape)) for shape in widths)

    def parameter_count(self) -> int:
        return sum(v.size for v in self.params.values())
