"""Each mistake a user can make: one clear message naming what they wrote, exit 1, no traceback,
no half-written data, and a FAILED MLflow run when one had started."""
import gzip
import shutil


from conftest import SHARED_DATA


def assert_clean_error(result, *expected):
    assert result.proc.returncode == 1, (result.proc.returncode, result.proc.stdout[-2000:], result.proc.stderr[-2000:])
    output = result.proc.stdout + result.proc.stderr
    assert "Traceback" not in output
    for text in expected:
        assert text in result.proc.stderr, (text, result.proc.stderr)


def test_unknown_plugin_lists_the_available_ones(runner_cli):
    result = runner_cli("+experiment=iris", "model.activation=swishh")
    assert_clean_error(result, "model.activation: unknown layer 'swishh' (did you mean 'swish'?)", "relu, sigmoid")
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
    args = (f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=typed", "model=sequential", LAYERS, "report.enabled=false")
    assert_clean_error(runner_cli(*args), "model=sequential: +experiment=typed sets model.type: mlp itself", "add model.type=sequential",
                       "'- override /model: mlp' in its defaults list")
    assert runner_cli(*args, "model.type=sequential").proc.returncode == 0  # what the line says to write works
    assert_clean_error(runner_cli("+experiment=iris", "model=sequential", "model.hidden=[3]"),
                       "model.hidden=[3]: model.hidden is an option of model=mlp, but the model is sequential")


def test_every_experiment_selects_its_model_group_and_the_plugin_guide_shows_the_examples():
    import yaml

    from conftest import ROOT

    example = ROOT / "examples" / "runner-plugin-example" / "runner_plugin_example" / "conf" / "experiment" / "two_moons.yaml"
    for path in [*sorted((ROOT / "conf" / "experiment").glob("*.yaml")), example]:
        config = yaml.safe_load(path.read_text())
        assert {"override /model": "mlp"} in config["defaults"], path
        assert "type" not in config.get("model", {}), path
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert "\n".join(f"  {line}" if line else "" for line in example.read_text().splitlines()) in guide
