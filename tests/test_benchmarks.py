"""The benchmark harness still works: ``python -m benchmarks --quick`` runs every section and its
report has the expected rows and columns with sane, positive figures. No timing is asserted: the
figures of a quick run mean nothing (a few steps, a shared machine); docs/benchmarks.md has real ones."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import PLUGIN_SWITCHES, ROOT, SHARED_DATA

if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package of the checkout, not installed
    sys.path.insert(0, str(ROOT))

pytestmark = [
    pytest.mark.slow,  # python -m benchmarks --quick: about a minute
    pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs MNIST in ../shared/data"),
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", *PLUGIN_SWITCHES)}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out / "report.md"), "--json", str(out / "results.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_has_every_section_and_no_failure(quick):
    results, report = quick
    assert results.get("errors") is None, results.get("errors")
    for heading in (
        "## Machine",
        "## Targets",
        "## Engines: the same recipe three ways",
        "## Graph vs Sequential: the same chain two ways",
        "## fp32 GEMM peak",
        "## Where a step's time goes (1 thread)",
        "## Tracking (MLflow)",
        "## Gradient check",
        "## End to end",
        "## Scaling",
    ):
        assert heading in report, heading
    assert "<!-- benchmarks:begin" in report and "<!-- benchmarks:end -->" in report
    assert "quick mode" in report
    assert results["machine"]["blas"], "threadpoolctl found no BLAS"


def test_engines_table_has_every_recipe_and_engine(quick):
    results, report = quick
    from benchmarks.report import engine_summary

    assert (
        "| threads | engine | median s | µs/step | vs NumPy | evaluation s "
        "| vs NumPy, evaluation excluded | test acc | runs (s) |" in report
    )
    summary = engine_summary(results)
    assert set(summary) == {"mnist", "mlp512", "tiny"}
    for name, by_threads in summary.items():
        engines = by_threads["1"]
        assert {"runner", "numpy"} <= set(engines)
        assert ("torch" in engines) == results["settings"]["torch"]
        for engine, e in engines.items():
            assert positive(e["seconds"]) and e["eval"] >= 0 and e["steps"] == 30, (name, engine, e)
            assert 0 <= e["accuracy"] <= 1
        assert all(positive(g) for g in engines["runner"]["gradcheck"])
    # the same weights and batches: the hand-written loop trains the same recipe as runner's engine
    mnist = summary["mnist"]["1"]
    assert abs(mnist["runner"]["accuracy"] - mnist["numpy"]["accuracy"]) <= 0.01


def test_targets_are_all_measured(quick):
    results, report = quick
    from benchmarks.report import TARGETS, targets

    rows = targets(results)
    assert {r["key"] for r in rows} == set(TARGETS)
    for row in rows:
        assert math.isfinite(row["value"]), row
        assert isinstance(row["pass"], bool) or (row["informative"] and row["pass"] is None), row
        assert row["target"] in report
    engine_rows = [r for r in rows if r["key"] == "engine"]
    assert len(engine_rows) == 3 and all(positive(r["value"]) for r in engine_rows)
    # graph / Sequential: the seed MNIST row has the target, iris's is shown without one
    graph_rows = {r["target"].split(": ", 1)[1].split(",")[0]: r for r in rows if r["key"] == "graph"}
    assert set(graph_rows) == {"seed MNIST 784-50-10 SGD", "iris 4-20-1 SGD"}
    mnist, iris = graph_rows["seed MNIST 784-50-10 SGD"], graph_rows["iris 4-20-1 SGD"]
    assert mnist["goal"] == "<= 1.05x" and not mnist["informative"] and isinstance(mnist["pass"], bool)
    assert iris["informative"] and iris["pass"] is None
    assert all(positive(r["value"]) and "bitwise equal" in r["note"] for r in graph_rows.values())


def test_graph_section_trains_the_chain_both_ways_bitwise(quick):
    results, report = quick
    from benchmarks.report import graph_mismatches, graph_summary

    assert set(results["graph"]) == {"mnist", "tiny"}
    assert graph_mismatches(results["graph"]) == []
    for name, by_threads in graph_summary(results).items():
        g = by_threads["1"]
        for model in ("sequential", "graph"):
            assert positive(g[model]["seconds"]) and g[model]["steps"] == 30, (name, model, g)
        assert g["equal"] and positive(g["ratio"]) and g["graph"]["accuracy"] == g["sequential"]["accuracy"], (name, g)
    assert "| threads | model | median s | µs/step | graph / Sequential | per repeat | bitwise | test acc | runs (s) |" in report


def test_gemm_breakdown_cli_and_scaling_figures_are_positive(quick):
    results, _ = quick
    gemm = results["gemm"]["1"]
    assert gemm["shapes"] and all(positive(s["gflops_best"]) for s in gemm["shapes"]) and positive(gemm["square"]["gflops_best"])
    for name in ("mnist", "mlp512", "tiny"):
        pair = results["breakdown"][name]
        for engine in ("runner", "numpy"):
            phases = pair[engine]["runs"][0]["phases"]
            assert positive(phases.get("optimizer")) and any(k.startswith("forward") for k in phases), (name, engine, phases)
    assert results["breakdown"]["profile"]["runs"][0]["profile"]
    cli = results["cli"]["runs"]["1"]
    assert {"runner (instrumented)", "numpy script"} <= set(cli)
    assert ("torch script" in cli) == results["settings"]["torch"]
    for variant, runs in cli.items():
        assert all(positive(r["wall"]) for r in runs), variant
    timing = cli["runner (instrumented)"][0]["timings"]
    assert positive(timing["categories"]["tracking (MLflow)"]) and positive(timing["categories"]["training steps"])
    tracking = results["tracking_engine"]["runs"]
    assert all(positive(r["seconds"]) for r in tracking["noop"] + tracking["tracking"])
    assert results["scaling"] and all(positive(r["runner_us"]) and positive(r["numpy_us"]) for r in results["scaling"])


def test_report_replaces_only_its_own_block_of_an_existing_doc(tmp_path):
    from benchmarks.__main__ import MARK_BEGIN, MARK_END, parse, write

    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nanalysis above\n\n{MARK_BEGIN}\nold tables\n{MARK_END}\n\nanalysis below\n")
    write(parse(["--out", str(doc)]), {}, "new tables")
    text = doc.read_text()
    assert "analysis above" in text and "analysis below" in text and "new tables" in text and "old tables" not in text
