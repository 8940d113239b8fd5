"""Convolution and pooling: values and every gradient against PyTorch float64 over a grid of shapes,
strides, paddings and batch sizes; im2col/col2im as adjoints; max-pooling's ties as kinks; float32;
the options' one-line errors; images handed to a model that starts with a convolution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from runner.api import Meta, RunnerError, Split, Splits
from runner.builtins import layers as L
from runner.builtins.layers.conv import col2im, im2col
from runner.core.gradcheck import check_layer
from runner.core.model import build_model, layer_configs, shaped_for
from runner.run.build import step_flops
from runner.testing import plugin_registry

TORCH_ATOL = 1e-10


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is a test-only dependency: the reference the layers are compared with")


def built(layer, x):
    layer.build(x.shape[1:], np.random.default_rng(1), np.dtype(np.float64))
    return layer


def close(ours, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TORCH_ATOL)


# (batch, channels, h, w, out, kernel, stride, padding): batch 1, odd sizes, a kernel as large as the
# input, non-square kernels, strides that leave pixels out, padding larger than the stride
CONV_GRID = [
    (1, 1, 5, 5, 2, 5, 1, 0),  # kernel = input size: one output pixel
    (2, 3, 7, 6, 4, 3, 1, 1),
    (3, 2, 8, 9, 5, 3, 2, 1),
    (2, 2, 6, 6, 3, 2, 2, 0),
    (1, 4, 5, 7, 3, (2, 3), (1, 2), (0, 1)),
    (4, 1, 28, 28, 8, 5, 1, 2),
    (5, 3, 9, 9, 2, 3, 3, 0),  # stride = kernel
    (2, 2, 7, 5, 3, 4, 2, 2),  # padding = kernel / 2, stride leaves the last column out
    (1, 3, 3, 3, 1, 1, 1, 0),  # a 1x1 convolution
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("case", CONV_GRID, ids=lambda c: "x".join(map(str, c[:4])) + f"-k{c[5]}s{c[6]}p{c[7]}")
def test_conv2d_matches_torch(torch, case, bias):
    n, c, h, w, out, kernel, stride, padding = case
    rng = np.random.default_rng(sum(map(hash, map(str, case))) % 2**32)
    x = rng.standard_normal((n, c, h, w))
    layer = built(L.Conv2D(out, kernel=kernel, stride=stride, padding=padding, bias=bias, init="torch"), x)
    if bias:
        layer.params["b"][...] = rng.standard_normal(out)
    y = layer.forward(x, training=True)
    dout = rng.standard_normal(y.shape)
    dx = layer.backward(dout)

    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(layer.params["W"], requires_grad=True)
    bt = torch.tensor(layer.params["b"], requires_grad=True) if bias else None
    yt = torch.nn.functional.conv2d(xt, Wt, bt, stride=stride, padding=padding)
    yt.backward(torch.tensor(dout))
    close(y, yt)
    close(dx, xt.grad)
    close(layer.grads["W"], Wt.grad)
    if bias:
        close(layer.grads["b"], bt.grad)
    assert set(layer.params) == ({"W", "b"} if bias else {"W"})


# (batch, channels, h, w, kernel, stride, padding)
POOL_GRID = [
    (2, 3, 8, 8, 2, None, 0),
    (1, 2, 7, 7, 3, 2, 1),
    (2, 1, 5, 6, 2, 1, 1),
    (3, 2, 6, 6, 6, None, 0),  # one window over the whole image
    (1, 1, 9, 7, (3, 2), (2, 1), (1, 0)),
    (4, 2, 7, 7, 2, None, 0),  # odd size: the last row and column are left out, as torch does
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_GRID, ids=lambda c: "x".join(map(str, c[:4])) + f"-k{c[4]}s{c[5]}p{c[6]}")
def test_pooling_matches_torch(torch, kind, case):
    n, c, h, w, kernel, stride, padding = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, h, w))
    cls, fn = (L.MaxPool2D, torch.nn.functional.max_pool2d) if kind == "max" else (L.AvgPool2D, torch.nn.functional.avg_pool2d)
    layer = built(cls(kernel=kernel, stride=stride, padding=padding), x)
    y = layer.forward(x, training=True)
    dout = rng.standard_normal(y.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    yt = fn(xt, kernel, stride, padding)
    yt.backward(torch.tensor(dout))
    close(y, yt)
    close(dx, xt.grad)
    assert y.shape[1:] == layer.build(x.shape[1:], None, np.dtype(np.float64))


def test_max_pool_ties_go_to_the_first_entry_as_in_torch(torch):
    """Equal values in a window (ReLU's zeros are everywhere): the gradient goes to the first, row-major."""
    x = np.zeros((2, 2, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 1.0  # a tie of ones in the first window
    layer = built(L.MaxPool2D(2), x)
    dout = np.arange(16.0).reshape(2, 2, 2, 2)
    layer.forward(x, training=True)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 2).backward(torch.tensor(dout))
    close(dx, xt.grad)
    assert dx[0, 0, 0, 1] == 0.0 and dx[0, 0, 1, 1] == 0.0 or dx[0, 0, 0, 1] == dout[0, 0, 0, 0]


def test_max_pool_ties_are_kinks_the_gradient_check_skips():
    """A tie is where max is not differentiable: those entries are skipped (counted), the rest still match."""
    rng = np.random.default_rng(0)
    layer = L.MaxPool2D(2)
    layer.build((2, 4, 4), rng, np.dtype(np.float64))
    x = rng.standard_normal((3, 2, 4, 4))
    x[:, :, 0, 1] = x[:, :, 0, 0]  # ties in every first window
    x[:, :, 0, 0] = x[:, :, :2, :2].max(axis=(2, 3)) + 0.0  # ... at the window's largest value
    x[:, :, 0, 1] = x[:, :, 0, 0]
    from runner.core.gradcheck import check_layer_at

    checks = check_layer_at(layer, x, True, 1e-6, None, rng)
    assert checks["x"].kinks >= 2 * 3 * 2  # both tied entries of every first window
    assert checks["x"].rel_error < 1e-7


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (1, 2, 3, 4), (6, 1, 2, 2)])
def test_batchnorm2d_matches_torch(torch, shape, training):
    rng = np.random.default_rng(3)
    x = 2.0 + 3.0 * rng.standard_normal(shape)
    layer = built(L.BatchNorm2D(momentum=0.2), x)
    bn = torch.nn.BatchNorm2d(shape[1], momentum=0.2).double()
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    layer.params["gamma"][...], layer.params["beta"][...] = gamma, beta
    bn.weight.data, bn.bias.data = torch.tensor(gamma), torch.tensor(beta)
    if not training:  # running statistics of a few earlier batches
        for k in range(3):
            warm = rng.standard_normal(shape) + k
            layer.forward(warm, training=True)
            bn.train()(torch.tensor(warm))
    bn.train(training)
    y = layer.forward(x, training=training)
    dout = rng.standard_normal(shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    yt = bn(xt)
    yt.backward(torch.tensor(dout))
    close(y, yt)
    close(dx, xt.grad)
    close(layer.grads["gamma"], bn.weight.grad)
    close(layer.grads["beta"], bn.bias.grad)
    close(layer.buffers["running_mean"], bn.running_mean)
    close(layer.buffers["running_var"], bn.running_var)


def test_global_avg_pool_matches_torch(torch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 6))
    layer = built(L.GlobalAvgPool(), x)
    y = layer.forward(x, training=True)
    dout = rng.standard_normal(y.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, 1).flatten(1)
    yt.backward(torch.tensor(dout))
    close(y, yt)
    close(dx, xt.grad)


@pytest.mark.parametrize("case", CONV_GRID[:5], ids=lambda c: "x".join(map(str, c[:4])))
def test_conv2d_backward_matches_central_differences(case):
    n, c, h, w, out, kernel, stride, padding = case
    layer = L.Conv2D(out, kernel=kernel, stride=stride, padding=padding)
    checks = check_layer(layer, (c, h, w), batch=n, training=True)
    assert set(checks) == {"x", "W", "b"}
    for key, check in checks.items():
        assert check.rel_error <= 1e-7, (key, check)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 0), (2, 2, 0), ((2, 3), (1, 2), (1, 1)), (5, 1, 2)], ids=str)
def test_col2im_is_the_adjoint_of_im2col(kernel, stride, padding):
    """<im2col(x), c> = <x, col2im(c)> for all x, c: backward of a convolution is exactly its transpose."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 7, 6))
    k, s, p = (L.conv.pair("k", v, 0) for v in (kernel, stride, padding))
    cols = im2col(x, k, s, p)
    c = rng.standard_normal(cols.shape)
    assert np.isclose(np.sum(cols * c), np.sum(x * col2im(c, x.shape, k, s, p)), rtol=1e-12)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: L.Conv2D(4, kernel=3, padding=1), (2, 6, 6)),
        (lambda: L.MaxPool2D(2), (2, 6, 6)),
        (lambda: L.AvgPool2D(3, stride=2, padding=1), (2, 6, 6)),
        (L.GlobalAvgPool, (2, 6, 6)),
        (L.BatchNorm2D, (2, 6, 6)),
    ],
    ids=["conv2d", "maxpool2d", "avgpool2d", "global_avg_pool", "batchnorm2d"],
)
def test_float32_in_float32_out(make, shape):
    layer = make()
    out = layer.build(shape, np.random.default_rng(0), np.dtype(np.float32))
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32 and y.shape == (3, *out)
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    assert all(g.dtype == np.float32 for g in layer.grads.values())


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: L.Conv2D(0), "out: expected a positive integer number of channels, got 0"),
        (
            lambda: L.Conv2D(4, kernel=[3, 3, 3]),
            "kernel: expected a whole number >= 1 or a list of two, [height, width], got [3, 3, 3]",
        ),
        (lambda: L.Conv2D(4, stride=0), "stride: expected a whole number >= 1 or a list of two, [height, width], got 0"),
        (lambda: L.Conv2D(4, padding=-1), "padding: expected a whole number >= 0 or a list of two, [height, width], got -1"),
        (lambda: L.Conv2D(4, init="he"), "init: expected one of normal, he_normal, he_uniform, xavier_normal"),
        (lambda: L.MaxPool2D(2, padding=2), "padding: expected at most half the kernel [2, 2], got [2, 2]"),
        (
            lambda: L.Conv2D(4, kernel=7).build((1, 5, 5), None, np.float64),
            "conv2d: the kernel (7) is larger than the padded input (5 + 2 x 0)",
        ),
        (lambda: L.Conv2D(4).build((784,), None, np.float64), "conv2d: expected images of (channels, height, width), got 784"),
        (
            lambda: L.MaxPool2D().build((8, 8), None, np.float64),
            "maxpool2d: expected images of (channels, height, width), got 8x8",
        ),
    ],
    ids=["out", "kernel", "stride", "padding", "init", "pool-padding", "kernel-too-large", "flat-input", "2d-input"],
)
def test_bad_options_and_shapes_are_one_line(make, message):
    with pytest.raises(RunnerError) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- images for a model that starts with a convolution

MNIST_LIKE = Meta("digits", (64,), 3, "classification", ("a", "b", "c"), image_shape=(1, 8, 8))


def test_a_conv_model_gets_the_datasets_images_and_an_mlp_the_flat_vectors():
    registry = plugin_registry()
    cnn = {
        "type": "cnn",
        "channels": [4, 8],
        "kernel": 3,
        "padding": 1,
        "pool": "maxpool2d",
        "activation": "relu",
        "hidden": [16],
    }
    model = build_model(layer_configs(cnn, registry), registry, MNIST_LIKE, np.random.default_rng(0), np.float32)
    assert model.shapes[0] == (1, 8, 8) and model.types[:4] == ["conv2d", "relu", "maxpool2d", "conv2d"]
    assert model.summary() == "1x8x8-4x8x8-8x4x4-16-3"
    mlp = {"type": "mlp", "hidden": [16], "activation": "relu", "linear": {}}
    flat = build_model(layer_configs(mlp, registry), registry, MNIST_LIKE, np.random.default_rng(0), np.float32)
    assert flat.shapes[0] == (64,)

    x = np.random.default_rng(0).random((10, 64), dtype=np.float32)
    split = Split(x, np.zeros(10, dtype=np.int64))
    splits = Splits(split, split, split, MNIST_LIKE)
    images = shaped_for(model, splits)
    assert images.train.x.shape == (10, 1, 8, 8) and np.shares_memory(images.train.x, x)  # a view, no copy
    assert shaped_for(flat, splits) is splits
    assert model.forward(images.test.x, training=False).shape == (10, 3)


def test_a_conv_layer_on_data_without_an_image_shape_is_one_line():
    registry = plugin_registry()
    tabular = Meta("iris", (4,), 3, "classification")
    with pytest.raises(
        RunnerError,
        match=r"^model.layers\[0\] \(conv2d\): takes images of \(channels, height, width\), but dataset 'iris' gives "
        r"samples of 4 and no image shape",
    ):
        build_model([{"type": "conv2d", "out": 2}], registry, tabular, np.random.default_rng(0), np.float32)


def test_cnn_options_are_checked_by_name():
    registry = plugin_registry()
    base = {"type": "cnn", "channels": [4], "kernel": 3, "padding": 1, "pool": None, "activation": "relu", "hidden": []}
    with pytest.raises(
        RunnerError, match=r"model.channels: expected a list of positive widths, e.g. model.channels=\[16,32\], got 'abc'"
    ):
        layer_configs({**base, "channels": "abc"}, registry)
    with pytest.raises(RunnerError, match=r"model.channels\[1\]: expected a positive integer width, got 0"):
        layer_configs({**base, "channels": [4, 0]}, registry)
    with pytest.raises(RunnerError, match=r"model.pool: layer 'maxpool' is not registered \(did you mean 'maxpool2d'\?\)"):
        layer_configs({**base, "pool": "maxpool"}, registry)
    missing = {k: v for k, v in base.items() if k != "channels"}
    with pytest.raises(RunnerError, match=r"model.channels: missing for a cnn model"):
        layer_configs(missing, registry)


def test_step_flops_count_the_convolutions():
    """A ConvNet's matrix products are in its convolutions: the BLAS-thread rule must see them."""
    registry = plugin_registry()
    layers = [{"type": "conv2d", "out": 8, "kernel": 3, "padding": 1}, {"type": "flatten"}, {"type": "linear", "out": "auto"}]
    model = build_model(layers, registry, MNIST_LIKE, np.random.default_rng(0), np.float32)
    conv = 2 * 8 * 8 * 9 * 8  # per sample: out pixels x fan-in x out channels, 2 FLOPs each
    dense = 2 * 8 * 8 * 8 * 3
    assert step_flops(model, 10) == pytest.approx(3 * 10 * (conv + dense))


@pytest.mark.parametrize("n,c,h,w", list(itertools.product([1, 3], [1, 2], [5], [6])))
def test_conv_then_pool_backward_in_a_model_matches_central_differences(n, c, h, w):
    """The layers in a chain, as the run's gradient check sees them (ReLU and max-pool kinks skipped)."""
    from runner.core.gradcheck import check_layers

    registry = plugin_registry()
    meta = Meta("tiny", (c * h * w,), 2, "classification", ("a", "b"), image_shape=(c, h, w))
    layers = [
        {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1},
        {"type": "batchnorm2d"},
        {"type": "relu"},
        {"type": "maxpool2d"},
        {"type": "conv2d", "out": 2, "kernel": 2, "bias": False},
        {"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1},
        {"type": "global_avg_pool"},
        {"type": "linear", "out": "auto"},
    ]
    model = build_model(layers, registry, meta, np.random.default_rng(0), np.float64)
    x = np.random.default_rng(1).standard_normal((max(n, 2), c, h, w))
    for checks in check_layers(model, x):
        for key, check in checks.items():
            assert check.rel_error <= 1e-7, (key, check)


# --------------------------------------------------------------------------- the report's pictures of a ConvNet


def test_filters_and_feature_maps_are_drawn_from_the_model(tmp_path):
    from PIL import Image

    from runner.report import conv_pictures

    registry = plugin_registry()
    cnn = {"type": "cnn", "channels": [5, 7], "kernel": 3, "padding": 1, "pool": "maxpool2d", "activation": "relu", "hidden": []}
    model = build_model(layer_configs(cnn, registry), registry, MNIST_LIKE, np.random.default_rng(0), np.float32)
    assert conv_pictures.conv_layers(model) == [(0, "0.conv2d"), (3, "3.conv2d")]
    before = conv_pictures.first_filters(model)
    assert before.shape == (5, 1, 3, 3) and before is not model.layers[0].params["W"]
    images = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    maps = conv_pictures.feature_maps(model, images)
    assert [(label, m.shape) for label, m in maps] == [("0.conv2d", (3, 5, 8, 8)), ("3.conv2d", (3, 7, 4, 4))]
    assert np.array_equal(maps[0][1], model.layers[0].forward(images, training=False))
    filters = conv_pictures.filters_figure(before, before * 2 + 1, "0.conv2d", tmp_path / "filters.png")
    drawn = conv_pictures.feature_maps_figure(images, maps, tmp_path / "maps.png")
    for path in (filters, drawn):
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.size[0] > 300
    # each tile is scaled to its own range: a filter and its scaled copy look the same
    assert np.array_equal(conv_pictures._scaled(before[0, 0]), conv_pictures._scaled(before[0, 0] * 2 + 1))
    mlp = build_model([{"type": "linear", "out": "auto"}], registry, MNIST_LIKE, np.random.default_rng(0), np.float32)
    assert conv_pictures.conv_layers(mlp) == [] and conv_pictures.first_filters(mlp) is None


def test_a_convnet_evaluates_in_chunks_of_bounded_memory():
    """A ConvNet's widest layer holds ~160 KB a sample: ~200 rows a chunk, not 8192 (1.3 GB); the same scores."""
    from runner.builtins.losses import SoftmaxCrossEntropy
    from runner.core import evaluation

    registry = plugin_registry()
    meta = Meta("mnist", (784,), 10, "classification", tuple("0123456789"), image_shape=(1, 28, 28))
    cnn = {
        "type": "cnn",
        "channels": [16, 32],
        "kernel": 3,
        "padding": 1,
        "pool": "maxpool2d",
        "activation": "relu",
        "hidden": [128],
    }
    model = build_model(layer_configs(cnn, registry), registry, meta, np.random.default_rng(0), np.float32)
    rows = evaluation.eval_rows(model)
    assert 50 <= rows <= 250
    mlp = build_model(
        [{"type": "linear", "out": 512}, {"type": "linear", "out": "auto"}], registry, meta, np.random.default_rng(0), np.float32
    )
    assert evaluation.eval_rows(mlp) == evaluation.EVAL_ROWS  # an MLP's chunks (and results) are as before
    rng = np.random.default_rng(1)
    split = Split(rng.random((450, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 450))
    chunked = evaluation.evaluate(model, SoftmaxCrossEntropy(), split, meta, 100)
    whole = model.forward(split.x, training=False)
    assert chunked["accuracy"] == np.mean(whole.argmax(axis=1) == split.y)


def test_a_graph_whose_first_node_is_a_convolution_gets_images_and_passes_the_gradient_check():
    """A residual ConvNet as a graph: conv -> relu -> conv, added to the first block's output (a skip)."""
    from runner.core.gradcheck import check_run, failure_message

    registry = plugin_registry()
    meta = Meta("tiny", (2 * 6 * 6,), 3, "classification", ("a", "b", "c"), image_shape=(2, 6, 6))
    nodes = [
        {"name": "c1", "type": "conv2d", "out": 3, "kernel": 3, "padding": 1, "inputs": ["x"]},
        {"name": "a1", "type": "relu", "inputs": ["c1"]},
        {"name": "c2", "type": "conv2d", "out": 3, "kernel": 3, "padding": 1, "inputs": ["a1"]},
        {"name": "skip", "type": "add", "inputs": ["c2", "a1"]},
        {"name": "pool", "type": "global_avg_pool", "inputs": ["skip"]},
        {"name": "out", "type": "linear", "out": "auto", "inputs": ["pool"]},
    ]
    config = layer_configs({"type": "graph", "nodes": nodes, "output": "out"}, registry)
    model = build_model(config, registry, meta, np.random.default_rng(0), np.float64)
    assert model.shapes[0] == (2, 6, 6) and model.shapes[-1] == (3,)
    x = np.random.default_rng(1).standard_normal((4, 72))
    splits = shaped_for(model, Splits(Split(x, np.zeros(4, np.int64)), Split(x, np.zeros(4)), Split(x, np.zeros(4)), meta))
    assert splits.train.x.shape == (4, 2, 6, 6)
    loss = registry.get("loss", "softmax_cross_entropy", "test").create({}, "test")
    rows = check_run(model, loss, splits.train.x, np.array([0, 1, 2, 0]), eps=1e-6, max_entries=64, seed=0, loss_name="sce")
    assert {"gradcheck/c1.conv2d.x", "gradcheck/skip.add.x1", "gradcheck/model/c2.conv2d.W"} <= {r.metric for r in rows}
    assert failure_message(rows, 1e-6, {}) is None, [(r.metric, r.check.rel_error) for r in rows]
    # a graph reading flat data with a dense node first keeps the flat vectors
    dense = [{"name": "h", "type": "linear", "out": "auto", "inputs": ["x"]}]
    flat = build_model(
        layer_configs({"type": "graph", "nodes": dense, "output": "h"}, registry),
        registry,
        meta,
        np.random.default_rng(0),
        np.float64,
    )
    assert flat.shapes[0] == (72,)
