"""Tables and text of the run: any table written as csv (full precision) and markdown, and the model's
summary (summary.txt). pandas is imported inside the functions."""

from __future__ import annotations

from pathlib import Path


def write_table(table, directory: Path, stem: str, floatfmt: str = ".4g") -> list[Path]:
    """``<stem>.csv`` (full precision) and ``<stem>.md`` (a markdown table) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv, md = directory / f"{stem}.csv", directory / f"{stem}.md"
    table.to_csv(csv, index=False)
    shown = table.astype(object).where(table.notna(), None)  # tabulate writes missingval for None, not NaN
    md.write_text(shown.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a") + "\n")
    return [csv, md]


def model_summary(model, dtype: str = "", title: str = "") -> str:
    """Layers, their input and output shapes, parameters (name and shape) and counts, and the total.

    ``model``: a ``runner.model.Sequential`` (uses ``layers``, ``types``, ``shapes``, ``origins``).
    """
    return format_summary(
        summary_rows(model), title or f"model {model.summary()}", dtype, graph=getattr(model, "names", None) is not None
    )


def summary_rows(model) -> list[dict]:
    """The rows of ``model_summary``'s table, plain data (read off the model where it trains; formatted where
    pandas is loaded: the sidecar)."""
    rows = []
    graph = getattr(model, "names", None) is not None  # a graph: its nodes' names and inputs
    for i, (layer, kind) in enumerate(zip(model.layers, model.types)):
        params = getattr(layer, "params", {}) or {}
        buffers = getattr(layer, "buffers", {}) or {}
        node = {"node": model.names[i], "inputs": ", ".join(model.input_names(i))} if graph else {}
        given = model.input_shapes(i) if graph else [model.shapes[i]]
        rows.append(
            {
                "#": i,
                **node,
                "layer": kind,
                "input": ", ".join("x".join(map(str, shape)) for shape in given),
                "output": "x".join(map(str, model.shapes[i + 1])),
                "parameters": ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in params.items()) or "-",
                "count": sum(int(v.size) for v in params.values()),
                "buffers": ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in buffers.items()) or "-",
                "from": model.origins[i] if i < len(getattr(model, "origins", [])) else "",
            }
        )
    return rows


def format_summary(rows: list[dict], head: str, dtype: str = "", graph: bool = False) -> str:
    """summary.txt from ``summary_rows``: the head line, the table, the total."""
    import pandas as pd

    table = pd.DataFrame(rows)
    if (table["buffers"] == "-").all():
        table = table.drop(columns="buffers")
    total = int(table["count"].sum())
    lines = [
        f"{head}: {len(rows)} {'nodes' if graph else 'layers'}, {total:,} trainable parameters"
        + (f" ({dtype})" if dtype else ""),
        "",
    ]
    lines.append(table.to_markdown(index=False, tablefmt="simple", intfmt=",", stralign="left"))
    lines += ["", f"total: {total:,} parameters"]
    return "\n".join(lines) + "\n"
