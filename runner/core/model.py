"""A Sequential model assembled from layer plugins, with shapes inferred and checked before training."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from runner.api import Layer, Meta, RunnerError, option
from runner.core.images import model_input_shape
from runner.core.images import shaped_for as shaped_for
from runner.plugins.registry import Registry


class Sequential:
    """Layers applied in order. Parameters are named ``<index>.<type>.<key>``, e.g. ``0.linear.W``."""

    def __init__(self, layers: list[Layer], types: list[str], shapes: list[tuple[int, ...]], origins: list[str] | None = None):
        self.layers, self.types, self.shapes = layers, types, shapes
        self.origins = origins or []  # the provider of each layer, for error messages
        self._granted: list[Layer] = []  # the layers _grant_in_place last saw
        #: ``watcher(i, output)``: set for one forward pass by the watch (runner.core.watch), None otherwise
        self.watcher: Callable[[int, np.ndarray], None] | None = None

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"{i}.{t}.{k}": v for i, (layer, t) in enumerate(zip(self.layers, self.types)) for k, v in layer.params.items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {f"{i}.{t}.{k}": v for i, (layer, t) in enumerate(zip(self.layers, self.types)) for k, v in layer.grads.items()}

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        return {
            f"{i}.{t}.{k}": v
            for i, (layer, t) in enumerate(zip(self.layers, self.types))
            for k, v in getattr(layer, "buffers", {}).items()
        }

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        layers = self.layers
        if self._granted != layers:  # the first call, or layers were replaced
            self._grant_in_place()
        watcher, i = self.watcher, 0
        try:
            for i, layer in enumerate(layers):  # noqa: B007 - i names the failing layer below
                x = layer.forward(x, training)
                if watcher is not None:  # now: the next layer may overwrite x in place
                    watcher(i, x)
        except Exception as e:
            raise self._failed(i, "forward", e) from e
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        layers = self.layers
        i = len(layers) - 1  # the index of the layer running
        try:
            for layer in reversed(layers):
                dout = layer.backward(dout)
                i -= 1
        except Exception as e:
            raise self._failed(i, "backward", e) from e
        return dout

    def _grant_in_place(self) -> None:
        """Let the layers that can work in place (relu, dropout) do so on arrays nobody else holds.

        Such a layer class defines ``overwrite_input`` and ``overwrite_dout`` (False); they are set
        here per layer. Any layer may declare ``output_unshared`` / ``input_grad_unshared``: True when
        the array its forward / backward returns is held by nobody else, itself included (linear's).
        Layer i may overwrite its input when layer i-1's output is unshared, and its dout when layer
        i+1's d(input) is; never the model's input (the caller's data) nor the loss's gradient.
        Called again whenever ``self.layers`` no longer holds the layers it saw.
        """
        layers = self.layers
        for i, layer in enumerate(layers):  # forward order: a layer's output_unshared may depend on its own flag
            if hasattr(type(layer), "overwrite_input"):
                layer.overwrite_input = i > 0 and getattr(layers[i - 1], "output_unshared", False)
        for i in reversed(range(len(layers))):
            layer = layers[i]
            if hasattr(type(layer), "overwrite_dout"):
                layer.overwrite_dout = i + 1 < len(layers) and getattr(layers[i + 1], "input_grad_unshared", False)
        self._granted = list(layers)

    def _failed(self, i: int, method: str, e: Exception) -> RunnerError:
        """A layer's exception, named by the layer and the plugin that provides it."""
        origin = f", from {self.origins[i]}" if self.origins else ""
        return RunnerError(f"model.layers[{i}] ({self.types[i]}{origin}): {method} raised {type(e).__name__}: {e}")

    def astype(self, dtype: Any) -> Sequential:
        """A deep copy whose parameters and gradients are of ``dtype`` (float64 for the gradient check)."""
        twin = copy.deepcopy(self)
        for layer in twin.layers:
            layer.params = {k: v.astype(dtype) for k, v in layer.params.items()}
            layer.grads = {k: v.astype(dtype) for k, v in layer.grads.items()}
            layer.buffers = {k: v.astype(dtype) for k, v in getattr(layer, "buffers", {}).items()}
        return twin

    def summary(self) -> str:
        """The input's width, then the output width of each layer that maps to new features, e.g.
        ``784-50-10``: a layer with a weight matrix or kernel (a parameter of two or more dimensions), or
        with parameters and an output shape of its own. Activations, norms and dropout keep the width and
        are left out, with parameters or without (prelu's alpha, batchnorm's gamma and beta)."""
        widths = [self.shapes[0]]
        for i, layer in enumerate(self.layers):
            params = [np.ndim(p) for p in layer.params.values()]
            if any(n >= 2 for n in params) or (params and self.shapes[i + 1] != self.shapes[i]):
                widths.append(self.shapes[i + 1])
        return "-".join("x".join(map(str, shape)) for shape in widths)

    def parameter_count(self) -> int:
        return sum(v.size for v in self.params.values())


def mlp_layers(
    hidden: Iterable[int],
    activation: str,
    output_activation: str | None,
    linear: dict | None,
    dropout: float = 0.0,
    norm: str | None = None,
) -> list[dict]:
    """Layer configs of an MLP: per hidden width linear (-> norm) -> activation (-> dropout p),
    then a linear layer as wide as the data's outputs (-> output_activation)."""
    hidden = hidden_widths(hidden)
    options = dict(linear or {})
    layers: list[dict] = []
    for width in hidden:
        layers.append({"type": "linear", "out": width, **options})
        if norm:
            layers.append({"type": norm})
        layers.append({"type": activation})
        if dropout:
            layers.append({"type": "dropout", "p": dropout})
    layers.append({"type": "linear", "out": "auto", **options})
    if output_activation:
        layers.append({"type": output_activation})
    return layers


def cnn_layers(model: Mapping[str, Any]) -> list[dict]:
    """Layer configs of a ConvNet: per entry of ``channels`` a block conv2d (kernel, padding) (-> norm)
    -> activation (-> pool, 2x2), then flatten and an mlp's dense part (``hidden``, dropout) ending as
    wide as the data's outputs. ``channels=[16,32] hidden=[128]`` is conv-relu-pool x2, 128, 10 on MNIST."""
    channels = widths("model.channels", model["channels"], "model.channels=[16,32]")
    conv = dict(model.get("conv") or {})
    layers: list[dict] = []
    for width in channels:
        layers.append({"type": "conv2d", "out": width, "kernel": model["kernel"], "padding": model["padding"], **conv})
        if model.get("norm"):
            layers.append({"type": model["norm"]})
        layers.append({"type": model["activation"]})
        if model.get("pool"):
            layers.append({"type": model["pool"], "kernel": 2})
    layers.append({"type": "flatten"})
    dense = mlp_layers(model["hidden"], model["activation"], None, model.get("linear"), model.get("dropout", 0.0))
    return layers + dense


def hidden_widths(hidden: Any) -> list[int]:
    """``model.hidden`` as a list of positive widths; anything else names what was written and what is
    expected (``model.hidden=abc`` is the string 'abc' to Hydra, not a list of three widths)."""
    return widths("model.hidden", hidden, "model.hidden=[50] or model.hidden='[100,100]'")


def widths(key: str, values: Any, example: str) -> list[int]:
    """A config list of positive widths (hidden sizes, channels), or one line naming what was written."""
    if isinstance(values, (str, bytes, int, float, Mapping)) or not isinstance(values, Iterable):
        raise RunnerError(f"{key}: expected a list of positive widths, e.g. {example}, got {values!r}")
    values = list(values)
    for i, width in enumerate(values):
        try:
            option(f"{key}[{i}]", width, int, lambda v: v > 0, "a positive integer width")
        except RunnerError as e:
            raise RunnerError(f"{e} ({key}={values}; e.g. {example})") from None
    return values


def build_model(layer_configs: list[dict], registry: Registry, meta: Meta, rng: np.random.Generator, dtype: Any) -> Sequential:
    """Instantiate and build every layer, inferring shapes from the data; mismatches name the layer.
    A ``runner.core.graph.GraphConfig`` (``model.type: graph``) builds a ``Graph``."""
    from runner.core.graph import GraphConfig, build_graph

    if isinstance(layer_configs, GraphConfig):
        return build_graph(layer_configs, registry, meta, rng, dtype)  # type: ignore[return-value]
    if not layer_configs:
        raise RunnerError("model.layers: expected at least one layer, got an empty list")
    shape = tuple(meta.input_shape)
    shapes, layers, types, origins = [shape], [], [], []
    for i, config in enumerate(layer_configs):
        options = dict(config)
        if "type" not in options:
            raise RunnerError(f"model.layers[{i}]: missing 'type' (one of {', '.join(registry.names('layer'))}), got {config}")
        layer_type = options.pop("type")
        where = f"model.layers[{i}] ({layer_type})"
        expected_in = options.pop("in", None)
        if expected_in is not None and (expected_in,) != shape:
            raise RunnerError(f"{where}: expected input of {expected_in} features, got {'x'.join(map(str, shape))}")
        if options.get("out") == "auto":
            options["out"] = meta.output_size
        entry = registry.get("layer", layer_type, f"model.layers[{i}].type")
        layer = entry.create(options, where)
        if i == 0:
            shape = model_input_shape(layer, meta, where)
            shapes[0] = shape
        if getattr(layer, "n_inputs", 1) != 1:
            raise RunnerError(f"{where}: a merge layer of several inputs; merge in a graph (model=graph, docs/plugins.md)")
        try:
            shape = tuple(layer.build(shape, rng, dtype))
        except RunnerError as e:
            raise RunnerError(f"{where}: {e}") from None
        layers.append(layer)
        types.append(layer_type)
        shapes.append(shape)
        origins.append(str(entry.provider))
    if shape != (meta.output_size,):
        raise RunnerError(
            f"model.layers[{len(layers) - 1}] ({types[-1]}): the model gives {'x'.join(map(str, shape))} outputs, "
            f"but dataset {meta.name!r} ({meta.task}) needs {meta.output_size}"
        )
    layers[0].needs_input_grad = False  # d(input) of the data is never used
    return Sequential(layers, types, shapes, origins)


def layer_configs(model: Mapping[str, Any], registry: Registry) -> list[dict]:
    """The layer configs of the config section ``model`` (plain data): an mlp's expanded, a sequential's as written,
    a graph's nodes checked and in run order (a ``runner.core.graph_config.GraphConfig``)."""
    kind = model.get("type")
    required = {
        "mlp": ("hidden", "activation", "linear"),
        "cnn": ("channels", "kernel", "padding", "activation", "hidden"),
        "sequential": ("layers",),
        "graph": ("nodes",),
    }.get(str(kind), ())
    missing = [key for key in required if key not in model]
    if missing:
        raise RunnerError(
            f"model.{missing[0]}: missing for a {kind} model (model.type: {kind}); "
            f"choose the model with model={kind}, whose config has it"
        )
    if kind == "mlp":
        for key in ("activation", "output_activation", "norm"):
            if model.get(key):
                registry.get("layer", model[key], f"model.{key}")
        return mlp_layers(
            model["hidden"],
            model["activation"],
            model.get("output_activation"),
            dict(model["linear"]),
            model.get("dropout", 0.0),
            model.get("norm"),
        )
    if kind == "cnn":
        for key in ("activation", "norm", "pool"):
            if model.get(key):
                registry.get("layer", model[key], f"model.{key}")
        return cnn_layers(model)
    if kind == "sequential":
        return [dict(layer) for layer in model["layers"]]
    if kind == "graph":
        from runner.core.graph_config import graph_config

        return graph_config(model)
    raise RunnerError(f"model.type: expected 'mlp', 'cnn', 'sequential' or 'graph', got {kind!r}")
