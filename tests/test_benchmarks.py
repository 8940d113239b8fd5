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
    assert {r["key"] for r in rows} == set(TARGETS) | {"cli_numpy"}  # quick mode: no overhead section, 1 thread
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


# --------------------------------------------------------------------------- the CNN recipe and conv layers (issue 16)


@pytest.fixture(scope="module")
def quick_cnn(tmp_path_factory):
    """``--quick --only engines,breakdown,conv``: quick mode's recipes with the conv section are the CNN recipe alone."""
    out = tmp_path_factory.mktemp("bench_cnn")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", *PLUGIN_SWITCHES)}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    args = ["--quick", "--only", "engines,breakdown,conv", "--out", str(out / "report.md"), "--json", str(out / "results.json")]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def test_cnn_engines_start_from_the_same_weights(tmp_path):
    """runner's build_model, the NumPy loop and the PyTorch script hold the same initial weights, bit for bit."""
    import importlib.util

    import numpy as np

    from benchmarks import numpy_cnn, runner_engine
    from benchmarks.data import Data
    from benchmarks.recipes import CNN

    meta = {"name": "tiny", "input_shape": [784], "output_size": 10, "task": "classification", "classes": list("0123456789")}
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "image_shape": [1, 28, 28]}))
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        np.save(tmp_path / f"{split}_x.npy", rng.random((200, 784), dtype=np.float32))
        np.save(tmp_path / f"{split}_y.npy", rng.integers(0, 10, 200))
    model = runner_engine.build(CNN, Data(tmp_path))[0]
    from runner.core.evaluation import eval_rows

    assert numpy_cnn.EVAL_ROWS == eval_rows(model)  # the loops evaluate in runner's chunks
    convs, dense = numpy_cnn.init_weights(CNN, 10, seed=0)
    ours = [p for layer in convs + dense for p in layer]
    assert [v.shape for v in model.params.values()] == [p.shape for p in ours]
    assert all(np.array_equal(v, p) for v, p in zip(model.params.values(), ours))
    if importlib.util.find_spec("torch") is not None:
        from benchmarks import torch_cnn

        torch_params = [p.detach().numpy() for p in torch_cnn.build(CNN, 10, seed=0).parameters()]
        # nn.Linear holds W transposed (out, in)
        assert all(np.array_equal(t, p if t.shape == p.shape else p.T) for t, p in zip(torch_params, ours))


def test_quick_cnn_rows_and_the_three_engines_train_the_same(quick_cnn):
    results, report = quick_cnn
    from benchmarks.report import engine_summary, targets

    assert results.get("errors") is None, results.get("errors")
    assert results["settings"]["recipes"] == ["cnn"]
    engines = engine_summary(results)["cnn"]["1"]
    assert {"runner", "numpy"} <= set(engines) and ("torch" in engines) == results["settings"]["torch"]
    for engine, e in engines.items():
        assert positive(e["seconds"]) and e["steps"] == 20, (engine, e)
    # the same weights, batches and steps: the three engines train the same network (rounding apart)
    accuracies = [e["accuracy"] for e in engines.values()]
    assert min(accuracies) > 0.3 and max(accuracies) - min(accuracies) <= 0.02, engines
    rows = [r for r in targets(results) if "CNN" in r["target"]]
    engine_row = next(r for r in rows if r["key"] == "engine")
    assert engine_row["goal"] == "<= 1.05x" and isinstance(engine_row["pass"], bool) and positive(engine_row["value"])
    if results["settings"]["torch"]:
        torch_row = next(r for r in rows if r["key"] == "cnn_torch")
        assert torch_row["goal"] == "<= 1.0x" and positive(torch_row["value"]) and "test accuracy" in torch_row["note"]
    for row in rows:
        assert row["target"] in report
    assert "### MNIST CNN conv 32-64, 128, Adam" in report


def test_quick_cnn_conv_section_and_layer_breakdown(quick_cnn):
    results, report = quick_cnn
    from benchmarks.report import conv_summary

    conv = conv_summary(results)
    assert positive(conv["peak"][0])
    assert [layer["shape"]["out"] for layer in conv["layers"]] == [32, 64, 64]
    for layer in conv["layers"]:
        variants = {r["variant"]: r for r in layer["rows"]}
        registered = next(r for v, r in variants.items() if v.startswith("runner conv2d"))
        assert positive(registered["step"]) and positive(registered["gflops"]) and positive(registered["of_peak"])
        assert positive(registered["workspace_bytes_per_sample"]) and positive(registered["peak_allocated"])
        assert positive(variants["its im2col products alone (numpy.matmul)"]["step"])
        assert ("torch F.conv2d" in variants) == results["settings"]["torch"]
    assert "## Convolution layers by shape (1 thread)" in report and "| layer | implementation | forward ms |" in report
    # where a CNN step's time goes: layer by layer in both engines, PyTorch by operator
    pair = results["breakdown"]["cnn"]
    for engine in ("runner", "numpy"):
        phases = pair[engine]["runs"][0]["phases"]
        assert positive(phases["forward: 3 conv2d"]) and positive(phases["backward: 3 conv2d"]), (engine, phases)
    assert "| forward: 3 conv2d |" in report and "| backward: 2 maxpool2d |" in report
    if results["settings"]["torch"]:
        assert pair["torch_profile"]["runs"][0]["profile"] and "`aten::" in report


# --------------------------------------------------------------------------- the watch's cost (issue 17)


def test_quick_watch_section_times_runs_with_the_watch_on_and_off(tmp_path):
    """``--quick --only watch``: one interleaved pair of whole 30-step runs, the watch on and off, and its target row."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", *PLUGIN_SWITCHES)}
    env["RUNNER_DATA_DIR"] = str(SHARED_DATA)
    args = ["--quick", "--only", "watch", "--out", str(tmp_path / "report.md"), "--json", str(tmp_path / "results.json")]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results, report = json.loads((tmp_path / "results.json").read_text()), (tmp_path / "report.md").read_text()
    from benchmarks.report import WATCH_TARGETS, targets, watch_summary

    assert results.get("errors") is None, results.get("errors")
    watch = results["watch"]
    assert watch["iterations"] == 30 and watch["threads"] == 1
    assert len(watch["runs"]["on"]) == len(watch["runs"]["off"]) == 1
    assert all(positive(r["wall"]) and positive(r["cpu"]) for runs in watch["runs"].values() for r in runs)
    summary = watch_summary(results)
    assert summary is not None and math.isfinite(summary["cost"]) and summary["pairs"] == 1 and positive(summary["cpu_on"])
    loop = summary["loop"]  # the training loop alone, off and on in one process: the same training, bit for bit
    assert loop is not None and loop["pairs"] == 1 and loop["equal"] and positive(loop["on"]) and positive(loop["off"])
    assert all(r["steps"] == 30 for runs in watch["engine"].values() for r in runs)
    [row] = [r for r in targets(results) if r["key"] == "watch"]
    assert row["goal"] == "<= 3 %" and isinstance(row["pass"], bool) and row["target"].startswith(WATCH_TARGETS["watch"][0])
    assert "## Watch (issue 17)" in report and "| off (`watch.enabled=false`) |" in report and row["target"] in report
    assert "The training loop alone" in report and "bitwise equal" in report


def test_the_overhead_targets_read_the_commands_and_the_grid():
    """Issue 19's rows from the overhead section's raw results (synthetic: the section itself takes a minute)."""
    from benchmarks.report import overhead_summary, targets

    job = {"status": "FINISHED", "training": 2.0, "run_s": 2.5}
    results = {
        "settings": {"recipes": [], "threads": [1], "quick": False},
        "overhead": {
            "runs": {"help": [{"wall": w} for w in (0.5, 0.7, 0.55)], "plugins": [{"wall": w} for w in (0.4, 0.45, 0.6)]},
            "grid": [{"wall": 21.6, "jobs": [job] * 9}, {"wall": 27.0, "jobs": [job] * 8 + [{**job, "status": "FAILED"}]}],
        },
    }
    summary = overhead_summary(results)
    assert summary["help"]["wall"] == 0.55 and summary["plugins"]["wall"] == 0.45
    assert [g["ratio"] for g in summary["grids"]] == pytest.approx([1.2, 1.5]) and summary["grids"][1]["finished"] == 8
    rows = {r["key"]: r for r in targets(results)}
    assert rows["help"]["pass"] is True and rows["plugins"]["pass"] is True
    assert rows["grid"]["value"] == 1.5 and rows["grid"]["pass"] is False  # the median of two: the upper one
    assert "| 21.6 | 18.0 | 1.20x | 22.5 | 9/9 |" in markdown_of(results)


def markdown_of(results: dict) -> str:
    from benchmarks.report import overhead_section

    return overhead_section(results)


def test_the_cli_rows_show_system_time_and_the_ratio_without_huge_pages():
    """The end-to-end section's system time per variant, and the 1-thread target's note with the extra pair of runs
    made with ``NUMPY_MADVISE_HUGEPAGE=0`` (synthetic results: the section itself takes minutes)."""
    from benchmarks.report import cli_section, targets

    def runs(*walls_and_sys):
        return [{"wall": w, "sys": s, "cpu": w, "accuracy": 0.97} for w, s in walls_and_sys]

    results = {
        "settings": {"recipes": [], "threads": [1], "quick": False},
        "cli": {
            "iterations": 10000,
            "runs": {
                "1": {
                    "runner": runs((3.8, 1.0), (3.6, 0.9), (4.0, 1.1)),
                    "numpy script": runs((3.5, 1.6), (3.3, 1.5), (4.5, 2.1)),
                    "runner (no huge pages)": runs((3.4, 0.5), (3.5, 0.6), (3.45, 0.55)),
                    "numpy script (no huge pages)": runs((2.7, 0.3), (2.6, 0.3), (2.65, 0.3)),
                }
            },
        },
    }
    row = {r["key"]: r for r in targets(results)}["cli_numpy"]
    assert row["value"] == pytest.approx(3.8 / 3.5) and row["pass"] is True
    assert "system time 1.000 vs 1.600 s" in row["note"]
    assert "without huge pages (`NUMPY_MADVISE_HUGEPAGE=0`, an extra row): 1.30x (3.450 vs 2.650 s)" in row["note"]
    section = cli_section(results)
    assert "| 1 | numpy script (no huge pages) | 2.650 | 0.300 | – | 0.9700 | 2.700, 2.600, 2.650 |" in section


ORPHAN = """
import subprocess, sys
# a grandchild that outlives this process (as a run's MLflow sidecar does) and burns that many seconds of its own CPU
burner = "import time\\nwhile time.process_time() < {cpu}: pass"
subprocess.Popen([sys.executable, "-c", burner.format(cpu=float(sys.argv[1]))])
"""

#: times ORPHAN with benchmarks.cli.timed in a process of its own (which becomes a subreaper, as the harness does;
#: the test's process must not: every sidecar the other tests leave would become its zombie), then says whether any
#: child is left, zombie or not
TIMING = """
import json, os, sys
from pathlib import Path
from benchmarks.cli import timed
result = timed([sys.executable, "-c", sys.argv[1], sys.argv[2]], Path.cwd(), dict(os.environ), timeout=120)
try:
    os.waitpid(-1, os.WNOHANG)
    result["children_left"] = True
except ChildProcessError:
    result["children_left"] = False
print(json.dumps(result))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper is Linux's (prctl)")
def test_a_timed_command_counts_the_cpu_of_what_it_left_running_and_its_wall_does_not_wait_for_it(tmp_path):
    """A run's process no longer waits for its sidecar's exit: the sidecar's CPU time must still be the run's
    (benchmarks.cli.timed reaps the command's orphans after taking the wall time), and nothing is left running."""
    cpu_s = 1.5
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", TIMING, ORPHAN, str(cpu_s)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cpu"] >= cpu_s  # the orphan's CPU, counted
    assert result["wall"] < cpu_s  # the command's own time: it returned before the orphan was done
    assert result["left_running"] == 0 and result["children_left"] is False  # reaped, zombie or not
