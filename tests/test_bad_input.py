"""Each mistake a user can make: one clear message naming what they wrote, exit 1, no traceback,
no half-written data, and a FAILED MLflow run when one had started."""

import gzip
import shutil
import time

import pytest
from conftest import SHARED_DATA


def assert_clean_error(result, *expected):
    assert result.proc.returncode == 1, (result.proc.returncode, result.proc.stdout[-2000:], result.proc.stderr[-2000:])
    output = result.proc.stdout + result.proc.stderr
    assert "Traceback" not in output
    for text in expected:
        assert text in result.proc.stderr, (text, result.proc.stderr)


def test_unknown_plugin_lists_the_available_ones(runner_cli):
    result = runner_cli("+experiment=iris", "model.activation=swishh")
    assert_clean_error(result, "model.activation: unknown layer 'swishh' (did you mean 'swish'?)", "relu, scale, sigmoid")
    assert not (result.cwd / "outputs" / "mlflow.db").exists()  # failed before any run started


def test_unknown_dataset(runner_cli):
    assert_clean_error(runner_cli("dataset.name=cifar"), "dataset.name: unknown dataset 'cifar'", "iris_binary")


def test_layers_that_do_not_fit(runner_cli):
    result = runner_cli("model=sequential", "model.layers=[{type:linear,out:5},{type:relu},{type:linear,in:7,out:auto}]")
    assert_clean_error(result, "model.layers[2] (linear): expected input of 7 features, got 5")


def test_output_width_that_does_not_fit(runner_cli):
    result = runner_cli("model=sequential", "model.layers=[{type:linear,out:5}]")
    assert_clean_error(result, "the model gives 5 outputs, but dataset 'iris' (classification) needs 3")


def test_misspelled_config_key(runner_cli):
    result = runner_cli("+experiment=iris", "optimizer.lrr=0.1")
    assert result.proc.returncode == 1 and "Traceback" not in result.proc.stderr
    assert "Could not override 'optimizer.lrr'" in result.proc.stderr and "Key 'lrr' is not in struct" in result.proc.stderr


def test_wrong_type(runner_cli):
    assert_clean_error(runner_cli("optimizer.lr=abc"), "optimizer (sgd): lr: expected a positive number, got 'abc'")


def test_batch_larger_than_the_data(runner_cli):
    assert_clean_error(runner_cli("trainer.batch_size=1000"), "trainer.batch_size: 1000 is larger than the 90 training samples")


def test_missing_dataset_with_no_mirror_reachable(runner_cli, tmp_path):
    data = tmp_path / "data"
    result = runner_cli("+experiment=mnist", f"data_dir={data}", "dataset.mirrors=[http://127.0.0.1:9/]", "dataset.timeout=5")
    assert_clean_error(result, "http://127.0.0.1:9/", "all 1 mirrors failed")
    leftovers = [p.name for p in data.rglob("*") if p.is_file()]
    assert leftovers == []


def test_corrupt_idx_file_names_the_file(runner_cli, tmp_path):
    mnist = tmp_path / "data" / "mnist"
    shutil.copytree(SHARED_DATA / "mnist", mnist)
    labels = mnist / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:5000]))
    result = runner_cli("+experiment=mnist", f"data_dir={tmp_path / 'data'}", "dataset.verify=false")
    assert_clean_error(result, "t10k-labels-idx1-ubyte.gz", "truncated")


def test_a_failure_after_the_run_started_marks_it_failed_and_keeps_what_was_logged(runner_cli):
    result = runner_cli("+experiment=iris", "optimizer.lr=1e30")
    assert_clean_error(result, "training diverged at step")
    run = result.only_run("iris")
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags["runner.error"]
    assert run.data.metrics["gradcheck/max_rel_error"] <= 1e-6  # logged before the failure, kept


def test_full_traceback_on_request(runner_cli):
    result = runner_cli("model.activation=swishh", env={"HYDRA_FULL_ERROR": "1"})
    assert result.proc.returncode == 1
    assert "Traceback" in result.proc.stderr and "RunnerError" in result.proc.stderr


LAYERS = "model.layers=[{type:linear,out:32},{type:tanh},{type:linear,out:auto}]"


def test_model_sequential_replaces_an_experiments_mlp_and_leaves_its_mlp_options_out(runner_cli):
    result = runner_cli("+experiment=iris", "model=sequential", LAYERS, "trainer.epochs=1", "report.enabled=false")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert "Traceback" not in result.proc.stdout + result.proc.stderr
    run = result.only_run("iris")
    assert run.info.run_name.startswith("iris-4-32-3-") and run.data.params["model.type"] == "sequential"
    assert not [key for key in run.data.params if key.startswith(("model.hidden", "model.activation", "model.linear"))]


def test_an_experiment_that_sets_model_type_itself_is_one_clear_line(runner_cli, tmp_path):
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "typed.yaml").write_text("# @package _global_\nmodel:\n  type: mlp\n  hidden: [8]\ntrainer:\n  epochs: 1\n")
    args = (
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "+experiment=typed",
        "model=sequential",
        LAYERS,
        "report.enabled=false",
    )
    assert_clean_error(
        runner_cli(*args),
        "model=sequential: +experiment=typed sets model.type: mlp itself",
        "add model.type=sequential",
        "'- override /model: mlp' in its defaults list",
    )
    assert runner_cli(*args, "model.type=sequential").proc.returncode == 0  # what the line says to write works
    assert_clean_error(
        runner_cli("+experiment=iris", "model=sequential", "model.hidden=[3]"),
        "model.hidden=[3]: model.hidden is an option of model=mlp, but the model is sequential",
    )


def test_every_experiment_selects_its_model_group_and_the_plugin_guide_shows_the_examples():
    import yaml
    from conftest import ROOT

    example = ROOT / "examples" / "runner-plugin-example" / "runner_plugin_example" / "conf" / "experiment" / "two_moons.yaml"
    for path in [*sorted((ROOT / "conf" / "experiment").glob("*.yaml")), example]:
        config = yaml.safe_load(path.read_text())
        assert any({"override /model": kind} in config["defaults"] for kind in ("mlp", "cnn", "graph")), path
        assert "type" not in config.get("model", {}), path
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert "\n".join(f"  {line}" if line else "" for line in example.read_text().splitlines()) in guide


# --------------------------------------------------------------------------- issue 13: values, configs, stores, times


def assert_nothing_created(result):
    """Stopped before Hydra or MLflow created anything: no outputs/ at all (no run folder, no store)."""
    assert not (result.cwd / "outputs").exists(), sorted(str(p) for p in (result.cwd / "outputs").rglob("*"))


@pytest.mark.parametrize("override, got", [("seed=-1", "-1"), ("seed=abc", "'abc'"), ("seed=1.5", "1.5")])
def test_a_seed_that_is_not_a_non_negative_integer_is_one_line_before_anything_is_created(runner_cli, override, got):
    result = runner_cli("+experiment=iris", override)
    assert_clean_error(result, f"runner: error: seed: expected a non-negative integer, e.g. seed=0, got {got}")
    assert result.proc.stderr.count("\n") == 1, result.proc.stderr  # one line
    assert_nothing_created(result)


def test_a_bad_seed_in_a_sweep_fails_only_its_job_and_names_it(runner_cli):
    result = runner_cli("--multirun", "+experiment=iris", "trainer.epochs=1", "report.enabled=false", "seed=0,-1")
    assert "Traceback" not in result.proc.stdout + result.proc.stderr
    assert (
        "runner: job 1 (+experiment=iris trainer.epochs=1 report.enabled=False seed=-1) failed: seed: expected a non-negative "
        "integer, e.g. seed=0, got -1" in result.proc.stderr
    )
    children = {int(r.data.tags["runner.job.num"]): r for r in result.runs("iris") if "mlflow.parentRunId" in r.data.tags}
    assert children[0].info.status == "FINISHED" and children[1].info.status == "FAILED"
    assert "seed: expected a non-negative integer" in children[1].data.tags["runner.error"]


BROKEN_YAML = "# @package _global_\ndefaults:\n  - override /model: mlp\nmodel:\n  hidden: [8\ntrainer:\n  epochs: 1\n"
YAML_PROBLEM = "invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence at line 5, column 11)"


def test_a_yaml_syntax_error_in_a_users_config_names_the_file_line_and_column(runner_cli, tmp_path):
    mine = tmp_path / "conf" / "experiment" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text(BROKEN_YAML)
    result = runner_cli("hydra.searchpath=[file://./conf]", "+experiment=mine")
    line = f"runner: error: {mine}, line 6, column 8: {YAML_PROBLEM}"
    assert_clean_error(result, line)
    assert result.proc.stderr.splitlines() == [line]  # that line alone: no traceback, no hint after it
    assert_nothing_created(result)
    full = runner_cli("hydra.searchpath=[file://./conf]", "+experiment=mine", env={"HYDRA_FULL_ERROR": "1"})
    assert full.proc.returncode == 1 and "Traceback" in full.proc.stderr and "ParserError" in full.proc.stderr


def test_a_yaml_syntax_error_in_a_plugins_shipped_config_names_the_installed_file(runner_cli, tmp_path):
    from pip_installs import pip_install, plugin_env, pyproject, write_distribution

    source = write_distribution(
        tmp_path / "src",
        {
            "pyproject.toml": pyproject(
                "runner-broken-config",
                "0.1.0",
                {"runner.configs": {"conf": "runner_broken_config.conf"}},
                packages=["runner_broken_config"],
            ),
            "runner_broken_config/__init__.py": "",
            "runner_broken_config/conf/experiment/broken.yaml": BROKEN_YAML,
        },
    )
    site = pip_install(source, tmp_path / "site")
    installed = site / "runner_broken_config" / "conf" / "experiment" / "broken.yaml"
    result = runner_cli("+experiment=broken", env=plugin_env(site))
    line = f"runner: error: {installed.resolve()}, line 6, column 8: {YAML_PROBLEM}"
    assert_clean_error(result, line)
    assert result.proc.stderr.splitlines() == [line]
    assert_nothing_created(result)


def test_model_hidden_that_is_not_a_list_names_what_was_written_and_what_is_expected(runner_cli):
    result = runner_cli("+experiment=iris", "model.hidden=abc")
    assert_clean_error(
        result,
        "runner: error: model.hidden: expected a list of positive widths, e.g. model.hidden=[50] or "
        "model.hidden='[100,100]', got 'abc'",
    )
    assert "'a'" not in result.proc.stderr
    assert_nothing_created(result)
    assert_clean_error(
        runner_cli("+experiment=iris", "model.hidden=50"), "model.hidden: expected a list of positive widths", "got 50"
    )


@pytest.mark.parametrize("how", ["MLFLOW_TRACKING_URI", "tracking.uri"])
def test_a_malformed_tracking_uri_is_named_before_anything_is_created(runner_cli, how):
    args, env = (("tracking.uri=htp:/bad:uri",), None) if how == "tracking.uri" else ((), {"MLFLOW_TRACKING_URI": "htp:/bad:uri"})
    result = runner_cli("+experiment=iris", *args, env=env)
    assert_clean_error(
        result, f"runner: error: {how}='htp:/bad:uri': not a tracking URI MLflow can open (scheme 'htp:'; expected http://"
    )
    assert "Model registry" not in result.proc.stderr and "training" not in result.proc.stdout
    assert_nothing_created(result)
    typo = runner_cli("+experiment=iris", env={"MLFLOW_TRACKING_URI": "http:/127.0.0.1:5000"})
    assert_clean_error(typo, "MLFLOW_TRACKING_URI='http:/127.0.0.1:5000': no server in the URI (expected http://host:port)")


@pytest.mark.parametrize("how", ["MLFLOW_TRACKING_URI", "tracking.uri"])
def test_a_sqlite_store_in_a_missing_folder_is_named_and_not_created(runner_cli, tmp_path, how):
    missing = tmp_path / "nonexistent" / "dir"
    uri = f"sqlite:///{missing}/x.db"
    args, env = ((f"tracking.uri={uri}",), None) if how == "tracking.uri" else ((), {"MLFLOW_TRACKING_URI": uri})
    result = runner_cli("+experiment=iris", *args, env=env)
    assert_clean_error(
        result, f"runner: error: {how}='{uri}': the folder {missing} does not exist; create it (mkdir -p {missing})"
    )
    assert not (tmp_path / "nonexistent").exists()
    assert_nothing_created(result)


@pytest.mark.parametrize("sidecar", [True, False])
def test_a_runs_start_time_is_its_process_start(runner_cli, sidecar):
    """MLflow stamped the run when it was created, late: a 3.0 s run showed 0.78 s."""
    launched = time.time()
    result = runner_cli(
        "+experiment=iris", "trainer.epochs=1", "report.enabled=false", f"tracking.sidecar={str(sidecar).lower()}"
    )
    returned = time.time()
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("iris")
    assert abs(run.info.start_time / 1000 - launched) < 0.5, run.info.start_time / 1000 - launched
    assert launched < run.info.end_time / 1000 <= returned
    assert (run.info.end_time - run.info.start_time) / 1000 > 0.6 * (
        returned - launched
    )  # the run's duration is most of the process's


def test_a_sweep_jobs_start_time_is_the_jobs_start_and_its_wall_time_follows(runner_cli):
    import pandas as pd

    result = runner_cli("--multirun", "+experiment=iris", "trainer.epochs=1", "report.enabled=false", "seed=0,1")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    runs = result.runs("iris")
    parent = next(r for r in runs if r.data.tags.get("runner.sweep") == "parent")
    children = {int(r.data.tags["runner.job.num"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    job_dirs = {int(p.parent.parent.name): p for p in (result.cwd / "outputs" / "sweeps").glob("*/*/*/.hydra/overrides.yaml")}
    summary = pd.read_csv(result.client().download_artifacts(parent.info.run_id, "summary.csv", str(result.cwd))).set_index("job")
    for num, child in children.items():
        job_started = job_dirs[num].stat().st_mtime  # Hydra writes the job's .hydra/ files just before the job starts
        assert abs(child.info.start_time / 1000 - job_started) < 0.5, (num, child.info.start_time / 1000 - job_started)
        assert summary.loc[num, "wall_time_s"] == round((child.info.end_time - child.info.start_time) / 1000, 2)


def test_resuming_a_finished_run_is_one_clear_line(runner_cli):
    args = ("+experiment=iris", "trainer.epochs=2", "report.enabled=false")
    first = runner_cli(*args, "checkpoint.min_interval_s=0")  # a checkpoint every epoch, the last one of the finished run
    assert first.proc.returncode == 0, first.proc.stderr[-3000:]
    run = first.only_run("iris")
    checkpoint = next((first.cwd / "outputs" / "runs").glob("*/*/checkpoints/checkpoint.npz"))
    short = runner_cli(*args)  # no checkpoint at all: a run of a few seconds saves one only on an interrupt
    assert short.proc.returncode == 0, short.proc.stderr[-3000:]
    before = {r.info.run_id: r for r in short.runs("iris")}
    (short_id,) = set(before) - {run.info.run_id}
    attempts = [
        ((*args, "checkpoint.min_interval_s=0"), run.info.run_id, run),
        ((*args, "checkpoint.min_interval_s=0"), str(checkpoint), run),
        (args, short_id, before[short_id]),
    ]
    for overrides, resume, finished in attempts:
        result = runner_cli(*overrides, f"+resume={resume}")
        assert_clean_error(
            result,
            f"runner: error: resume={resume}: run {finished.info.run_id} ({finished.info.run_name}) is FINISHED: "
            "there is nothing to continue; to train again or longer, start a new run without +resume",
        )
    after = {r.info.run_id: r for r in short.runs("iris")}
    assert set(after) == set(before)  # left as they were
    for run_id, again in after.items():
        assert again.info.status == "FINISHED" and again.info.end_time == before[run_id].info.end_time
        assert "runner.resumed_after_step" not in again.data.tags
