"""The watch (runner.core.watch): its statistics on arrays small enough to check by hand, a run that trains
bit for bit alike with the watch on or off, its state through a checkpoint, graphs, and a real run's
metrics, pictures and histograms."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from runner.api import DataContext, Meta
from runner.core.model import build_model, layer_configs, mlp_layers
from runner.core.train import TrainerConfig, Training
from runner.core.watch import Histograms, Watch, WatchConfig
from runner.core.watch.statistics import (
    activation_stats,
    bin_counts,
    dead_channel_fraction,
    dead_fraction,
    sample_entries,
    saturated_fraction,
    update_ratio,
)
from runner.plugins.discovery import load_registry
from runner.run import checkpoint, resume

IRIS = Meta("iris", (4,), 3, "classification")


@cache
def registry():
    return load_registry()


@cache
def iris():
    entry = registry().get("dataset", "iris", "test")
    return entry.create({}, "test").load(DataContext(Path(SHARED_DATA), 0, np.dtype("float32")))


def plugin(kind: str, name: str, **options):
    return registry().get(kind, name, "test").create(options, "test")


# --------------------------------------------------------------------------- the statistics, by hand


def test_a_relu_unit_is_dead_when_no_sample_of_the_batch_switches_it_on():
    y = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 0.0]])  # units 0 and 3 never fire
    assert dead_fraction(y) == 0.5
    images = np.zeros((2, 3, 2, 2))  # (batch, channels, h, w): a unit is one channel at one position
    images[1, 0, 0, 0] = 1.0
    assert dead_fraction(images) == 11 / 12
    assert activation_stats("relu", y)["dead_fraction"] == 0.5
    assert "dead_fraction" not in activation_stats("tanh", y)


def test_saturation_is_the_fraction_in_the_flat_tails():
    sig = np.array([0.005, 0.01, 0.5, 0.99, 0.995, 1.0])  # outside [0.01, 0.99]: 0.005, 0.995, 1.0
    assert saturated_fraction("sigmoid", sig) == 3 / 6
    tanh = np.array([-1.0, -0.995, -0.5, 0.0, 0.99, 0.999])  # |y| > 0.99: -1, -0.995, 0.999
    assert saturated_fraction("tanh", tanh) == 3 / 6
    stats = activation_stats("tanh", tanh.reshape(2, 3))
    assert stats["mean"] == pytest.approx(tanh.mean()) and stats["std"] == pytest.approx(tanh.std())


def test_a_histogram_starts_on_a_power_of_two_range_from_a_robust_scale():
    h = Histograms(8)
    wide = np.linspace(-3.0, 3.0, 1001)  # 99th percentile of |x| 2.97: [-4, 4)
    h.add("weights", "w", wide)
    assert h.edges["weights"]["w"] == pytest.approx(np.linspace(-4, 4, 9))
    h.add("activations", "r", np.array([0.0, 0.3, 0.7]))  # non-negative (a ReLU's output): from 0
    assert h.edges["activations"]["r"] == pytest.approx(np.linspace(0, 1, 9))
    h.add("activations", "s", np.array([0.3]), "sigmoid")  # bounded: its range, whatever the sample
    assert h.edges["activations"]["s"] == pytest.approx(np.linspace(0, 1, 9))
    outlier = np.concatenate([np.full(999, 0.1), [1000.0]])  # one outlier does not set the scale
    h.add("gradients", "g", outlier)
    assert h.edges["gradients"]["g"][-1] == 0.125 and h.counts["gradients"]["g"][0][-1] == 1  # it is counted as over
    with pytest.raises(ValueError, match="multiple of 4"):
        Histograms(10)
    counts = bin_counts(np.array([-5.0, -1.0, -0.5, 0.0, 0.99, 1.0, np.inf, np.nan]), np.array([-1.0, 0.0, 1.0]))
    assert counts.tolist() == [1, 2, 2, 3]  # under, [-1, 0), [0, 1), over (1.0, inf, NaN)


def test_a_range_that_is_outgrown_doubles_and_every_earlier_count_stays_exact():
    """Growing 2000x over 12 points: the range doubles, earlier rows are merged pairwise. Because the new bins are
    aligned with the old ones, each row is its own sample binned directly on the final edges, but for the entries
    that fell outside the range of its time (kept in its under- and overflow bins)."""
    rng = np.random.default_rng(0)
    h = Histograms(40)
    samples = [rng.normal(0, 0.01 * 2.0**k, 3000) for k in range(12)]
    for x in samples:
        h.add("gradients", "g", x)
    edges = h.edges["gradients"]["g"]
    assert edges[0] == -edges[-1] and math.log2(edges[-1]).is_integer()  # symmetric, a power of two
    assert edges[-1] > np.quantile(np.abs(samples[-1]), 0.99) > edges[-1] / 2  # as small as the last sample allows
    for x, row in zip(samples, h.counts["gradients"]["g"]):
        direct = bin_counts(x, edges)
        outside = row[0] + row[-1] - (direct[0] + direct[-1])  # outside then, inside the final range
        assert row.sum() == x.size and np.all(row[1:-1] <= direct[1:-1]) and (direct - row)[1:-1].sum() == outside
        assert 0 <= outside <= 0.01 * x.size


def test_a_range_from_zero_turns_symmetric_and_an_all_zero_array_waits_for_a_scale():
    h = Histograms(8)
    h.add("weights", "b", np.zeros(5))  # a bias at its start: no scale yet, counted around 0
    assert h.edges["weights"]["b"] is None and h.arrays()["weights/b/edges"] == pytest.approx(np.linspace(-1, 1, 9))
    h.add("weights", "b", np.array([0.0, 0.5, 1.5]))  # first non-zero, non-negative: [0, 2)
    assert h.edges["weights"]["b"] == pytest.approx(np.linspace(0, 2, 9))
    assert [r.tolist() for r in h.counts["weights"]["b"]] == [[0, 5, 0, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0, 0, 1, 0, 0]]
    h.add("weights", "b", np.array([-1.0, 1.0]))  # negative entries: [-2, 2), the earlier bins merged into the upper half
    assert h.edges["weights"]["b"] == pytest.approx(np.linspace(-2, 2, 9))
    rows = [r.tolist() for r in h.counts["weights"]["b"]]
    assert rows == [[0, 0, 0, 0, 0, 5, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0, 0, 1, 0, 0]]
    state = h.state_dict()
    again = Histograms(8)
    again.load_state_dict(state)
    assert all(np.array_equal(a, b) for a, b in zip(again.arrays().values(), h.arrays().values()))


def test_sampling_keeps_small_arrays_whole_and_draws_from_large_ones():
    rng = np.random.default_rng(0)
    small = np.arange(6.0).reshape(2, 3)
    assert sample_entries(small, 10, rng).tolist() == [0, 1, 2, 3, 4, 5]
    big = np.arange(1000.0)
    drawn = sample_entries(big, 100, rng)
    assert drawn.shape == (100,) and set(drawn) <= set(big)
    assert update_ratio(np.zeros(3), np.ones(3)) is None  # all-zero weights: no ratio


def one_step(model, lr: float, x: np.ndarray, target: np.ndarray):
    """One watched step of plain SGD on (x, target): the watch's point, and the gradients and weights it saw."""
    loss, sgd = plugin("loss", "mse"), plugin("optimizer", "sgd", lr=lr)
    watch = Watch(WatchConfig(), model, total_steps=1, seed=0)
    watch.start(model, 1)
    loss.forward(model.forward(x, training=True), target)
    model.backward(loss.backward())
    grads = {k: v.copy() for k, v in model.grads.items()}
    before = {k: v.copy() for k, v in model.params.items()}
    watch.gradients(model)
    sgd.step(model.params, model.grads)
    return watch.finish(model, 1), grads, before


def test_for_plain_sgd_the_update_ratio_is_lr_times_the_gradient_over_the_weights():
    model = build_model(
        mlp_layers([5], "relu", None, {"init": "he_normal"}), registry(), IRIS, np.random.default_rng(3), np.float64
    )
    x, target = iris().train.x[:8].astype(np.float64), np.eye(3)[iris().train.y[:8].astype(int)]
    point, grads, before = one_step(model, 0.05, x, target)
    for name in ("0.linear.W", "2.linear.W"):
        g, w = np.linalg.norm(grads[name]), np.linalg.norm(before[name])
        assert point[f"watch/{name}/grad_norm"] == pytest.approx(g, rel=1e-12)
        assert point[f"watch/{name}/weight_norm"] == pytest.approx(w, rel=1e-12)
        assert point[f"watch/{name}/update_ratio"] == pytest.approx(0.05 * g / w, rel=1e-9)
    assert "watch/0.linear.b/update_ratio" not in point  # the biases start at 0: no ratio at the first step
    hidden = x @ before["0.linear.W"] + before["0.linear.b"]
    assert point["watch/0.linear/mean"] == pytest.approx(hidden.mean())  # before the in-place relu overwrote it
    assert point["watch/1.relu/dead_fraction"] == dead_fraction(np.maximum(hidden, 0))
    assert point["watch/1.relu/mean"] == pytest.approx(np.maximum(hidden, 0).mean())


def test_a_graph_is_watched_per_node():
    nodes = [
        {"name": "h1", "type": "linear", "out": 6, "inputs": ["x"]},
        {"name": "a1", "type": "tanh", "inputs": ["h1"]},
        {"name": "h2", "type": "linear", "out": 6, "inputs": ["a1"]},
        {"name": "sum", "type": "add", "inputs": ["h2", "a1"]},
        {"name": "out", "type": "linear", "out": "auto", "inputs": ["sum"]},
    ]
    config = layer_configs({"type": "graph", "nodes": nodes, "output": "out"}, registry())
    model = build_model(config, registry(), IRIS, np.random.default_rng(0), np.float64)
    x, target = iris().train.x[:8].astype(np.float64), np.eye(3)[iris().train.y[:8].astype(int)]
    point, _, _ = one_step(model, 0.1, x, target)
    assert {"watch/a1.tanh/saturated_fraction", "watch/sum.add/std", "watch/h1.linear.W/grad_norm"} <= set(point)
    assert "watch/out.linear.W/update_ratio" in point


def test_a_conv_relu_is_watched_per_channel_too():
    """A ConvNet's ReLU on images: ``dead_channel_fraction`` counts whole channels (a filter lost), beside
    ``dead_fraction`` (a channel at a position); kernels count as weight matrices for the flow and ratio checks."""
    digits = Meta("digits", (64,), 3, "classification", ("a", "b", "c"), image_shape=(1, 8, 8))
    cnn = {"type": "cnn", "channels": [4], "kernel": 3, "padding": 1, "pool": "maxpool2d", "activation": "relu", "hidden": []}
    model = build_model(layer_configs(cnn, registry()), registry(), digits, np.random.default_rng(0), np.float64)
    conv = model.layers[0]
    conv.params["W"][...] = np.abs(conv.params["W"])  # positive pixels through positive weights: alive
    conv.params["W"][2] *= -1  # but channel 2's are negative, and so is its bias: 0 everywhere, for every image
    conv.params["b"][2] = -0.1
    x = np.random.default_rng(1).random((6, 1, 8, 8))
    target = np.eye(3)[np.arange(6) % 3]
    point, _, _ = one_step(model, 0.1, x, target)
    assert model.types[:3] == ["conv2d", "relu", "maxpool2d"]
    assert point["watch/1.relu/dead_channel_fraction"] == 0.25
    assert point["watch/1.relu/dead_fraction"] >= 0.25 and "watch/2.maxpool2d/dead_channel_fraction" not in point
    assert point["watch/0.conv2d.W/grad_norm"] > 0 and "watch/0.conv2d.W/update_ratio" in point
    assert Watch(WatchConfig(), model, 1, 0).matrices[0] == "0.conv2d.W"
    images = np.zeros((2, 3, 2, 2))
    images[1, 0, 1, 1] = 1.0  # channel 0 alive at one position of one sample; 1 and 2 dead
    assert dead_channel_fraction(images) == 2 / 3 and dead_fraction(images) == 11 / 12


# --------------------------------------------------------------------------- in the loop: bitwise alike, resumable


def mnist_like_training(watch: bool, epochs: int = 4, seed: int = 1, model_seed: int = 5):
    """Iris on a ReLU MLP with dropout (a layer with its own generator), the watch on or off."""
    layers = mlp_layers([16, 8], "relu", None, {"init": "he_normal"}, dropout=0.2)
    model = build_model(layers, registry(), IRIS, np.random.default_rng(model_seed), np.float32)
    points: list = []
    trainer = TrainerConfig(epochs=epochs, batch_size=16, log_every=2)
    training = Training(
        model,
        plugin("loss", "softmax_cross_entropy"),
        plugin("optimizer", "adam", lr=0.01),
        iris(),
        trainer,
        np.random.default_rng(seed),
        lambda m, s: points.append((s, dict(m))),
    )
    if watch:
        training.watch = Watch(WatchConfig(every=3), model, training.total, seed=11)
    return training, points


def unwatched(points: list) -> list:
    return [
        (s, m) for s, m in ((s, {k: v for k, v in m.items() if not k.startswith(("watch/", "time/"))}) for s, m in points) if m
    ]


def test_training_is_bitwise_the_same_with_the_watch_on_or_off():
    on, on_points = mnist_like_training(watch=True)
    off, off_points = mnist_like_training(watch=False)
    on.run(), off.run()
    assert unwatched(on_points) == unwatched(off_points)
    for a, b in zip(on.model.params.values(), off.model.params.values()):
        assert a.tobytes() == b.tobytes()
    assert on.watch is not None
    assert on.watch.steps[:3] == [1, 3, 6] and on.watch.steps[-1] == on.total
    assert any("watch/1.relu/dead_fraction" in m for _, m in on_points)


def test_the_watch_is_handed_over_once_at_the_last_step_before_that_epochs_evaluation():
    """``Training.watch_done``: the run hands the watch's pictures over then, to be drawn while it evaluates."""
    training, points = mnist_like_training(watch=True)
    handed = []
    training.watch_done = lambda watch: handed.append(
        (watch, list(watch.steps), [dict(m) for s, m in points if s == training.total])
    )
    training.run()
    assert len(handed) == 1
    watch, steps, at_last_step = handed[0]
    assert watch is training.watch and steps == training.watch.steps and steps[-1] == training.total
    assert any("watch/0.linear.W/grad_norm" in m for m in at_last_step)  # its last point logged before the hand-over
    assert not any("val/loss" in m for m in at_last_step)  # the last epoch's evaluation came after it
    assert any("val/loss" in m for s, m in points if s == training.total)
    unwatched_run, _ = mnist_like_training(watch=False)
    unwatched_run.watch_done = lambda watch: handed.append(watch)
    unwatched_run.run()
    assert len(handed) == 1  # no watch: never called


def test_the_watch_state_resumes_from_a_checkpoint_bitwise(tmp_path):
    reference, ref_points = mnist_like_training(watch=True)
    reference.run()

    interrupted, points = mnist_like_training(watch=True)

    def stop(t):
        if t.epoch == 2:
            raise KeyboardInterrupt

    interrupted.after_epoch = stop
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    path = checkpoint.save(tmp_path, resume.state_of(interrupted.model, interrupted.optimizer, interrupted, {"a": 1}, "r", "u"))
    assert interrupted.watch is not None
    at_checkpoint = {k: v for k, v in interrupted.watch.histograms.arrays().items() if k.endswith("/edges")}

    fresh, _ = mnist_like_training(watch=True, seed=7, model_seed=9)
    fresh.sink = lambda m, s: points.append((s, dict(m)))
    resume.restore(checkpoint.load(path), fresh.model, fresh.optimizer, fresh)
    fresh.run()
    watched = lambda pts: [(s, {k: v for k, v in m.items() if k.startswith("watch/")}) for s, m in pts]  # noqa: E731
    assert watched(points) == watched(ref_points)
    assert fresh.watch is not None and reference.watch is not None
    assert fresh.watch.steps == reference.watch.steps and fresh.watch.points == reference.watch.points
    ours, theirs = fresh.watch.histograms.arrays(), reference.watch.histograms.arrays()
    assert ours.keys() == theirs.keys() and all(ours[k].tobytes() == theirs[k].tobytes() for k in ours)
    grown = [k for k, edges in at_checkpoint.items() if not np.array_equal(edges, ours[k])]
    assert grown  # ranges that doubled after the checkpoint, rebinning rows from before it: alike too
    assert {"activations/1.relu/counts", "gradients/0.linear.W/counts", "weights/6.linear.b/edges"} <= set(ours)
    assert math.isfinite(fresh.watch.points[-1]["watch/0.linear.W/update_ratio"])


# --------------------------------------------------------------------------- the config section


def test_the_config_section_composes_on_by_default_and_is_checked():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from runner.api import RunnerError
    from runner.plugins.configs import main_config_dir

    with initialize_config_dir(config_dir=str(main_config_dir()), version_base="1.3", job_name="test_watch"):
        default = compose(config_name="config", overrides=["+experiment=mnist"])
        off = compose(config_name="config", overrides=["watch.enabled=false", "watch.every=25"])
    config = WatchConfig(**OmegaConf.to_container(default.watch))  # type: ignore[arg-type]
    config.validate()
    assert config.enabled and config.interval(10_000) == 200  # the mnist recipe: 51 watched steps of 10000
    assert [s for s in range(1, 10_001) if config.due(s, 200, 10_000)][:3] == [1, 200, 400]
    assert not off.watch.enabled and WatchConfig(**OmegaConf.to_container(off.watch)).interval(10_000) == 25  # type: ignore[arg-type]
    with pytest.raises(RunnerError, match=r"watch.every: expected a positive number of steps"):
        WatchConfig(every=0).validate()


def test_watch_disabled_builds_no_watch():
    from runner.run.build import Built
    from runner.run.training import training_of

    model = build_model(
        mlp_layers([4], "relu", None, {"init": "he_normal"}), registry(), IRIS, np.random.default_rng(0), np.float32
    )
    built = Built(
        registry(), [], iris(), model, plugin("loss", "softmax_cross_entropy"), plugin("optimizer", "sgd", lr=0.1),
        TrainerConfig(epochs=1, batch_size=16), None, "val/accuracy", "maximize",
    )  # fmt: skip

    class Tracker:
        log_metrics = staticmethod(lambda metrics, step: None)

    assert training_of(built, Tracker(), None, np.random.SeedSequence(0)).watch is None  # Built's default: off
    built.watch = WatchConfig()
    watched = training_of(built, Tracker(), None, np.random.SeedSequence(0), np.random.SeedSequence(1))
    assert watched.watch is not None and watched.watch.interval == 1  # 10 steps: every one of them


# --------------------------------------------------------------------------- pictures, and a real run


def test_the_pictures_and_the_npz_are_drawn_from_a_watch(tmp_path):
    from runner.report import watch_pictures

    training, _ = mnist_like_training(watch=True, epochs=6)
    training.run()
    watch = training.watch
    assert watch is not None and watch.warnings  # iris' positive features kill most of 1.relu (dead_relu)
    drawn = {p.relative_to(tmp_path).as_posix() for p in watch_pictures.draw_all(watch, tmp_path)}
    assert drawn == {
        "plots/watch_weights.png",
        "plots/watch_gradients.png",
        "plots/watch_activations.png",
        "plots/gradient_flow.png",
        "watch/histograms.npz",
    }
    with np.load(tmp_path / "watch" / "histograms.npz", allow_pickle=False) as saved:
        steps = saved["steps"]
        assert steps.tolist() == watch.steps
        counts = saved["activations/1.relu/counts"]
        assert counts.shape == (len(steps), WatchConfig().bins + 2)
        assert set(counts.sum(axis=1)) == {16 * 16, 16 * (len(iris().train) % 16)}  # every entry of a batch's 16 units
        assert saved["weights/0.linear.W/edges"].shape == (WatchConfig().bins + 1,)
        assert saved["metrics/1.relu/dead_fraction"].tolist() == [p["watch/1.relu/dead_fraction"] for p in watch.points]
        assert math.isnan(saved["metrics/0.linear.b/update_ratio"][0])  # the bias started at 0: no ratio at step 1
    # what the sidecar draws from: the npz read back is what the watch held
    seen, read = (
        watch_pictures.Seen.of(watch),
        watch_pictures.Seen.load(tmp_path / "watch" / "histograms.npz", watch.warnings, watch.matrices),
    )
    assert read.steps == seen.steps and read.points == seen.points and read.warnings == seen.warnings
    for kind, arrays in seen.histograms.items():
        assert read.histograms[kind].keys() == arrays.keys()
        assert all(np.array_equal(read.histograms[kind][n][i], arrays[n][i]) for n in arrays for i in (0, 1))


def test_each_map_is_its_counts_through_the_colour_scale_at_its_corner_and_a_warning_is_marked_on_it(tmp_path):
    """A histogram picture's maps are written into its pixels: each panel's map, where ``_corner`` puts it, is exactly its
    counts through ``_paint`` (the colour scale of the picture's peak), but for the red column and label of a warning;
    the texts beside the maps leave them alone."""
    import matplotlib.image

    from runner.report import watch_pictures as wp

    training, _ = mnist_like_training(watch=True, epochs=6)
    training.run()
    watch = training.watch
    assert watch is not None
    seen = wp.Seen.of(watch)
    warned = [w for w in watch.warnings if w["name"] in seen.histograms["activations"]]
    assert warned  # iris' positive features kill most of 1.relu: its panel carries a red mark
    for kind, arrays in seen.histograms.items():
        path = wp.histograms_figure(kind, arrays, seen.steps, watch.warnings, tmp_path / f"{kind}.png")
        pixels = np.round(matplotlib.image.imread(path) * 255).astype(np.uint8)
        assert pixels.shape[1::-1] == wp._size(len(arrays)) and pixels.shape[2] == 4
        peak = max(int(counts.max()) for _, counts in arrays.values())
        for k, (name, (_, counts)) in enumerate(arrays.items()):
            left, top = wp._corner(k, min(len(arrays), 4))
            drawn = pixels[top : top + wp.MAP[1], left : left + wp.MAP[0]]
            expected = (wp._paint(counts[wp._columns(seen.steps, wp.MAP[0])], peak) * 255).astype(np.uint8)
            marked = wp.marks_for(watch.warnings, name)
            if not marked:
                assert np.array_equal(drawn, expected), (kind, name)
                continue
            differs = np.flatnonzero((drawn != expected).any(axis=(0, 2)))  # the pixel columns that differ
            red = np.flatnonzero((drawn[:, :, 0] > 200) & (drawn[:, :, 1] < 60)).size
            assert 0 < len(differs) < wp.MAP[0] // 3 and red > wp.MAP[1], (kind, name)  # its red column and label


@pytest.mark.parametrize("kind", ["in-process", "child-process"])
def test_the_pictures_are_drawn_where_mlflow_is_and_a_failed_one_is_a_warning(kind, tmp_path, caplog):
    """The run's process writes the npz and hands it on (``tracker.submit``): the pictures are drawn and logged where
    the writer is (the sidecar, or this process with ``tracking.sidecar=false``). A picture that fails is a warning
    and the tag runner.report.failed; the others are still logged, the run stays FINISHED."""
    from mlflow.tracking import MlflowClient

    from runner.report import artifacts, watch_pictures
    from runner.tracking.recorder import RunRecorder
    from runner.tracking.store import Target, default_store

    training, _ = mnist_like_training(watch=True, epochs=2)
    training.run()
    assert training.watch is not None
    uri, root = default_store(tmp_path / "outputs")
    where = Target(uri, root, "watch")
    make = RunRecorder.in_process if kind == "in-process" else RunRecorder.child_process
    tracker = make(where).start_run("a run")
    artifacts._watch(tracker, tmp_path / "report", training.watch)
    broken = tmp_path / "broken"
    watch_pictures.write_npz(training.watch, broken / "histograms.npz")
    tracker.submit(
        watch_pictures.log_watch_pictures,
        npz=str(broken / "histograms.npz"),
        warnings=[{"kind": "dead_relu", "name": "1.relu", "step": "not a step", "message": ""}],  # 1.relu's panel
        matrices=training.watch.matrices,
        plots=str(broken / "plots"),
    )
    tracker.end("FINISHED")
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("watch").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["runner.report.failed"] == "log_watch_pictures"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert logged == {f"plots/{name}.png" for name in watch_pictures.PICTURES}
    assert {p.name for p in (broken / "plots").iterdir()} == {"watch_weights.png", "watch_gradients.png", "gradient_flow.png"}
    assert "report: log_watch_pictures failed: RuntimeError: watch_activations" in caplog.text


@pytest.mark.slow
def test_a_mnist_run_carries_the_watch_metrics_pictures_and_counts(runner_cli, tmp_path):
    result = runner_cli("+experiment=mnist", "trainer.iterations=300")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("mnist")
    client = result.client()
    for key in (
        "watch/1.relu/dead_fraction",
        "watch/0.linear/mean",
        "watch/0.linear.W/grad_norm",
        "watch/2.linear.W/update_ratio",
    ):
        assert key in run.data.metrics, key
    history = client.get_metric_history(run.info.run_id, "watch/0.linear.W/weight_norm")
    assert [p.step for p in history][:2] == [1, 6] and history[-1].step == 300  # 300 steps: every 6th, about 50 points
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {f"plots/{n}.png" for n in ("watch_weights", "watch_gradients", "watch_activations", "gradient_flow")} <= plots
    local = client.download_artifacts(run.info.run_id, "watch/histograms.npz", str(tmp_path))
    with np.load(local, allow_pickle=False) as saved:
        assert len(saved["steps"]) == len(history) and "gradients/2.linear.W/counts" in saved.files
