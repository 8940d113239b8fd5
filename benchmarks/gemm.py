"""The machine's fp32 GEMM speed for the exact products a training step does (numpy.matmul on
OpenBLAS, threads limited by threadpoolctl), and for a large square product (the machine's peak)."""

from __future__ import annotations

import statistics
import time

import numpy as np

SQUARE = 2048  # the large square product: n x n @ n x n


def operands(m: int, n: int, k: int, ta: bool, tb: bool, rng: np.random.Generator):
    """op(A) (m x k) and op(B) (k x n), transposed views where the step uses them (x^T dout, dout W^T)."""
    A = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    return (A.T if ta else A), (B.T if tb else B)


def time_product(m: int, n: int, k: int, ta: bool, tb: bool, min_seconds: float, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    A, B = operands(m, n, k, ta, tb, rng)
    out = np.empty((m, n), np.float32)
    np.matmul(A, B, out=out)
    reps, began = 0, time.perf_counter()
    while time.perf_counter() - began < min_seconds / 4 or reps < 2:  # calibrate
        np.matmul(A, B, out=out)
        reps += 1
    per = (time.perf_counter() - began) / reps
    reps = max(1, int(min_seconds / per))
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(reps):
            np.matmul(A, B, out=out)
        samples.append((time.perf_counter() - began) / reps)
    flops = 2.0 * m * n * k
    return {
        "seconds_best": min(samples),
        "seconds_median": statistics.median(samples),
        "gflops_best": flops / min(samples) / 1e9,
        "gflops_median": flops / statistics.median(samples) / 1e9,
    }


def measure(shapes: list, threads: int, min_seconds: float = 0.05, rounds: int = 5) -> dict:
    """{"shapes": [{name, m, n, k, ...timings}], "square": {...}} at the current thread limit."""
    rows = []
    for name, m, n, k, ta, tb in shapes:
        rows.append({"name": name, "m": m, "n": n, "k": k, **time_product(m, n, k, ta, tb, min_seconds, rounds)})
    square = SQUARE if min_seconds >= 0.02 else 512
    return {
        "threads": threads,
        "shapes": rows,
        "square": {"n": square, **time_product(square, square, square, False, False, max(min_seconds, 0.1), rounds)},
    }


def step_gemm_seconds(rows: list[dict], widths: list[int], batch: int, best: bool = True) -> float:
    """Seconds the matrix products a training step needs take in isolation at the measured speeds."""
    key = "seconds_best" if best else "seconds_median"
    by_name = {r["name"]: r[key] for r in rows}
    from .recipes import gemm_shapes

    return sum(by_name[name] for name, *_ in gemm_shapes(widths, batch))
