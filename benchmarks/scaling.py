"""How a step's time grows with batch size and width: runner's engine and the hand-written NumPy
loop, interleaved in one process (no torch), evaluation excluded, seed recipe otherwise (SGD,
batches drawn with replacement, one hidden ReLU layer, MNIST)."""

from __future__ import annotations

import statistics
from dataclasses import replace

from . import numpy_reference, runner_engine
from .recipes import MNIST, gemm_flops_per_step

BATCHES = (32, 100, 256, 1024)
WIDTHS = (50, 128, 512, 2048)


def configs(quick: bool) -> list[tuple[str, int, tuple[int, ...]]]:
    if quick:
        return [("batch", 32, (50,)), ("width", 100, (128,))]
    return [("batch", b, (50,)) for b in BATCHES] + [("width", 100, (w,)) for w in WIDTHS if w != 50]


def measure(data, quick: bool, rounds: int = 3) -> list[dict]:
    rows = []
    steps = 20 if quick else 400
    for kind, batch, hidden in configs(quick):
        recipe = replace(MNIST, batch_size=batch, hidden=hidden, iterations=steps)
        numpy_reference.train(replace(recipe, iterations=5), data)  # warm-up
        runner_engine.train(replace(recipe, iterations=5), data)
        per_step: dict[str, list[float]] = {"runner": [], "numpy": []}
        for r in range(1 if quick else rounds):
            order = ("runner", "numpy") if r % 2 == 0 else ("numpy", "runner")
            for engine in order:
                impl = runner_engine if engine == "runner" else numpy_reference
                result = impl.train(recipe, data)
                per_step[engine].append((result["seconds"] - result["eval_seconds"]) / result["steps"])
        flops = gemm_flops_per_step(recipe.widths(data.n_in, data.n_out), batch)["needed"]
        runner_s, numpy_s = statistics.median(per_step["runner"]), statistics.median(per_step["numpy"])
        rows.append(
            {
                "kind": kind,
                "batch": batch,
                "hidden": list(hidden),
                "runner_us": runner_s * 1e6,
                "numpy_us": numpy_s * 1e6,
                "ratio": runner_s / numpy_s,
                "gflops_runner": flops / runner_s / 1e9,
                "gflops_numpy": flops / numpy_s / 1e9,
                "runner_us_per_sample": runner_s * 1e6 / batch,
                "rounds": len(per_step["runner"]),
            }
        )
    return rows
