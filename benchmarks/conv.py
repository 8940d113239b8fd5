"""Convolution layers by shape, 1 thread, float32: runner's conv2d (the registered class, and the reference
Conv2D it speeds up) against ``torch.nn.functional.conv2d``, forward and forward + backward; the layer's
im2col products alone (numpy.matmul, as ``gemm`` times them) with the machine's GEMM peak; runner's im2col
workspace (``Conv2D.workspace_bytes`` per sample) and the memory one forward + backward allocates.

``measure(impl, shapes, ...)`` runs one implementation (``runner``, ``torch`` or ``gemm``) in the worker's
process; ``python -m benchmarks`` runs each in its own process, in rotating order per repeat.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import numpy as np

from . import recipes as R

#: The extra shape beside the recipe's two layers: a wider layer, where the products dominate.
WIDE = {"name": "64->64 ch, 14x14", "c": 64, "h": 14, "w": 14, "out": 64}


def layer_shapes(quick: bool = False) -> list[dict]:
    """The CNN recipe's conv layers at its batch (quick mode: 20 images) and the wider 64 -> 64 layer: name, batch,
    input (c, h, w), out, kernel k, padding, whether d(input) is computed (not for the recipe's first layer)."""
    batch = 20 if quick else R.CNN.batch_size
    recipe = replace(R.CNN, batch_size=batch)
    shapes = []
    for i, g in enumerate(recipe.conv_layers()):
        name = f"CNN conv{i + 1}: {g['c']}->{g['out']} ch, {g['h']}x{g['w']}"
        shapes.append({"name": name, "c": g["c"], "h": g["h"], "w": g["w"], "out": g["out"], "dx": g["dx"]})
    shapes.append({**WIDE, "dx": True})
    return [{**s, "batch": batch, "k": recipe.kernel, "pad": recipe.padding} for s in shapes]


def geometry(s: dict) -> dict:
    """A shape's output size, im2col matrix (rows x fan_in) and the FLOPs of its products (2 m n k each)."""
    oh, ow = s["h"] + 2 * s["pad"] - s["k"] + 1, s["w"] + 2 * s["pad"] - s["k"] + 1
    fan_in, rows = s["c"] * s["k"] ** 2, s["batch"] * oh * ow
    forward = 2.0 * rows * fan_in * s["out"]
    return {"oh": oh, "ow": ow, "fan_in": fan_in, "rows": rows, "forward_flops": forward, "step_flops": forward * (2 + s["dx"])}


def products(s: dict) -> list[tuple[str, int, int, int, bool, bool]]:
    """The layer's im2col products as ``gemm.measure`` takes them (``recipes.conv_shapes``)."""
    g = geometry(s)
    return R.conv_shapes({"rows": g["rows"], "fan_in": g["fan_in"], "out": s["out"], "dx": s["dx"]}, s["name"])


def time_call(fn, min_seconds: float, rounds: int) -> dict:
    """Seconds per call: best and median of ``rounds`` rounds of enough calls to last ``min_seconds``."""
    fn()
    reps, began = 0, time.perf_counter()
    while time.perf_counter() - began < min_seconds / 4 or reps < 2:  # calibrate
        fn()
        reps += 1
    reps = max(1, int(min_seconds / ((time.perf_counter() - began) / reps)))
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - began) / reps)
    return {"best": min(samples), "median": statistics.median(samples)}


def operands(s: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A float32 batch x (batch, c, h, w) and an upstream gradient dy (batch, out, oh, ow)."""
    g, rng = geometry(s), np.random.default_rng(seed)
    x = rng.standard_normal((s["batch"], s["c"], s["h"], s["w"]), dtype=np.float32)
    dy = rng.standard_normal((s["batch"], s["out"], g["oh"], g["ow"]), dtype=np.float32)
    return x, dy


def runner_layers(s: dict) -> dict:
    """{"conv2d": the registered conv2d, "reference": the Conv2D class it derives from}, built for the shape."""
    from runner.plugins.discovery import load_registry

    options = {"out": s["out"], "kernel": s["k"], "padding": s["pad"]}
    registered = load_registry().get("layer", "conv2d", "benchmarks").create(options, "conv2d")
    reference_class = next(c for c in type(registered).__mro__ if c.__name__ == "Conv2D")
    layers = {"conv2d": registered, "reference": reference_class(**options)}
    for layer in layers.values():
        layer.build((s["c"], s["h"], s["w"]), np.random.default_rng(0), np.dtype(np.float32))
        layer.needs_input_grad = s["dx"]
    if type(registered) is reference_class:  # the fast variants switched off: one row is enough
        del layers["reference"]
    return layers


def peak_allocated(layer, x: np.ndarray, dy: np.ndarray) -> int:
    """Bytes NumPy allocates at most during one forward + backward in the steady state (tracemalloc: the layer's
    new im2col matrix while it still holds the last one, the padded image, the output, col2im's image)."""
    import tracemalloc

    layer.forward(x, True)
    layer.backward(dy)
    tracemalloc.start()
    try:
        layer.forward(x, True)
        layer.backward(dy)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure_runner(shapes: list[dict], min_seconds: float, rounds: int) -> list[dict]:
    rows = []
    for s in shapes:
        x, dy = operands(s)
        for variant, layer in runner_layers(s).items():
            forward = time_call(lambda layer=layer, x=x: layer.forward(x, True), min_seconds, rounds)
            step = time_call(lambda layer=layer, x=x, dy=dy: (layer.forward(x, True), layer.backward(dy)), min_seconds, rounds)
            rows.append(
                {
                    "name": s["name"],
                    "variant": f"runner {variant} ({type(layer).__name__})",
                    "forward": forward,
                    "step": step,
                    "workspace_bytes_per_sample": int(getattr(layer, "workspace_bytes", 0)),
                    "peak_allocated": peak_allocated(layer, x, dy),
                }
            )
    return rows


def measure_torch(shapes: list[dict], threads: int, min_seconds: float, rounds: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    rows = []
    for s in shapes:
        x_np, dy_np = operands(s)
        x, dy = torch.from_numpy(x_np).requires_grad_(s["dx"]), torch.from_numpy(dy_np)
        W = torch.randn(s["out"], s["c"], s["k"], s["k"], requires_grad=True)
        b = torch.zeros(s["out"], requires_grad=True)
        inputs = [x, W, b] if s["dx"] else [W, b]

        def forward(x=x, W=W, b=b, pad=s["pad"]):
            return F.conv2d(x, W, b, padding=pad)

        def step(forward=forward, inputs=inputs, dy=dy):
            return torch.autograd.grad(forward(), inputs, dy)

        rows.append(
            {
                "name": s["name"],
                "variant": "torch F.conv2d",
                "forward": time_call(forward, min_seconds, rounds),
                "step": time_call(step, min_seconds, rounds),
            }
        )
    return rows


def measure(impl: str, shapes: list[dict], threads: int = 1, min_seconds: float = 0.2, rounds: int = 5) -> dict:
    """One implementation's rows: ``runner`` (registered and reference conv2d), ``torch`` (F.conv2d), ``gemm``
    (each layer's im2col products alone, and the square peak)."""
    if impl == "runner":
        return {"rows": measure_runner(shapes, min_seconds, rounds)}
    if impl == "torch":
        import torch

        return {"rows": measure_torch(shapes, threads, min_seconds, rounds), "torch": torch.__version__}
    if impl == "gemm":
        from . import gemm

        all_products = [p for s in shapes for p in products(s)]
        return gemm.measure(all_products, threads, min_seconds / 4, rounds)
    raise ValueError(f"conv: unknown implementation {impl!r}")
