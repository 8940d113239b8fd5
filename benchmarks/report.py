"""Markdown tables from the raw results of ``python -m benchmarks``: medians, ratios, targets."""

from __future__ import annotations

import statistics
from typing import Any

from . import recipes as R

#: The issue's targets: (key, what, goal as text, comparison, threshold).
TARGETS = {
    "engine": ("runner engine vs hand-written NumPy, same recipe", "<= 1.05x", "le", 1.05),
    "graph": ("graph engine vs Sequential engine, the recipe's chain written as a graph", "<= 1.05x", "le", 1.05),
    "cli": ("`python -m runner +experiment=mnist` vs bare PyTorch script, end to end", "<= 1.0x", "le", 1.0),
    "gemm": ("512-wide MLP: share of the measured fp32 GEMM peak (runner engine)", ">= 50 %", "ge", 0.50),
    "tracking": ("tracking (MLflow) share of a run's wall time", "<= 3 %", "le", 0.03),
    "gradcheck": ("gradient check share of a run's wall time", "<= 2 %", "le", 0.02),
    "gradcheck_mlp": ("gradient check share of the 512-wide MLP's training loop (`mnist_mlp`)", "<= 5 %", "le", 0.05),
}
#: Issue 16's target beside the engine target (runner vs NumPy, which covers the CNN recipe as every recipe): measured
#: only when the CNN recipe trains (``python -m benchmarks`` runs it; ``--quick`` with ``--only ...,conv``).
CNN_TARGETS = {
    "cnn_torch": ("CNN recipe: runner engine vs PyTorch CPU (a moonshot: torch convolves with oneDNN)", "<= 1.0x", "le", 1.0),
}

#: Issue 17's target: measured when the watch section runs (``python -m benchmarks``; ``--quick --only watch``).
WATCH_TARGETS = {
    "watch": ("watch cost: `python -m runner +experiment=mnist` with the watch on vs off, end to end", "<= 3 %", "le", 0.03),
}


#: Issue 19's targets: the runner costs nothing end to end (the cli and overhead sections).
OVERHEAD_TARGETS = {
    "cli_numpy": ("`python -m runner +experiment=mnist` vs the bare NumPy script, end to end", "<= 1.2x", "le", 1.2),
    "cli_torch2": ("`python -m runner +experiment=mnist` vs the bare PyTorch script, end to end", "<= 0.8x", "le", 0.8),
    "help": ("`python -m runner --help`, wall", "<= 0.6 s", "le", 0.6),
    "plugins": ("`python -m runner.plugins`, wall", "<= 0.5 s", "le", 0.5),
    "grid": ("9-job grid, sequential: the sweep's wall time vs the sum of its jobs' training steps", "<= 1.25x", "le", 1.25),
}


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def per_process(results: list[dict], key: str = "seconds") -> list[float]:
    """One figure per worker process: the median of its runs."""
    return [median(r[key] for r in res["runs"]) for res in results]


def fmt_s(x: float) -> str:
    if x != x:
        return "–"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def fmt_us(x: float) -> str:
    return "–" if x != x else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def fmt_ratio(x: float) -> str:
    return "–" if x != x else f"{x:.2f}x"


def fmt_pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f} %"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ref_threads(results: dict) -> str:
    """The thread count ratios are quoted at: 1 when measured, else the smallest."""
    return str(min(results["settings"]["threads"]))


# --------------------------------------------------------------------------- derived figures


def engine_summary(results: dict) -> dict:
    """{recipe: {threads: {engine: {seconds, eval, steps, accuracy, runs, n_train}}}} (medians over processes)."""
    out: dict = {}
    for name, by_threads in results.get("engines", {}).items():
        for t, by_engine in by_threads.items():
            for engine, res in by_engine.items():
                if not res:
                    continue
                seconds = per_process(res)
                evals = per_process(res, "eval_seconds")
                out.setdefault(name, {}).setdefault(t, {})[engine] = {
                    "seconds": median(seconds),
                    "eval": median(evals),
                    "steps": res[0]["runs"][0]["steps"],
                    "accuracy": median(per_process(res, "test_accuracy")),
                    "runs": seconds,
                    "n_train": res[0].get("n_train"),
                    "gradcheck": [g["seconds"] for x in res for g in x.get("gradcheck", [])],
                    "evaluations": res[0]["runs"][0].get("evaluations"),
                }
    return out


def graph_summary(results: dict) -> dict:
    """{recipe: {threads: {"sequential": {...}, "graph": {...}, "ratio", "pairs", "equal"}}}: per model the medians over
    processes (seconds, steps, accuracy, runs); ``ratio`` graph / Sequential of the medians; ``pairs`` the ratio of each
    repeat's two runs; ``equal`` whether every run of both ended with the same parameters, bit for bit."""
    out: dict = {}
    for name, by_threads in results.get("graph", {}).items():
        for t, by_model in by_threads.items():
            row: dict = {}
            for model, res in by_model.items():
                if res:
                    seconds = per_process(res)
                    row[model] = {
                        "seconds": median(seconds),
                        "steps": res[0]["runs"][0]["steps"],
                        "accuracy": median(per_process(res, "test_accuracy")),
                        "runs": seconds,
                    }
            if "sequential" in row and "graph" in row:
                row["ratio"] = row["graph"]["seconds"] / row["sequential"]["seconds"]
                row["pairs"] = [g / q for g, q in zip(row["graph"]["runs"], row["sequential"]["runs"])]
                digests = {run.get("params") for res in by_model.values() for x in res for run in x["runs"]}
                row["equal"] = len(digests) == 1 and None not in digests
            out.setdefault(name, {})[t] = row
    return out


def graph_mismatches(graph: dict) -> list[str]:
    """Where the runs of a recipe and thread count did not all end with the same parameters (``params`` digests)."""
    wrong = []
    for name, by_threads in graph.items():
        for t, by_model in by_threads.items():
            digests = {
                model: sorted({str(run.get("params")) for x in res for run in x["runs"]}) for model, res in by_model.items()
            }
            found = {d for ds in digests.values() for d in ds}
            if len(found) != 1 or "None" in found or not all(digests.values()):
                wrong.append(f"{name}, {t} thread(s): final parameters {digests}")
    return wrong


def samples_trained(recipe: R.Recipe, steps: int, n_train: int | None) -> float:
    if recipe.iterations is None and recipe.sampling == "shuffle" and n_train:
        return recipe.epochs * n_train
    return steps * recipe.batch_size


def gemm_fractions(results: dict) -> list[dict]:
    """Per recipe, threads and engine: GFLOP/s reached in the training loop vs the GEMM peaks measured."""
    rows = []
    summary = engine_summary(results)
    quick = results["settings"]["quick"]
    for name, by_threads in summary.items():
        recipe = R.get(name, quick)
        n_in, n_out = results["dims"][name]
        shapes = R.step_products(recipe, n_in, n_out)  # a ConvNet's: its im2col products too
        for t, by_engine in by_threads.items():
            gemm = results.get("gemm", {}).get(t)
            by_name = {g["name"]: g for g in gemm["shapes"]} if gemm else {}
            if not gemm or any(s[0] not in by_name for s in shapes):
                continue
            needed = sum(2.0 * m * n * k for _, m, n, k, _, _ in shapes)
            isolated = sum(by_name[s[0]]["seconds_best"] for s in shapes)
            shapes_peak = needed / isolated / 1e9
            square_peak = gemm["square"]["gflops_best"]
            for engine, e in by_engine.items():
                samples = samples_trained(recipe, e["steps"], e["n_train"])
                work = needed / recipe.batch_size * samples
                loop = e["seconds"] - e["eval"]
                achieved = work / loop / 1e9 if loop > 0 else float("nan")
                rows.append(
                    {
                        "recipe": name,
                        "threads": t,
                        "engine": engine,
                        "achieved": achieved,
                        "shapes_peak": shapes_peak,
                        "square_peak": square_peak,
                        "of_shapes_peak": achieved / shapes_peak,
                        "of_square_peak": achieved / square_peak,
                        "gemm_share_of_step": (isolated / recipe.batch_size * samples) / loop if loop > 0 else float("nan"),
                    }
                )
    return rows


def cli_summary(results: dict) -> dict:
    out: dict = {}
    for t, by_variant in results.get("cli", {}).get("runs", {}).items():
        for variant, runs in by_variant.items():
            out.setdefault(t, {})[variant] = {
                "wall": median(r["wall"] for r in runs),
                "sys": median(r.get("sys") for r in runs),
                "runs": [r["wall"] for r in runs],
                "accuracy": median(r.get("accuracy") for r in runs),
            }
    return out


def overhead_summary(results: dict) -> dict:
    """Medians of the overhead section: each command's wall time; the grid's wall, training, ratio (the median run)."""
    o = results.get("overhead", {})
    out: dict = {}
    for which, runs in o.get("runs", {}).items():
        if runs:
            out[which] = {"wall": median(r["wall"] for r in runs), "runs": [r["wall"] for r in runs]}
    grids = [
        {
            "wall": g["wall"],
            "training": sum(j["training"] for j in g["jobs"]),
            "run_s": sum(j["run_s"] or 0.0 for j in g["jobs"]),
            "jobs": len(g["jobs"]),
            "finished": sum(j["status"] == "FINISHED" for j in g["jobs"]),
        }
        for g in o.get("grid", [])
        if g.get("jobs")
    ]
    for g in grids:
        g["ratio"] = g["wall"] / g["training"] if g["training"] else float("nan")
    if grids:
        out["grid"] = sorted(grids, key=lambda g: g["ratio"])[len(grids) // 2]
        out["grids"] = grids
    return out


def overhead_section(results: dict) -> str:
    o = overhead_summary(results)
    if not o:
        return ""
    rows = [
        [f"`{c}`", fmt_s(o[k]["wall"]), ", ".join(f"{x:.2f}" for x in o[k]["runs"])]
        for k, c in (("help", "python -m runner --help"), ("plugins", "python -m runner.plugins"))
        if k in o
    ]
    text = "## Start-up and sweeps\n\nWhole processes, wall time from the outside, interleaved.\n\n" + table(
        ["command", "median wall s", "runs (s)"], rows
    )
    if "grids" in o:
        grid_rows = [
            [fmt_s(g["wall"]), fmt_s(g["training"]), fmt_ratio(g["ratio"]), fmt_s(g["run_s"]), f"{g['finished']}/{g['jobs']}"]
            for g in o["grids"]
        ]
        text += (
            "\n\nThe 9-job grid `python -m runner --multirun +experiment=mnist threads=1 optimizer.lr=0.01,0.1,0.5 "
            "model.hidden=[50],[100],[100,100]`, Hydra's basic launcher (one job after another, in one process): its wall "
            "time against the sum of its jobs' training steps (their `time/epoch_s`), and the sum of the seconds between "
            "each run's start and end.\n\n"
            + table(["sweep wall s", "training steps s", "ratio", "runs' start to end s", "FINISHED"], grid_rows)
        )
    return text


def cli_breakdown(results: dict, t: str) -> dict | None:
    """Median seconds per category over the instrumented runs at ``t`` threads, with the process's wall time."""
    runs = results.get("cli", {}).get("runs", {}).get(t, {}).get("runner (instrumented)", [])
    if not runs:
        return None
    rows: dict[str, list[float]] = {}
    for run in runs:
        timing = run["timings"]
        cats = dict(timing.get("categories", {}))
        cats["imports before the run (hydra, runner)"] = timing["imports"]
        cats["interpreter start-up and exit"] = max(0.0, run["wall"] - timing["inside"])
        for k, v in cats.items():
            rows.setdefault(k, []).append(v)
        rows.setdefault("__wall__", []).append(run["wall"])
        rows.setdefault("__tracking__", []).append(sum(v for k, v in cats.items() if k.startswith(("tracking", "run story"))))
        rows.setdefault("__tracking_strict__", []).append(sum(v for k, v in cats.items() if k.startswith("tracking")))
        rows.setdefault("__gradcheck__", []).append(cats.get("gradient check", 0.0))
        rows.setdefault("__share_tracking__", []).append(rows["__tracking__"][-1] / run["wall"])
        rows.setdefault("__share_tracking_strict__", []).append(rows["__tracking_strict__"][-1] / run["wall"])
        rows.setdefault("__share_gradcheck__", []).append(rows["__gradcheck__"][-1] / run["wall"])
    med = {k: median(v) for k, v in rows.items()}
    last = runs[-1]["timings"]
    top = sorted(last["seconds"].items(), key=lambda kv: kv[1], reverse=True)[:14]
    return {"median": med, "runs": len(runs), "top": [(k, v, last["calls"].get(k)) for k, v in top]}


def targets(results: dict) -> list[dict]:
    """Every target with its measured figure and pass/miss (None when not measured)."""
    rows = []
    t1 = ref_threads(results)
    summary = engine_summary(results)

    def add(key: str, label: str, value: float, shown: str, note: str = "", informative: bool = False) -> None:
        """One row; ``informative``: the same figure for something the target does not cover (no goal, no pass)."""
        what, goal, op, threshold = {**TARGETS, **CNN_TARGETS, **WATCH_TARGETS, **OVERHEAD_TARGETS}[key]
        ok = None if value != value or informative else (value <= threshold if op == "le" else value >= threshold)
        rows.append(
            {
                "key": key,
                "target": f"{what}: {label}" if label else what,
                "goal": "–" if informative else goal,
                "informative": informative,
                "measured": shown,
                "value": value,
                "pass": ok,
                "note": note,
            }
        )

    for name in results["settings"]["recipes"]:
        e = summary.get(name, {}).get(t1, {})
        if "runner" in e and "numpy" in e:
            ratio = e["runner"]["seconds"] / e["numpy"]["seconds"]
            loop = (e["runner"]["seconds"] - e["runner"]["eval"]) / (e["numpy"]["seconds"] - e["numpy"]["eval"])
            add(
                "engine",
                f"{results['recipes'][name]['title']}, {t1} thread",
                ratio,
                fmt_ratio(ratio),
                f"{fmt_s(e['runner']['seconds'])} s vs {fmt_s(e['numpy']['seconds'])} s; evaluation excluded {fmt_ratio(loop)}",
            )
    for name in results["settings"]["recipes"]:  # a ConvNet's: vs NumPy at the other threads, vs PyTorch at all
        if not R.get(name).channels:
            continue
        title = results["recipes"][name]["title"]
        for t in sorted(summary.get(name, {}), key=int):
            e = summary[name][t]
            if "runner" not in e:
                continue
            threads = f"{t} thread{'s' if t != '1' else ''}"
            accuracies = "test accuracy " + ", ".join(f"{engine} {x['accuracy']:.4f}" for engine, x in e.items())
            if "numpy" in e and t != t1:
                ratio = e["runner"]["seconds"] / e["numpy"]["seconds"]
                add("engine", f"{title}, {threads}", ratio, fmt_ratio(ratio), _vs(e, "numpy") + f"; {accuracies}", True)
            if "torch" in e:
                ratio = e["runner"]["seconds"] / e["torch"]["seconds"]
                add("cnn_torch", threads, ratio, fmt_ratio(ratio), _vs(e, "torch") + f"; {accuracies}", informative=t != t1)
    graph = graph_summary(results)
    for name in results["settings"]["recipes"]:
        g = graph.get(name, {}).get(t1, {})
        if "ratio" in g:
            seq, gr = g["sequential"], g["graph"]
            add(
                "graph",
                f"{results['recipes'][name]['title']}, {t1} thread" + ("" if name == "mnist" else " (no target: shown alone)"),
                g["ratio"],
                fmt_ratio(g["ratio"]),
                f"{fmt_s(gr['seconds'])} s vs {fmt_s(seq['seconds'])} s "
                f"({fmt_us(gr['seconds'] / gr['steps'] * 1e6)} vs {fmt_us(seq['seconds'] / seq['steps'] * 1e6)} µs/step); "
                f"final parameters {'bitwise equal' if g['equal'] else '**differ**'}",
                informative=name != "mnist",
            )
    cli = cli_summary(results)
    for t in sorted(cli, key=int):
        c = cli[t]
        runner = "runner" if "runner" in c else "runner (instrumented)"  # quick mode runs only the instrumented one
        if runner in c and "torch script" in c:
            ratio = c[runner]["wall"] / c["torch script"]["wall"]
            add(
                "cli",
                f"{t} thread{'s' if t != '1' else ''}" + (" (as quoted)" if t == t1 else ""),
                ratio,
                fmt_ratio(ratio),
                f"{fmt_s(c[runner]['wall'])} s vs {fmt_s(c['torch script']['wall'])} s"
                + (f"; numpy script {fmt_s(c['numpy script']['wall'])} s" if "numpy script" in c else ""),
            )
    for t in sorted(cli, key=int):
        c = cli[t]
        runner = "runner" if "runner" in c else "runner (instrumented)"
        threads = f"{t} thread{'s' if t != '1' else ''}"
        if t == t1 and runner in c and "numpy script" in c:
            ratio = c[runner]["wall"] / c["numpy script"]["wall"]
            flat = ("runner (no huge pages)", "numpy script (no huge pages)")
            add(
                "cli_numpy",
                threads,
                ratio,
                fmt_ratio(ratio),
                f"{fmt_s(c[runner]['wall'])} s vs {fmt_s(c['numpy script']['wall'])} s"
                + (
                    f"; system time {fmt_s(c[runner]['sys'])} vs {fmt_s(c['numpy script']['sys'])} s; without huge pages "
                    f"(`NUMPY_MADVISE_HUGEPAGE=0`, an extra row): {fmt_ratio(c[flat[0]]['wall'] / c[flat[1]]['wall'])} "
                    f"({fmt_s(c[flat[0]]['wall'])} vs {fmt_s(c[flat[1]]['wall'])} s)"
                    if all(v in c for v in flat) and c[runner]["sys"] == c[runner]["sys"]
                    else ""
                ),
            )
        if t == "2" and runner in c and "torch script" in c:
            ratio = c[runner]["wall"] / c["torch script"]["wall"]
            add(
                "cli_torch2",
                threads,
                ratio,
                fmt_ratio(ratio),
                f"{fmt_s(c[runner]['wall'])} s vs {fmt_s(c['torch script']['wall'])} s",
            )
    o = overhead_summary(results)
    for which in ("help", "plugins"):
        if which in o:
            add(which, "", o[which]["wall"], f"{o[which]['wall']:.2f} s", f"median of {len(o[which]['runs'])}")
    if "grid" in o:
        g = o["grid"]
        add(
            "grid",
            "",
            g["ratio"],
            fmt_ratio(g["ratio"]),
            f"{fmt_s(g['wall'])} s vs {fmt_s(g['training'])} s of training steps in {g['jobs']} jobs "
            f"({fmt_s(g['run_s'])} s between the runs' starts and ends)",
        )
    for row in gemm_fractions(results):
        if row["recipe"] == "mlp512" and row["engine"] == "runner" and row["threads"] == t1:
            add(
                "gemm",
                f"{row['threads']} thread{'s' if row['threads'] != '1' else ''}",
                row["of_shapes_peak"],
                fmt_pct(row["of_shapes_peak"]),
                f"{row['achieved']:.0f} GFLOP/s in the training loop vs {row['shapes_peak']:.0f} GFLOP/s for its shapes "
                f"({fmt_pct(row['of_square_peak'])} of the {row['square_peak']:.0f} GFLOP/s square peak)",
            )
    for t in sorted(results.get("cli", {}).get("runs", {}), key=int):
        b = cli_breakdown(results, t)
        if b:
            m = b["median"]
            story = m["__tracking__"] - m["__tracking_strict__"]
            add(
                "tracking",
                f"CLI, seed MNIST, {t} thread{'s' if t != '1' else ''}",
                m["__share_tracking_strict__"],
                fmt_pct(m["__share_tracking_strict__"]),
                f"MLflow on the run's path {fmt_s(m['__tracking_strict__'])} s of {fmt_s(m['__wall__'])} s "
                f"(the sidecar does the rest on the other core); "
                f"the run story's figures and tables {fmt_s(story)} s more ({fmt_pct(story / m['__wall__'])}; "
                "`report.enabled=false` drops them)",
            )
    te = tracking_engine(results)
    if te:
        add(
            "tracking",
            "engine only (log_metrics sink + flush vs no-op), seed MNIST",
            te["overhead"],
            fmt_pct(te["overhead"]),
            f"{fmt_s(te['tracking'])} s vs {fmt_s(te['noop'])} s",
        )
    for t in sorted(results.get("cli", {}).get("runs", {}), key=int):
        b = cli_breakdown(results, t)
        if b:
            m = b["median"]
            add(
                "gradcheck",
                f"CLI, seed MNIST, {t} thread{'s' if t != '1' else ''}",
                m["__share_gradcheck__"],
                fmt_pct(m["__share_gradcheck__"]),
                f"{m['__gradcheck__'] * 1000:.0f} ms of {fmt_s(m['__wall__'])} s",
            )
    mlp = summary.get("mlp512", {}).get(t1, {}).get("runner")
    if mlp and mlp["gradcheck"]:
        share = median(mlp["gradcheck"]) / mlp["seconds"]
        add(
            "gradcheck_mlp",
            f"{t1} thread",
            share,
            fmt_pct(share),
            f"{median(mlp['gradcheck']) * 1000:.0f} ms against {fmt_s(mlp['seconds'])} s of training alone "
            "(a whole run takes longer)",
        )
    w = watch_summary(results)
    if w:
        add(
            "watch",
            f"{w['threads']} thread, {w['pairs']} interleaved pair(s)",
            w["cost"],
            fmt_pct(w["cost"]),
            f"median {fmt_s(w['on'])} s on vs {fmt_s(w['off'])} s off ({w['difference'] * 1000:+.0f} ms); "
            f"median of the pairs' own ratios {fmt_pct(w['paired'])}, fastest vs fastest {fmt_pct(w['fastest'])}; "
            f"CPU of the run (its process, the MLflow sidecar and its painters) {fmt_s(w['cpu_on'])} vs {fmt_s(w['cpu_off'])} s"
            + (f"; the training loop alone {fmt_pct(w['loop']['cost'])}" if w["loop"] else ""),
        )
    return rows  # the check against the training loop alone, per recipe: the "Gradient check" section


def watch_summary(results: dict) -> dict | None:
    """The watch section's figures: median wall seconds on and off, ``cost`` = on / off - 1 (the target's figure),
    ``paired``: the median over pairs of each pair's on / off - 1 (less moved by a slow minute of the machine)."""
    w = results.get("watch")
    if not w or not w["runs"]["on"] or not w["runs"]["off"]:
        return None
    on, off = [r["wall"] for r in w["runs"]["on"]], [r["wall"] for r in w["runs"]["off"]]
    m_on, m_off = median(on), median(off)
    cpu_on, cpu_off = median(r.get("cpu") for r in w["runs"]["on"]), median(r.get("cpu") for r in w["runs"]["off"])
    engine = w.get("engine") or {}
    loop = None
    if engine.get("on") and engine.get("off"):
        loop_on, loop_off = median(r["seconds"] for r in engine["on"]), median(r["seconds"] for r in engine["off"])
        loop = {
            "on": loop_on,
            "off": loop_off,
            "cost": loop_on / loop_off - 1,
            "pairs": min(len(engine["on"]), len(engine["off"])),
            "equal": len({r["params"] for r in engine["on"] + engine["off"]}) == 1,
        }
    return {
        "loop": loop,
        "cpu_on": cpu_on,
        "cpu_off": cpu_off,
        "fastest": min(on) / min(off) - 1,
        "on": m_on,
        "off": m_off,
        "cost": m_on / m_off - 1,
        "difference": m_on - m_off,
        "paired": median(a / b - 1 for a, b in zip(on, off)),
        "pairs": min(len(on), len(off)),
        "runs_on": on,
        "runs_off": off,
        "threads": w.get("threads", 1),
        "iterations": w["iterations"],
    }


def _vs(e: dict, other: str) -> str:
    """runner's seconds vs another engine's, and the same with the evaluation passes left out."""
    r, o = e["runner"], e[other]
    loop = (r["seconds"] - r["eval"]) / (o["seconds"] - o["eval"])
    return f"{fmt_s(r['seconds'])} s vs {fmt_s(o['seconds'])} s; evaluation excluded {fmt_ratio(loop)}"


def tracking_engine(results: dict) -> dict | None:
    te = results.get("tracking_engine")
    if not te:
        return None
    noop = median(r["seconds"] for r in te["runs"]["noop"])
    tracking = median(r["seconds"] for r in te["runs"]["tracking"])
    return {"noop": noop, "tracking": tracking, "overhead": tracking / noop - 1, "pairs": len(te["runs"]["noop"])}


# --------------------------------------------------------------------------- the report


def markdown(results: dict) -> str:
    parts = [machine_section(results), targets_section(results)]
    if results.get("errors"):
        parts.append(
            "## Sections that failed\n\n" + "\n\n".join(f"- **{k}**:\n\n```\n{v}\n```" for k, v in results["errors"].items())
        )
    for section in (
        engines_section,
        graph_section,
        gemm_section,
        conv_section,
        breakdown_section,
        tracking_section,
        gradcheck_section,
        cli_section,
        scaling_section,
        sweep_section,
        watch_section,
        overhead_section,
    ):
        text = section(results)
        if text:
            parts.append(text)
    return "\n\n".join(parts) + "\n"


def machine_section(results: dict) -> str:
    m, s = results["machine"], results["settings"]
    blas = (
        "; ".join(
            f"{b['internal_api']} {b['version']} "
            f"({b['architecture']} kernel, {b['threading_layer']}, {b['num_threads']} threads by default)"
            for b in m["blas"]
        )
        or "none found"
    )
    env = ", ".join(f"{k}={v}" for k, v in m["openblas_env"].items() if v) or "neither set (no extra row)"
    torch = m["versions"].get("torch")
    torch_info = ""
    for by_threads in results.get("engines", {}).values():
        for by_engine in by_threads.values():
            for res in by_engine.get("torch", []):
                torch_info = res.get("torch", {}).get("blas", "") or torch_info
    rows = [
        [
            "measured",
            f"{m['date']}, {'quick mode (figures meaningless)' if s['quick'] else 'full run'}, "
            f"{s['repeats']} interleaved repeat(s), threads {', '.join(map(str, s['threads']))}, "
            f"{results.get('seconds', 0):.0f} s in all",
        ],
        ["CPU", f"{m['cpu']} ({m['cpu_flags']}), {m['cores']} cores ({m['usable_cores']} usable), {_memory(m['memory'])} RAM"],
        [
            "load average",
            f"{', '.join(f'{x:.2f}' for x in m['load_start'])} at the start, "
            f"{', '.join(f'{x:.2f}' for x in m.get('load_end', m['load_start']))} at the end (the machine is shared)",
        ],
        ["Python / platform", f"{m['python']} / {m['platform']}"],
        ["code measured (runner/, plugins/, conf/)", _code(m)],
        ["NumPy BLAS (threadpoolctl)", f"numpy {m['numpy']}: {blas}"],
        ["OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE", env],
        ["PyTorch", f"{torch} ({torch_info})" if torch else "not installed"],
        ["versions", ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v and k not in ("numpy", "torch"))],
    ]
    return "## Machine\n\n" + table(["", ""], rows)


def _code(m: dict) -> str:
    start, end = m.get("code_start"), m.get("code_end")
    if not start:
        return "not recorded"
    text = f"sha256 {start['sha256']}…, newest file {start['newest']}"
    if end and end["sha256"] != start["sha256"]:
        return (
            text
            + f"; **changed during the run** (sha256 {end['sha256']}…, newest file {end['newest']}): figures mix two versions"
        )
    return text + ("; unchanged during the run" if end else "")


def _memory(text: str) -> str:
    try:
        return f"{int(text.split()[0]) / 2**20:.0f} GB"
    except (ValueError, IndexError):
        return text or "?"


def targets_section(results: dict) -> str:
    rows = [
        [r["target"], r["goal"], r["measured"], {True: "pass", False: "**miss**", None: "–"}[r["pass"]], r["note"]]
        for r in targets(results)
    ]
    t1 = ref_threads(results)
    return (
        f"## Targets\n\nRatios at {t1} BLAS thread unless said; medians of interleaved runs (see each section for every run).\n\n"
        + table(["target", "goal", "measured", "", "detail"], rows)
    )


def engines_section(results: dict) -> str:
    summary = engine_summary(results)
    if not summary:
        return ""
    out = [
        "## Engines: the same recipe three ways",
        "Training time only (data loaded once per process, outside the timing), each engine in its own process, "
        "the engines' order rotating per repeat. Every engine starts from the same weights and draws the same batches "
        "(runner's seed streams), so the test accuracies agree. *Evaluation*: the engine's evaluation passes inside that "
        "time. Every engine computes what runner reports: the running accuracy of the training batches, the val split "
        "at runner's evaluation points (about 20 per run) and the test split once at the end.",
    ]
    for name, by_threads in summary.items():
        info = results["recipes"][name]
        out.append(f"### {info['title']}\n\n{info['description']} (`+experiment={info['experiment']}`).")
        rows = []
        for t in sorted(by_threads, key=int):
            numpy = by_threads[t].get("numpy")
            for engine, e in by_threads[t].items():
                ratio = e["seconds"] / numpy["seconds"] if numpy else float("nan")
                loop = (e["seconds"] - e["eval"]) / (numpy["seconds"] - numpy["eval"]) if numpy else float("nan")
                evals = f" ({e['evaluations']}×)" if e.get("evaluations") else ""
                rows.append(
                    [
                        t,
                        engine,
                        fmt_s(e["seconds"]),
                        fmt_us(e["seconds"] / e["steps"] * 1e6),
                        fmt_ratio(ratio),
                        fmt_s(e["eval"]) + evals,
                        fmt_ratio(loop),
                        f"{e['accuracy']:.4f}",
                        ", ".join(fmt_s(x) for x in e["runs"]),
                    ]
                )
        out.append(
            table(
                [
                    "threads",
                    "engine",
                    "median s",
                    "µs/step",
                    "vs NumPy",
                    "evaluation s",
                    "vs NumPy, evaluation excluded",
                    "test acc",
                    "runs (s)",
                ],
                rows,
            )
        )
    return "\n\n".join(out)


def graph_section(results: dict) -> str:
    summary = graph_summary(results)
    if not summary:
        return ""
    out = [
        "## Graph vs Sequential: the same chain two ways",
        "runner's engine (`runner_engine.py`, as in *Engines*) on the recipe's network written as the Sequential chain "
        "(`model.type: mlp`) and as the same layers in a `model.type: graph` config, one node per layer, each reading the "
        "one before (`linear1 -> relu1 -> linear2`, the same inits), both built by `runner.core.model.build_model`. Same "
        "seed: the same initial weights and batches; each run in its own process, the two in rotating order per repeat. "
        "*Bitwise*: every run of both ended with the same parameters, bit for bit (a failed section says otherwise).",
    ]
    for name, by_threads in summary.items():
        info = results["recipes"][name]
        out.append(f"### {info['title']}\n\n{info['description']} (`+experiment={info['experiment']}`).")
        rows = []
        for t in sorted(by_threads, key=int):
            g = by_threads[t]
            for model in ("sequential", "graph"):
                e = g.get(model)
                if not e:
                    continue
                is_graph = model == "graph"
                rows.append(
                    [
                        t,
                        model,
                        fmt_s(e["seconds"]),
                        fmt_us(e["seconds"] / e["steps"] * 1e6),
                        fmt_ratio(g["ratio"]) if is_graph and "ratio" in g else "",
                        ", ".join(fmt_ratio(x) for x in g.get("pairs", [])) if is_graph else "",
                        ("yes" if g.get("equal") else "**no**") if is_graph and "equal" in g else "",
                        f"{e['accuracy']:.4f}",
                        ", ".join(fmt_s(x) for x in e["runs"]),
                    ]
                )
        out.append(
            table(
                [
                    "threads",
                    "model",
                    "median s",
                    "µs/step",
                    "graph / Sequential",
                    "per repeat",
                    "bitwise",
                    "test acc",
                    "runs (s)",
                ],
                rows,
            )
        )
    return "\n\n".join(out)


def gemm_section(results: dict) -> str:
    gemm = results.get("gemm")
    if not gemm:
        return ""
    out = [
        "## fp32 GEMM peak",
        "numpy.matmul (OpenBLAS) on float32 operands laid out as in a step (x^T dout and dout W^T are transposed views); "
        "best of several rounds. *Shapes peak*: the FLOPs a step's products need over the time those products take in "
        "isolation; *square*: a large n×n×n product, the machine's peak.",
    ]
    threads = sorted(gemm, key=int)
    names = [g["name"] for g in gemm[threads[0]]["shapes"]]
    rows = []
    for i, name in enumerate(names):
        rows.append(
            [name] + [f"{gemm[t]['shapes'][i]['gflops_best']:.0f} ({gemm[t]['shapes'][i]['gflops_median']:.0f})" for t in threads]
        )
    sq = gemm[threads[0]]["square"]["n"]
    rows.append(
        [f"square {sq}×{sq}×{sq}"]
        + [f"{gemm[t]['square']['gflops_best']:.0f} ({gemm[t]['square']['gflops_median']:.0f})" for t in threads]
    )
    out.append(table(["product", *[f"GFLOP/s at {t} thread{'s' if t != '1' else ''}: best (median)" for t in threads]], rows))
    fr = gemm_fractions(results)
    if fr:
        out.append(
            "Share of the peak each run reaches: the FLOPs its training steps need (forward, dW, and dx of all but the "
            "first layer) over its training-loop time (evaluation excluded). The share of the shapes peak is also the "
            "share of the loop the products alone would take at the measured speed: the rest is everything else."
        )
        out.append(
            table(
                ["recipe", "threads", "engine", "GFLOP/s", "shapes peak", "of shapes peak", "of square peak"],
                [
                    [
                        results["recipes"][r["recipe"]]["title"],
                        r["threads"],
                        r["engine"],
                        f"{r['achieved']:.1f}",
                        f"{r['shapes_peak']:.0f}",
                        fmt_pct(r["of_shapes_peak"]) + (" (peak measurement disturbed)" if r["of_shapes_peak"] > 1 else ""),
                        fmt_pct(r["of_square_peak"]),
                    ]
                    for r in fr
                ],
            )
        )
    return "\n\n".join(out)


def conv_summary(results: dict) -> dict | None:
    """The conv section's figures: {"peak": (GFLOP/s, where from), "layers": [{shape, geometry, "rows": [{variant,
    forward, step (medians over repeats of the best seconds), gflops, of_peak}], memory}]}; None when not measured."""
    from .conv import geometry

    conv = results.get("conv")
    if not conv:
        return None
    runs = conv["runs"]
    section_gemm = results.get("gemm", {}).get("1")
    if section_gemm:
        peak = (section_gemm["square"]["gflops_best"], f"the gemm section's {section_gemm['square']['n']}³ square, 1 thread")
    elif runs.get("gemm"):
        square = runs["gemm"][0]["square"]
        peak = (median(g["square"]["gflops_best"] for g in runs["gemm"]), f"a {square['n']}³ square, 1 thread")
    else:
        peak = (float("nan"), "not measured")
    layers = []
    for shape in conv["shapes"]:
        g = geometry(shape)
        rows = []
        for impl in ("runner", "torch"):
            variants: dict = {}
            for res in runs.get(impl, []):
                for row in res["rows"]:
                    if row["name"] == shape["name"]:
                        variants.setdefault(row["variant"], []).append(row)
            for variant, found in variants.items():
                rows.append(
                    {
                        "variant": variant,
                        "forward": median(r["forward"]["best"] for r in found),
                        "step": median(r["step"]["best"] for r in found),
                        "workspace_bytes_per_sample": found[0].get("workspace_bytes_per_sample"),
                        "peak_allocated": median(r["peak_allocated"] for r in found) if "peak_allocated" in found[0] else None,
                    }
                )
        prefix = shape["name"] + " "
        alone = [sum(p["seconds_best"] for p in res["shapes"] if p["name"].startswith(prefix)) for res in runs.get("gemm", [])]
        if alone:
            rows.append({"variant": "its im2col products alone (numpy.matmul)", "forward": float("nan"), "step": median(alone)})
        for row in rows:
            row["gflops"] = g["step_flops"] / row["step"] / 1e9
            row["of_peak"] = row["gflops"] / peak[0]
        layers.append({"shape": shape, "geometry": g, "rows": rows})
    return {"peak": peak, "layers": layers}


def conv_section(results: dict) -> str:
    summary = conv_summary(results)
    if not summary:
        return ""
    from .numpy_cnn import EVAL_ROWS

    peak, where = summary["peak"]
    out = [
        "## Convolution layers by shape (1 thread)",
        "One conv2d layer alone, 3x3, padding 1, stride 1, float32, on random inputs: forward, and forward + backward "
        "(d(weights), d(bias), and d(input) except for the recipe's first layer, whose input is the data). *runner conv2d*: "
        "the class registered as conv2d; *reference*: the Conv2D it derives from (the formulas as written); *torch*: "
        "`torch.nn.functional.conv2d` and `torch.autograd.grad`; *its im2col products alone*: the layer's matrix products "
        "(forward, dW, d(cols)) timed alone by numpy.matmul. Best of several rounds, median over the repeats. GFLOP/s: "
        f"the products' FLOPs (2 m n k each) over the time; *of GEMM peak*: of {peak:.0f} GFLOP/s ({where}).",
    ]
    rows = []
    for layer in summary["layers"]:
        s = layer["shape"]
        torch_step = next((r["step"] for r in layer["rows"] if r["variant"].startswith("torch")), float("nan"))
        label = f"{s['name']} (batch {s['batch']}{'' if s['dx'] else ', no d(input)'})"
        for r in layer["rows"]:
            rows.append(
                [
                    label,
                    r["variant"],
                    "–" if r["forward"] != r["forward"] else f"{r['forward'] * 1e3:.2f}",
                    f"{r['step'] * 1e3:.2f}",
                    f"{r['gflops']:.1f}",
                    fmt_pct(r["of_peak"]),
                    fmt_ratio(r["step"] / torch_step),
                ]
            )
            label = ""
    header = ["layer", "implementation", "forward ms", "forward + backward ms", "GFLOP/s", "of GEMM peak", "vs torch"]
    out.append(table(header, rows))
    mem = []
    for layer in summary["layers"]:
        s = layer["shape"]
        for r in layer["rows"]:
            per_sample = r.get("workspace_bytes_per_sample")
            if per_sample:
                mem.append(
                    [
                        s["name"],
                        r["variant"],
                        f"{per_sample / 2**10:.1f} KiB",
                        f"{per_sample * s['batch'] / 2**20:.1f} MiB",
                        f"{per_sample * EVAL_ROWS / 2**20:.0f} MiB",
                        f"{r['peak_allocated'] / 2**20:.1f} MiB" if r.get("peak_allocated") is not None else "–",
                    ]
                )
    if mem:
        out.append(
            "runner's im2col workspace (`Conv2D.workspace_bytes`, the im2col matrix a layer keeps for its backward) per "
            f"sample, at the batch above and at an evaluation chunk ({EVAL_ROWS} rows, `runner.core.evaluation.eval_rows`); and "
            "the most NumPy allocates during one forward + backward in the steady state (tracemalloc: the new im2col "
            "matrix while the last one is still held, the padded image, the output, col2im's image)."
        )
        header = ["layer", "implementation", "workspace / sample", "at the batch", f"at {EVAL_ROWS} rows", "peak allocated"]
        out.append(table(header, mem))
    return "\n\n".join(out)


def phase_groups(runner: dict, numpy: dict) -> list[list[str]]:
    """Rows: phase, runner µs/step, NumPy µs/step; runner's own detail rows below each group."""
    r_run, n_run = runner["runs"][0], numpy["runs"][0]
    rs, ns = r_run["steps"], n_run["steps"]
    rp, np_ = dict(r_run["phases"]), dict(n_run["phases"])
    groups = [
        ("sample indices", ["sample indices"], ["sample indices"]),
        ("forward", [k for k in rp if k.startswith("forward")], ["forward"]),
        ("loss (value and gradient)", [k for k in rp if k.startswith("loss")], ["loss"]),
        ("backward", [k for k in rp if k.startswith("backward")], ["backward"]),
        ("optimizer (and schedule)", ["optimizer", "schedule"], ["optimizer"]),
        ("metric sink (no-op)", ["metric sink"], []),
        ("evaluation (amortised per step)", ["evaluation"], ["evaluation"]),
    ]
    rows = []
    timed_runner = sum(rp.values())
    for label, rkeys, nkeys in groups:
        r = sum(rp.get(k, 0.0) for k in rkeys)
        n = sum(np_.get(k, 0.0) for k in nkeys)
        rows.append([f"**{label}**", fmt_us(r / rs * 1e6), fmt_us(n / ns * 1e6) if nkeys else "–"])
        if len(rkeys) > 1:
            for k in sorted(rkeys, key=lambda k: -rp.get(k, 0.0)):
                if rp.get(k):
                    rows.append([f"  runner {k}", fmt_us(rp[k] / rs * 1e6), ""])
    overhead = r_run.get("timer_overhead", 0.0)
    other_r = max(0.0, r_run["seconds"] - timed_runner - overhead)
    rows.append(
        ["**batch gather, loop bookkeeping**", fmt_us(other_r / rs * 1e6), fmt_us(np_.get("gather batch", 0.0) / ns * 1e6)]
    )
    rows.append(["(the timers' own cost, estimated, not in the rows above)", fmt_us(overhead / rs * 1e6), ""])
    rows.append(["**total**", fmt_us(r_run["seconds"] / rs * 1e6), fmt_us(n_run["seconds"] / ns * 1e6)])
    return rows


def per_layer(result: dict) -> bool:
    """Whether a run's phases name each layer (``forward: 3 conv2d``): a ConvNet's breakdown."""
    phases = result["runs"][0].get("phases", {})
    return any(k.split(": ", 1)[-1][:1].isdigit() for k in phases if k.startswith(("forward: ", "backward: ")))


def layer_rows(runner: dict, numpy: dict) -> list[list[str]]:
    """Rows: phase, runner µs/step, NumPy µs/step, the difference; each layer's forward and backward in a step's order."""
    r_run, n_run = runner["runs"][0], numpy["runs"][0]
    rs, ns = r_run["steps"], n_run["steps"]
    rp, np_ = dict(r_run["phases"]), dict(n_run["phases"])

    def index(key: str) -> int:
        return int(key.split(": ", 1)[1].split()[0])

    forward = sorted((k for k in rp if k.startswith("forward: ") and k[9:10].isdigit()), key=index)
    backward = sorted((k for k in rp if k.startswith("backward: ") and k[10:11].isdigit()), key=index, reverse=True)
    groups = (
        [("sample indices", ["sample indices"], ["sample indices"]), ("batch gather", [], ["gather batch"])]
        + [(k, [k], [k]) for k in forward]
        + [("Sequential's own loop (forward)", ["forward: Sequential"], [])]
        + [("loss (value and gradient)", ["loss: forward", "loss: backward"], ["loss"])]
        + [(k, [k], [k]) for k in backward]
        + [("Sequential's own loop (backward)", ["backward: Sequential"], [])]
        + [("optimizer (and schedule)", ["optimizer", "schedule"], ["optimizer"]), ("metric sink (no-op)", ["metric sink"], [])]
        + [("evaluation (amortised per step)", ["evaluation"], ["evaluation"])]
    )
    rows = []
    for label, rkeys, nkeys in groups:
        r = sum(rp.get(k, 0.0) for k in rkeys) / rs * 1e6 if rkeys else float("nan")
        n = sum(np_.get(k, 0.0) for k in nkeys) / ns * 1e6 if nkeys else float("nan")
        diff = r - n if rkeys and nkeys else float("nan")
        rows.append([label, fmt_us(r), fmt_us(n), "–" if diff != diff else f"{diff:+.0f}"])
    overhead = r_run.get("timer_overhead", 0.0)
    other = max(0.0, r_run["seconds"] - sum(rp.values()) - overhead)
    rows.append(["runner: batch gather, loop bookkeeping", fmt_us(other / rs * 1e6), "", ""])
    rows.append(["(the timers' own cost, estimated, not in the rows above)", fmt_us(overhead / rs * 1e6), "", ""])
    total_r, total_n = r_run["seconds"] / rs * 1e6, n_run["seconds"] / ns * 1e6
    rows.append(["**total**", fmt_us(total_r), fmt_us(total_n), f"{total_r - total_n:+.0f}"])
    return rows


def torch_profile_text(result: dict) -> str:
    """PyTorch's operators on the same recipe's steps (torch.profiler, self CPU time per step)."""
    run = result["runs"][0]
    steps, loop = run["steps"], run["seconds"] - run["eval_seconds"]
    rows = [
        [f"`{r['op']}`", f"{r['calls_per_step']:g}", fmt_us(r["self_us_per_step"]), fmt_us(r["total_us_per_step"])]
        for r in run.get("profile", [])
    ]
    return (
        f"PyTorch on the same steps, by operator (torch.profiler, 1 thread, no evaluation; {fmt_us(loop / steps * 1e6)} "
        "µs a step under the profiler). Self time excludes the operators an operator calls:\n\n"
        + table(["operator", "calls/step", "self µs/step", "total µs/step"], rows)
    )


def breakdown_section(results: dict) -> str:
    b = results.get("breakdown")
    if not b:
        return ""
    out = [
        "## Where a step's time goes (1 thread)",
        "One run per engine. runner: exclusive timers wrapped around its objects' methods (layers, loss, optimizer, "
        "sampler, sink, end_epoch) — a few hundred ns per call added; NumPy: a clock read between the phases of the same "
        "loop. Microseconds per training step; evaluation is amortised over the steps.",
    ]
    for name, pair in b.items():
        if name == "profile":
            continue
        note = "".join(f" (shortened to {v} {k})" for k, v in pair.get("overrides", {}).items())
        out.append(f"### {results['recipes'][name]['title']}{note}")
        if per_layer(pair["runner"]):
            out.append(
                "Layer by layer (runner's layer index and type; the NumPy loop ticks after the same computation). "
                "*Sequential's own loop*: the model's forward and backward outside its layers' calls."
            )
            header = ["phase", "runner µs/step", "NumPy µs/step", "runner − NumPy µs"]
            out.append(table(header, layer_rows(pair["runner"], pair["numpy"])))
        else:
            out.append(table(["phase", "runner µs/step", "NumPy µs/step"], phase_groups(pair["runner"], pair["numpy"])))
        if pair.get("torch_profile"):
            out.append(torch_profile_text(pair["torch_profile"]))
    prof = b.get("profile")
    if prof and prof["runs"][0].get("profile"):
        run = prof["runs"][0]
        out.append(
            f"### cProfile of runner's engine, seed MNIST recipe "
            f"({run['steps']} steps, 1 thread, {fmt_s(run['seconds'])} s under the profiler)"
        )
        out.append("Top entries by own time (NumPy's ufuncs and `@` are inside the Python functions that call them).")
        out.append(
            table(
                ["function", "calls", "own s", "cumulative s"],
                [[f"`{r['function']}`", r["calls"], f"{r['tottime']:.3f}", f"{r['cumtime']:.3f}"] for r in run["profile"]],
            )
        )
    return "\n\n".join(out)


def tracking_section(results: dict) -> str:
    out = []
    te = tracking_engine(results)
    if te:
        out.append(
            f"Engine only, seed MNIST, 1 thread, {te['pairs']} alternating pair(s) in one process: no-op sink "
            f"{fmt_s(te['noop'])} s, `Tracker.log_metrics` sink (buffered) plus the final flush {fmt_s(te['tracking'])} s: "
            f"{fmt_pct(te['overhead'])}."
        )
    for t in sorted(results.get("cli", {}).get("runs", {}), key=int):
        b = cli_breakdown(results, t)
        if not b:
            continue
        m = b["median"]
        cats = sorted((k for k in m if not k.startswith("__")), key=lambda k: -m[k])
        out.append(
            f"Where the wall time of `python -m runner +experiment=mnist` goes, {t} thread{'s' if t != '1' else ''} "
            f"(`benchmarks/instrumented_cli.py`, median of {b['runs']} run(s), {fmt_s(m['__wall__'])} s wall):"
        )
        out.append(table(["part", "seconds", "share of wall"], [[k, fmt_s(m[k]), fmt_pct(m[k] / m["__wall__"])] for k in cats]))
        out.append("Its top functions by exclusive time (last run):")
        out.append(table(["function", "seconds", "calls"], [[f"`{k}`", fmt_s(v), c] for k, v, c in b["top"]]))
    if not out:
        return ""
    return "## Tracking (MLflow)\n\n" + "\n\n".join(out)


def gradcheck_section(results: dict) -> str:
    summary = engine_summary(results)
    t1 = ref_threads(results)
    rows = []
    for name, by_threads in summary.items():
        e = by_threads.get(t1, {}).get("runner")
        if e and e["gradcheck"]:
            g = median(e["gradcheck"])
            rows.append(
                [
                    results["recipes"][name]["title"],
                    f"{g * 1000:.1f}",
                    fmt_s(e["seconds"]),
                    fmt_pct(g / e["seconds"]),
                    len(e["gradcheck"]),
                ]
            )
    if not rows:
        return ""
    return (
        "## Gradient check\n\n`runner.gradcheck.check_run` (each layer alone, the loss alone, every parameter end to end) "
        "with conf/config.yaml's settings, on the recipe's model, "
        f"vs the runner engine's training time ({t1} thread): the check's cost against the training loop alone; the target "
        "(a run's wall time) is measured end to end, in the targets table.\n\n"
        + table(["recipe", "check ms (median)", "training s", "share", "checks"], rows)
    )


def cli_section(results: dict) -> str:
    cli = results.get("cli")
    if not cli:
        return ""
    summary = cli_summary(results)
    out = [
        "## End to end",
        f"Whole processes, wall time from the outside, until the command's process exits (as a shell waits for it): "
        f"imports, data, tracking, everything; {cli['iterations']} iterations; "
        "each in a fresh working directory (so the runner creates its MLflow store), except *store exists* (a second run "
        "in the same directory); *MLflow in-process*: `tracking.sidecar=false`, the MLflow client in the run's own process "
        "instead of the sidecar. *numpy script* and *torch script*: benchmarks/mnist_numpy_script.py and "
        "benchmarks/mnist_torch_script.py, the same recipe written bare. Threads: the runner's `threads=N`, the torch "
        "script's `torch.set_num_threads(N)`, threadpoolctl in the numpy script. *System s*: the kernel's CPU time of "
        "the process and of every process it started (the MLflow sidecar and its painters, which finish their exit after "
        "the run's, reaped by the benchmark), on this VM mostly the page faults of fresh memory; *(no huge pages)*: "
        "the same command with `NUMPY_MADVISE_HUGEPAGE=0` (an extra row at 1 thread: NumPy then does not ask for "
        "transparent huge pages, whose first touch costs this VM from nothing to 2 s of system time, day by day).",
    ]
    rows = []
    for t in sorted(summary, key=int):
        base = summary[t].get("torch script")
        for variant, c in summary[t].items():
            rows.append(
                [
                    t,
                    variant,
                    fmt_s(c["wall"]),
                    "–" if c["sys"] != c["sys"] else fmt_s(c["sys"]),
                    fmt_ratio(c["wall"] / base["wall"]) if base else "–",
                    "–" if c["accuracy"] != c["accuracy"] else f"{c['accuracy']:.4f}",
                    ", ".join(fmt_s(x) for x in c["runs"]),
                ]
            )
    out.append(table(["threads", "variant", "median wall s", "system s", "vs torch script", "test acc", "runs (s)"], rows))
    prof = cli.get("profile")
    if prof:
        out.append(
            f"cProfile of one `python -m runner +experiment=mnist` ({fmt_s(prof['wall'])} s wall under the profiler), "
            "top entries by cumulative time:"
        )
        out.append(
            table(
                ["function", "calls", "cumulative s", "own s"],
                [[f"`{r['function']}`", r["calls"], f"{r['cumtime']:.2f}", f"{r['tottime']:.2f}"] for r in prof["by_cumtime"]],
            )
        )
    return "\n\n".join(out)


def scaling_section(results: dict) -> str:
    rows = results.get("scaling")
    if not rows:
        return ""
    body = [
        [
            r["kind"],
            r["batch"],
            "-".join(map(str, r["hidden"])),
            fmt_us(r["runner_us"]),
            fmt_us(r["numpy_us"]),
            fmt_ratio(r["ratio"]),
            f"{r['runner_us_per_sample']:.2f}",
            f"{r['gflops_runner']:.0f}",
            f"{r['gflops_numpy']:.0f}",
        ]
        for r in rows
    ]
    return (
        "## Scaling\n\nPer training step, 1 thread, evaluation excluded; the seed recipe (784-H-10, ReLU, softmax "
        "cross-entropy, SGD, batches drawn with replacement from 5000 MNIST images) with the batch size or the hidden "
        f"width changed; runner and NumPy alternating in one process, median of {rows[0]['rounds']} round(s).\n\n"
        + table(
            [
                "varied",
                "batch",
                "hidden",
                "runner µs/step",
                "NumPy µs/step",
                "runner/NumPy",
                "runner µs/sample",
                "runner GFLOP/s",
                "NumPy GFLOP/s",
            ],
            body,
        )
    )


def sweep_section(results: dict) -> str:
    sw = results.get("sweep")
    if not sw:
        return ""
    rows = []
    walls = {}
    for launcher, runs in sw["runs"].items():
        if not runs:
            continue
        walls[launcher] = median(r["wall"] for r in runs)
        jobs = runs[-1]["jobs"]
        threads = ", ".join(sorted({str(j["blas_threads"]) for j in jobs})) or "?"
        status = ", ".join(sorted({j["status"] for j in jobs})) or "?"
        acc = ", ".join(f"{j['test_accuracy']:.3f}" for j in jobs if j["test_accuracy"] is not None)
        rows.append(
            [launcher, fmt_s(walls[launcher]), ", ".join(fmt_s(r["wall"]) for r in runs), len(jobs), status, threads, acc]
        )
    speedup = walls["sequential"] / walls["joblib"] if {"sequential", "joblib"} <= set(walls) else float("nan")
    cmd = f"python -m runner --multirun +experiment=mnist trainer.iterations={sw['iterations']} optimizer.lr={sw['lrs']}"
    return (
        f"## Sweep: joblib vs sequential\n\n`{cmd}`, as is (Hydra's basic launcher, one job after another) and with "
        "`hydra/launcher=joblib hydra.launcher.n_jobs=2`; fresh directory each time. BLAS threads per job are runner's own "
        "choice (`threads: null`: the cores shared among parallel jobs), read back from each job's `runner.blas_threads` tag.\n\n"
        + table(
            ["launcher", "median wall s", "runs (s)", "jobs", "status", "BLAS threads per job", "test accuracy per job"], rows
        )
        + f"\n\njoblib speed-up: {fmt_ratio(speedup)}."
    )


def watch_section(results: dict) -> str:
    w = watch_summary(results)
    if not w:
        return ""
    cmd = f"python -m runner +experiment=mnist threads={w['threads']}" + (
        f" trainer.iterations={w['iterations']}" if w["iterations"] != 10000 else ""
    )
    rows = [
        ["on (default)", fmt_s(w["on"]), ", ".join(fmt_s(x) for x in w["runs_on"])],
        ["off (`watch.enabled=false`)", fmt_s(w["off"]), ", ".join(fmt_s(x) for x in w["runs_off"])],
    ]
    return (
        f"## Watch (issue 17)\n\n`{cmd}`, end to end in fresh directories, with the watch on and off, "
        f"{w['pairs']} interleaved pair(s) (the order alternating). On: about 50 watched steps (metrics, histograms), "
        "the npz written in the run's process at the last step, its four pictures then drawn by the sidecar's painters "
        "(off the run's path, on the other core).\n\n"
        + table(["watch", "median wall s", "runs (s)"], rows)
        + f"\n\nCost: {fmt_pct(w['cost'])} of the run's wall time ({w['difference'] * 1000:+.0f} ms; the pairs' own "
        f"ratios, median: {fmt_pct(w['paired'])}; fastest run vs fastest run: {fmt_pct(w['fastest'])}). Target: <= 3 %. "
        f"CPU time of the run (user + system of its process and of every process it started: the MLflow sidecar and its "
        f"painters), median: "
        f"{fmt_s(w['cpu_on'])} s on, {fmt_s(w['cpu_off'])} s off: on a busy machine the wall time follows it, on an idle "
        "one the sidecar's share is hidden on the other core." + _loop_text(w["loop"])
    )


def _loop_text(loop: dict | None) -> str:
    if not loop:
        return ""
    return (
        f"\n\nThe training loop alone (runner's engine, seed MNIST, 1 thread, no tracking; {loop['pairs']} pair(s) off / on "
        f"alternating in one process): {fmt_s(loop['off'])} s off, {fmt_s(loop['on'])} s on, {fmt_pct(loop['cost'])}; "
        f"final parameters {'bitwise equal' if loop['equal'] else '**differ**'} (the watch changes nothing of the training)."
    )
