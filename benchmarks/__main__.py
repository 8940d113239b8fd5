"""``python -m benchmarks [--quick] [--threads 1,2] [--repeats N] [--out docs/benchmarks.md | results.json]``

Runs every measurement in its own process, one after another, A/B/C interleaved per repeat (the
engines' order rotates from one repeat to the next), and reports medians and ratios as markdown
(and the raw figures as JSON). ``--quick`` runs a few steps of everything in well under a minute:
it proves the harness works; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import recipes as R
from .data import ROOT, cache_dataset, default_data_dir

SECTIONS = ("gemm", "engines", "conv", "graph", "breakdown", "tracking", "cli", "scaling", "sweep", "watch", "overhead")
#: What --quick leaves out unless --only names it: the sweep, the conv section (which brings the CNN recipe) and the
#: watch (two more whole runs: ``--quick --only watch`` runs it alone).
QUICK_SKIPS = ("sweep", "conv", "watch", "overhead")
#: the watch section: at least this many interleaved pairs (on, off) of whole runs. The watch costs 50-100 ms of a
#: 3.5-4 s run whose wall time spreads by +-0.4 s on a busy 2-core machine: 9 pairs read 2.8 % and 9.2 % within
#: minutes of each other, 25 pairs 1.4 % (docs/benchmarks.md)
WATCH_PAIRS = 15
#: at least this many timings of each short command (--help, the plugin listing): a few tenths of a second each
COMMAND_REPEATS = 7
#: The recipes the graph section trains twice (a Sequential chain, the same chain as a graph): seed MNIST (the target) and iris.
GRAPH_RECIPES = ("mnist", "tiny")
#: OpenBLAS settings that may be set on this machine: never changed, only (together) left out of one extra row.
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MARK_BEGIN, MARK_END = "<!-- benchmarks:begin (written by python -m benchmarks) -->", "<!-- benchmarks:end -->"


def log(message: str) -> None:
    print(f"[benchmarks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def worker(spec: dict, drop_env: tuple[str, ...] = ()) -> dict:
    """One measurement in a fresh ``python -m benchmarks.worker`` process."""
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {spec.get('engine')} {spec.get('recipe', '')} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def rotate(items: list, r: int) -> list:
    k = r % len(items)
    return items[k:] + items[:k]


def code_fingerprint() -> dict:
    """A digest of runner/, plugins/ and conf/ and the newest modification: the code measured, and
    whether it changed while the benchmark ran (others edit the tree)."""
    import hashlib

    digest, newest = hashlib.sha256(), 0.0
    for folder in ("runner", "plugins", "conf"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
                newest = max(newest, path.stat().st_mtime)
    return {
        "sha256": digest.hexdigest()[:16],
        "newest": datetime.fromtimestamp(newest, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def machine_facts() -> dict:
    import numpy
    from threadpoolctl import threadpool_info

    cpu = ""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = " ".join(f for f in line.split(":", 1)[1].split() if f in ("avx2", "avx512f", "fma"))
    except OSError:
        pass
    mem = ""
    try:
        mem = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        pass
    versions = {}
    from importlib import metadata

    for dist in ("runner", "numpy", "mlflow", "hydra-core", "hydra-joblib-launcher", "threadpoolctl", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpu_flags": flags,
        "memory": mem,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "versions": versions,
        "blas": [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ],
        "openblas_env": {k: os.environ.get(k) for k in OPENBLAS_ENV},
        "load_start": os.getloadavg(),
        "code_start": code_fingerprint(),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="a few steps of everything (proves the harness works; figures meaningless)"
    )
    p.add_argument("--threads", default=None, help="BLAS threads to compare at, e.g. 1,2 (default 1,2; quick: 1)")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved repeats per measurement "
        "(default 3; at 1 thread at least 5 for the cheap seed MNIST and tiny recipes; quick: 1)",
    )
    p.add_argument(
        "--recipes",
        default=None,
        help=f"which recipes (default all: {','.join(R.RECIPES)}; quick: {','.join(R.MLP_RECIPES)}, "
        "or cnn alone when --only names conv)",
    )
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated sections among {','.join(SECTIONS)} (default all; quick: all but {' and '.join(QUICK_SKIPS)})",
    )
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    p.add_argument("--data-dir", default=None, help="MNIST lives in <dir>/mnist (default: $RUNNER_DATA_DIR or ../shared/data)")
    p.add_argument(
        "--out", default=None, help="write the report: a .md file (only its generated block is replaced) or a .json file"
    )
    p.add_argument("--json", default=None, help="also write the raw results as JSON here")
    p.add_argument(
        "--report-from", default=None, metavar="JSON", help="measure nothing: render the report of a saved --json file"
    )
    return p.parse_args(argv)


def default_recipes(quick: bool, sections: set[str]) -> tuple[str, ...]:
    """Every recipe; in quick mode the MLP ones, or the CNN recipe alone when the conv section runs (its quick run
    stays short, and the default quick run keeps its MLP recipes)."""
    if not quick:
        return tuple(R.RECIPES)
    return ("cnn",) if "conv" in sections else R.MLP_RECIPES


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    import signal

    if threading_main():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that temporary data is removed
    if args.report_from:
        from .report import markdown

        results = json.loads(Path(args.report_from).read_text())
        write(args, results, markdown(results))
        return results
    quick = args.quick
    threads = [int(t) for t in (args.threads or ("1" if quick else "1,2")).split(",")]
    repeats = args.repeats or (1 if quick else 3)
    sections = set(args.only.split(",")) if args.only else set(SECTIONS) - (set(QUICK_SKIPS) if quick else set())
    unknown = sections - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--only: unknown sections {sorted(unknown)}; expected among {', '.join(SECTIONS)}")
    names = [n for n in (args.recipes or ",".join(default_recipes(quick, sections))).split(",") if n]
    if set(names) - set(R.RECIPES):
        raise SystemExit(f"--recipes: unknown {sorted(set(names) - set(R.RECIPES))}; expected among {', '.join(R.RECIPES)}")
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    from . import torch_reference

    torch_ok = torch_reference.available() and not args.no_torch
    engines = ["runner", "numpy"] + (["torch"] if torch_ok else [])
    results: dict = {
        "machine": machine_facts(),
        "settings": {
            "quick": quick,
            "threads": threads,
            "repeats": repeats,
            "sections": sorted(sections),
            "recipes": names,
            "engines": engines,
            "torch": torch_ok,
        },
    }
    results["recipes"] = {
        n: {"title": R.get(n, quick).title, "description": R.get(n, quick).describe(), "experiment": R.get(n, quick).experiment}
        for n in names
    }
    began = time.perf_counter()
    cache = Path(tempfile.mkdtemp(prefix="runner-bench-data-"))
    try:
        log(f"{'quick' if quick else 'full'} run: sections {', '.join(sorted(sections))}; threads {threads}; repeats {repeats}")
        paths = {}
        for n in names:
            recipe = R.get(n, quick)
            if recipe.dataset not in paths:
                paths[recipe.dataset] = str(cache_dataset(recipe.dataset, data_dir, cache))
        from .data import Data

        dims = {n: (Data(paths[R.get(n, quick).dataset], 1).n_in, Data(paths[R.get(n, quick).dataset], 1).n_out) for n in names}
        results["dims"] = dims

        def section(key: str, fn) -> None:
            """One section; a failure is recorded and reported, and the other sections still run."""
            try:
                value = fn()
                if value is not None:
                    results[key] = value
            except Exception as e:  # noqa: BLE001 - e.g. runner's API moved under us: say so in the report
                results.setdefault("errors", {})[key] = f"{type(e).__name__}: {e}"[-4000:]
                log(f"{key} failed: {type(e).__name__}: {str(e)[-2000:]}")

        def compute() -> None:
            if "gemm" in sections:
                section("gemm", lambda: measure_gemm(names, dims, threads, quick))
            if "engines" in sections:
                section(
                    "engines",
                    lambda: measure_engines(
                        names, paths, threads, repeats, engines, quick, phases=quick and "breakdown" in sections
                    ),
                )
            if "conv" in sections:
                section("conv", lambda: measure_conv(repeats, torch_ok, quick))
            if "graph" in sections:
                section("graph", lambda: measure_graph(names, paths, threads, repeats, quick))
                if "graph" in results:  # the graph of a chain trains exactly as the chain: else a failed section
                    section("graph_bitwise", lambda: check_graph_bitwise(results["graph"]))
            if "breakdown" in sections:
                section("breakdown", lambda: measure_breakdown(names, paths, quick, results.get("engines"), torch_ok))
            if "scaling" in sections and "mnist" in paths:
                log("scaling: batch size and width, runner vs numpy, 1 thread")
                section(
                    "scaling",
                    lambda: worker({"engine": "scaling", "data": paths["mnist"], "limit": 5000, "quick": quick, "threads": 1})[
                        "rows"
                    ],
                )

        def processes() -> None:
            if "tracking" in sections and "mnist" in names:
                log("tracking: runner engine, seed MNIST, no-op sink vs Tracker.log_metrics (alternating)")
                section(
                    "tracking_engine",
                    lambda: worker(
                        {
                            "engine": "runner",
                            "recipe": "mnist",
                            "quick": quick,
                            "threads": 1,
                            "data": paths["mnist"],
                            "sink": "tracking",
                            "inner": 1 if quick else max(3, repeats),
                        }
                    ),
                )
            if "cli" in sections:
                section("cli", lambda: measure_cli(data_dir, threads, repeats, torch_ok, quick))
            if "sweep" in sections:
                section("sweep", lambda: measure_sweep(data_dir, repeats, quick))
            if "watch" in sections:
                section("watch", lambda: measure_watch(data_dir, repeats, quick, paths.get("mnist")))
            if "overhead" in sections:
                section("overhead", lambda: measure_overhead(data_dir, repeats, quick))

        if quick:  # figures are meaningless in quick mode: overlap the two halves to finish sooner
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(compute), pool.submit(processes)]:
                    future.result()
        else:  # one measurement at a time
            compute()
            processes()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    results["machine"]["load_end"] = os.getloadavg()
    results["machine"]["code_end"] = code_fingerprint()
    results["seconds"] = time.perf_counter() - began
    from .report import markdown

    text = markdown(results)
    write(args, results, text)
    log(f"done in {results['seconds']:.0f} s")
    return results


def measure_gemm(names: list[str], dims: dict, threads: list[int], quick: bool) -> dict:
    shapes, seen = [], set()
    for n in names:
        recipe = R.get(n, quick)
        n_in, n_out = dims[n]
        for shape in R.step_products(recipe, n_in, n_out):
            if shape[0] not in seen:
                seen.add(shape[0])
                shapes.append(shape)
    out = {}
    for t in threads:
        log(f"gemm: {len(shapes)} product shapes and a {2048 if not quick else 512}^3 square, {t} thread(s)")
        out[str(t)] = worker(
            {
                "engine": "gemm",
                "shapes": shapes,
                "threads": t,
                "min_seconds": 0.005 if quick else 0.05,
                "rounds": 2 if quick else 7,
            }
        )
    return out


def measure_engines(names, paths, threads, repeats, engines, quick, phases: bool = False) -> dict:
    """Every (recipe, threads): the engines in rotating order, once per repeat, each in its own process."""
    variants = [(e, e, ()) for e in engines]
    env_set = any(os.environ.get(k) for k in OPENBLAS_ENV)
    out: dict = {n: {str(t): {} for t in threads} for n in names}
    # the cheap recipes get more repeats at the thread count ratios are quoted at
    rounds = {
        (n, t): repeats if quick or t != min(threads) else max(repeats, R.get(n).min_repeats) for n in names for t in threads
    }
    for r in range(max(rounds.values())):
        for n in names:
            recipe = R.get(n, quick)
            for t in threads:
                if r >= rounds[n, t]:
                    continue
                rows = list(variants)
                if env_set and t == min(threads) and n == "mnist":  # an extra row: the same runs without them
                    rows += [(f"{e} (no OPENBLAS_* env)", e, OPENBLAS_ENV) for e in ("runner", "numpy")]
                for label, engine, drop in rotate(rows, r):
                    spec = {"engine": engine, "recipe": n, "quick": quick, "threads": t, "data": paths[recipe.dataset]}
                    if engine == "runner" and t == min(threads) and not drop and not (quick and recipe.channels):
                        spec["gradcheck"] = 1 if quick else 3  # quick mode: not the CNN's (~10 s on 2 cores)
                    if phases and engine in ("runner", "numpy") and t == min(threads) and not drop:
                        spec["phases"] = True  # quick mode: the breakdown comes from these runs
                    if phases and engine == "torch" and recipe.channels and t == min(threads):
                        spec["profile"] = True  # and a ConvNet's torch operators from this one
                    result = worker(spec, drop)
                    out[n][str(t)].setdefault(label, []).append(result)
                    seconds = [x["seconds"] for x in result["runs"]]
                    log(f"engines: repeat {r + 1}/{rounds[n, t]} {n} {t} thread(s) {label}: {min(seconds):.3f} s")
    return out


def measure_conv(repeats: int, torch_ok: bool, quick: bool) -> dict:
    """Conv layers by shape at 1 thread (benchmarks/conv.py): runner's conv2d, torch's F.conv2d and the layers' im2col
    products alone (with the square GEMM peak), each in its own process, in rotating order per repeat."""
    from .conv import layer_shapes

    shapes = layer_shapes(quick)
    impls = ["runner", "gemm"] + (["torch"] if torch_ok else [])
    out: dict = {"shapes": shapes, "runs": {impl: [] for impl in impls}}
    for r in range(repeats):
        for impl in rotate(impls, r):
            spec = {"engine": "conv", "impl": impl, "shapes": shapes, "threads": 1}
            spec.update({"min_seconds": 0.01, "rounds": 2} if quick else {"min_seconds": 0.2, "rounds": 5})
            out["runs"][impl].append(worker(spec))
            log(f"conv: repeat {r + 1}/{repeats} {impl}: {len(shapes)} layer shapes")
    return out


def measure_graph(names, paths, threads, repeats, quick) -> dict:
    """Seed MNIST (and iris) through runner's engine, the network written as the Sequential chain and as the same
    chain in a ``model.type: graph`` config: same seed (weights, batches), each run in its own process, the two in
    rotating order per repeat; at the smallest thread count at least the recipe's ``min_repeats``."""
    from .runner_engine import MODELS

    chosen = [n for n in GRAPH_RECIPES if n in names]
    out: dict = {n: {str(t): {m: [] for m in MODELS} for t in threads} for n in chosen}
    rounds = {
        (n, t): repeats if quick or t != min(threads) else max(repeats, R.get(n).min_repeats) for n in chosen for t in threads
    }
    for r in range(max(rounds.values(), default=0)):
        for n in chosen:
            recipe = R.get(n, quick)
            for t in threads:
                if r >= rounds[n, t]:
                    continue
                for model in rotate(list(MODELS), r):
                    spec = {"engine": "runner", "model": model, "recipe": n, "quick": quick, "threads": t}
                    result = worker({**spec, "data": paths[recipe.dataset]})
                    out[n][str(t)][model].append(result)
                    seconds = [x["seconds"] for x in result["runs"]]
                    log(f"graph: repeat {r + 1}/{rounds[n, t]} {n} {t} thread(s) {model}: {min(seconds):.3f} s")
    return out


def check_graph_bitwise(graph: dict) -> None:
    """Raise when a graph run ended with other parameters than its Sequential twin (same recipe and threads)."""
    from .report import graph_mismatches

    wrong = graph_mismatches(graph)
    if wrong:
        raise AssertionError("the graph of a chain did not train bitwise as the chain: " + "; ".join(wrong))


def measure_breakdown(names, paths, quick, engines: dict | None = None, torch_ok: bool = False) -> dict:
    """Per phase of a step, at 1 thread: runner (timers around its objects) vs the NumPy loop (ticks), one run each
    (a ConvNet's per layer); a cProfile of runner's engine on the seed recipe; torch.profiler's operators on a
    ConvNet recipe's steps. Quick mode takes the phases from the engines' runs."""
    out: dict = {}
    for n in names:
        if quick and engines:
            by_engine = engines.get(n, {}).get("1", {})
            if by_engine.get("runner") and by_engine.get("numpy") and "phases" in by_engine["runner"][0]["runs"][0]:
                out[n] = {"runner": by_engine["runner"][0], "numpy": by_engine["numpy"][0], "overrides": {}}
            if by_engine.get("torch") and "profile" in by_engine["torch"][0]["runs"][0] and n in out:
                out[n]["torch_profile"] = by_engine["torch"][0]
        recipe = R.get(n, quick)
        if n not in out:
            overrides = {"epochs": 2} if (n == "mlp512" and not quick) else {}
            spec = {
                "recipe": n,
                "quick": quick,
                "threads": 1,
                "data": paths[recipe.dataset],
                "phases": True,
                "inner": 1,
                "overrides": overrides,
            }
            log(f"breakdown: {n} runner and numpy by phase")
            out[n] = {
                "runner": worker({**spec, "engine": "runner"}),
                "numpy": worker({**spec, "engine": "numpy"}),
                "overrides": overrides,
            }
        if recipe.channels and torch_ok and "torch_profile" not in out[n]:  # where PyTorch's time goes: its operators
            log(f"breakdown: {n} torch by operator (torch.profiler)")
            spec = {"engine": "torch", "recipe": n, "quick": quick, "threads": 1, "profile": True, "inner": 1}
            out[n]["torch_profile"] = worker({**spec, "data": paths[recipe.dataset]})
    if "mnist" in names:
        log("profile: cProfile of runner's engine, seed MNIST, 1 thread")
        recipe = R.get("mnist", quick)
        out["profile"] = worker(
            {
                "engine": "runner",
                "recipe": "mnist",
                "quick": quick,
                "threads": 1,
                "data": paths[recipe.dataset],
                "profile": True,
                "inner": 1,
            }
        )
    return out


def measure_cli(data_dir: Path, threads: list[int], repeats: int, torch_ok: bool, quick: bool) -> dict:
    from .cli import NO_HUGE_PAGES, EndToEnd, profile_cli

    iterations = 30 if quick else None
    e2e = EndToEnd(data_dir, iterations)
    variants = ["runner (instrumented)", "numpy script"] + (["torch script"] if torch_ok else [])
    if not quick:  # quick mode: the instrumented run stands for the runner's (one process of ~10 s less)
        variants[:0] = ["runner", "runner (store exists)", "runner (MLflow in-process)"]
    out: dict = {"iterations": iterations or 10000, "runs": {str(t): {} for t in threads}}
    try:
        for r in range(repeats):
            for t in threads:
                extra = [f"runner{NO_HUGE_PAGES}", f"numpy script{NO_HUGE_PAGES}"] if t == 1 and not quick else []
                for variant in rotate(variants + extra, r):
                    result = e2e.run(variant, t)
                    out["runs"][str(t)].setdefault(variant, []).append(result)
                    log(f"cli: repeat {r + 1}/{repeats} {t} thread(s) {variant}: {result['wall']:.2f} s")
    finally:
        e2e.close()
    if not quick:
        log("cli: one cProfile'd run of python -m runner +experiment=mnist")
        out["profile"] = profile_cli(data_dir, iterations)
    return out


def measure_sweep(data_dir: Path, repeats: int, quick: bool) -> dict:
    from .cli import sweep

    iterations = 20 if quick else 2000
    lrs = "0.05,0.1" if quick else "0.01,0.05,0.1,0.2"
    out: dict = {"iterations": iterations, "lrs": lrs, "runs": {"sequential": [], "joblib": []}}
    for r in range(1 if quick else min(repeats, 2)):
        for launcher in rotate(["sequential", "joblib"], r):
            result = sweep(data_dir, launcher, iterations, lrs)
            out["runs"][launcher].append(result)
            log(f"sweep: {launcher}: {result['wall']:.1f} s")
    return out


def measure_watch(data_dir: Path, repeats: int, quick: bool, mnist: str | None = None) -> dict:
    """``python -m runner +experiment=mnist threads=1`` with the watch on (the default) and off (``watch.enabled=false``),
    whole processes in fresh directories, interleaved: one pair per repeat, the order alternating (at least
    ``WATCH_PAIRS`` pairs; quick mode one pair of 30-step runs). Then the training loop alone (runner's engine, the
    seed MNIST recipe, ``mnist``: its cached data), the watch off and on alternating in one process, as many pairs."""
    from .cli import EndToEnd

    iterations = 30 if quick else None
    pairs = 1 if quick else max(repeats, WATCH_PAIRS)
    e2e = EndToEnd(data_dir, iterations)
    out: dict = {"iterations": iterations or 10000, "threads": 1, "runs": {"on": [], "off": []}}
    variants = {"on": "runner", "off": "runner (watch off)"}
    try:
        for r in range(pairs):
            for which in rotate(["on", "off"], r):
                result = e2e.run(variants[which], 1)
                out["runs"][which].append(result)
                log(f"watch: pair {r + 1}/{pairs} watch {which}: {result['wall']:.2f} s")
    finally:
        e2e.close()
    if mnist is not None:
        log(f"watch: the training loop alone, seed MNIST, {pairs} pair(s) off / on in one process")
        spec = {"engine": "runner", "recipe": "mnist", "quick": quick, "threads": 1, "data": mnist, "watch_pairs": pairs}
        out["engine"] = worker(spec)["runs"]
    return out


def measure_overhead(data_dir: Path, repeats: int, quick: bool) -> dict:
    """Issue 19's: ``python -m runner --help`` and ``python -m runner.plugins`` (interleaved, at least
    ``COMMAND_REPEATS`` each), and the 9-job grid sequential (``benchmarks.cli.grid``; quick: 20 steps a job)."""
    from .cli import command, grid

    out: dict = {"runs": {"help": [], "plugins": []}, "grid": []}
    for r in range(1 if quick else max(repeats, COMMAND_REPEATS)):
        for which in rotate(["help", "plugins"], r):
            result = command(which, data_dir)
            out["runs"][which].append(result)
            log(f"overhead: repeat {r + 1} {which}: {result['wall']:.2f} s")
    for _ in range(1 if quick else min(repeats, 2)):
        result = grid(data_dir, 20 if quick else None)
        out["grid"].append(result)
        log(f"overhead: the 9-job grid: {result['wall']:.1f} s, training {sum(j['training'] for j in result['jobs']):.1f} s")
    return out


def write(args: argparse.Namespace, results: dict, text: str) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if not args.out:
        print(text)
        return
    out = Path(args.out)
    if out.suffix == ".json":
        out.write_text(json.dumps(results, indent=1, default=str))
        return
    block = f"{MARK_BEGIN}\n{text}\n{MARK_END}"
    if out.is_file() and MARK_BEGIN in (old := out.read_text()) and MARK_END in old:
        head, rest = old.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        out.write_text(head + block + tail)
    else:
        out.write_text(f"# Benchmarks\n\n{block}\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
