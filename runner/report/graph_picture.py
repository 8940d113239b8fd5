"""The model as a picture: plots/graph.png and plots/graph.svg, drawn by Graphviz's ``dot``.

One box per node (a graph's nodes, a chain's layers), in data-flow order from the data at the top to
the loss at the bottom: its name and type, output shape, parameter count, and the gradient check's
verdict on it (every array of the node alone and its parameters end to end, against
``gradcheck.threshold``): green passed, red failed, grey not checked. Merge inputs are numbered on
their edges. Needs the ``graphviz`` Python package and the ``dot`` program (Debian: ``apt-get install
graphviz``); without either the run goes on, and says once per process that the picture was skipped.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("runner.story")

COLORS = {"passed": "#c8e6c9", "failed": "#ffcdd2", None: "#eeeeee"}
BORDERS = {"passed": "#2e7d32", "failed": "#c62828", None: "#9e9e9e"}
_skipped_said = False


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def node_checks(metrics: Mapping[str, float], label: str, kind: str) -> list[float]:
    """The relative errors the run's gradient check logged for one node: alone and end to end."""
    prefixes = (f"gradcheck/{label}.{kind}.", f"gradcheck/model/{label}.{kind}.")
    return [float(v) for k, v in metrics.items() if k.startswith(prefixes) and k.endswith("/rel_error")]


def structure(model) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """(nodes, edges) of ``model`` in run order: each node ``{"id", "label", "type", "shape", "params",
    "inputs"}``; each edge ``(from id, to id, label)``. The data is the node ``x``."""
    names = getattr(model, "names", None)
    labels = list(names) if names is not None else [str(i) for i in range(len(model.layers))]
    nodes, edges = [], []
    for i, (label, kind, layer) in enumerate(zip(labels, model.types, model.layers)):
        sources = model.inputs[i] if names is not None else (i - 1,)
        count = sum(int(v.size) for v in (getattr(layer, "params", {}) or {}).values())
        nodes.append({"id": f"n{i}", "label": label, "type": kind, "shape": model.shapes[i + 1], "params": count})
        for k, j in enumerate(sources):
            edges.append(("x" if j < 0 else f"n{j}", f"n{i}", str(k) if len(sources) > 1 else ""))
    return nodes, edges


def available() -> bool:
    """Whether the graph can be drawn here (the graphviz package and Graphviz's dot); when not, says so once per process."""
    global _skipped_said
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is not None and shutil.which("dot") is not None:
        return True
    if not _skipped_said:
        what = "the graphviz Python package is" if graphviz is None else "Graphviz's dot program is"
        log.warning(
            "report: plots/graph.png and graph.svg skipped: %s not installed (pip install graphviz; apt-get install graphviz)",
            what,
        )
        _skipped_said = True
    return False


def draw(model, metrics: Mapping[str, float], threshold: float, directory: Path, loss: str = "", title: str = "") -> list[Path]:
    """Write ``graph.png`` and ``graph.svg`` into ``directory``; returns their paths ([] when Graphviz
    is missing: said once per process)."""
    if not available():
        return []
    nodes, edges = structure(model)
    return render(nodes, edges, model.shapes[0], title or f"model {model.summary()}", metrics, threshold, directory, loss)


def render(
    nodes: list[dict],
    edges: list[tuple[str, str, str]],
    input_shape,
    title: str,
    metrics: Mapping[str, float],
    threshold: float,
    directory: Path,
    loss: str = "",
) -> list[Path]:
    """``draw`` from plain data: ``structure``'s nodes and edges, the data's shape, the title."""
    import graphviz

    g = graphviz.Digraph("model", format="png")
    g.attr(rankdir="TB", fontname="Helvetica", fontsize="11", label=title, labelloc="t")
    g.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10")
    g.attr("edge", fontname="Helvetica", fontsize="8", color="#555555")
    g.node("x", f"x (data)\n{_shape(input_shape)}", shape="ellipse", fillcolor="#e3f2fd", color="#1565c0")
    for node in nodes:
        errors = node_checks(metrics, node["label"], node["type"])
        status = None if not errors else "passed" if max(errors) <= threshold else "failed"
        check = "not checked" if not errors else f"gradcheck {status} ({max(errors):.1e})"
        text = f"{node['label']}: {node['type']}\n{_shape(node['shape'])}\n{node['params']:,} parameters\n{check}"
        g.node(node["id"], text, fillcolor=COLORS[status], color=BORDERS[status])
    for source, target, label in edges:
        g.edge(source, target, label=label)
    if loss:
        errors = [float(v) for k, v in metrics.items() if k.startswith(f"gradcheck/loss.{loss}.") and k.endswith("/rel_error")]
        status = None if not errors else "passed" if max(errors) <= threshold else "failed"
        g.node("loss", f"loss: {loss}", shape="ellipse", fillcolor=COLORS[status], color=BORDERS[status])
        g.edge(nodes[-1]["id"], "loss")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in ("png", "svg"):
        path = directory / f"graph.{fmt}"
        path.write_bytes(g.pipe(format=fmt))
        paths.append(path)
    return paths
