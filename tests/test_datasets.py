"""Built-in datasets on real data: MNIST from ../shared/data, Iris, the synthetic sets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from runner.api import DataContext, RunnerError
from runner.builtins.datasets import (
    FashionMnistDataset,
    IrisBinaryDataset,
    IrisDataset,
    LinearDataset,
    MnistDataset,
    RegressionDataset,
    runner_datasets,
)
from runner.builtins.datasets.idx import read_idx

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def context(seed=0, data_dir=SHARED, dtype=np.float32):
    return DataContext(Path(data_dir), seed, np.dtype(dtype))


def test_hook_lists_every_dataset():
    names = [spec.name for spec in runner_datasets()]
    assert names == ["mnist", "fashion_mnist", "iris", "iris_binary", "linear", "regression", "spirals"]


# --------------------------------------------------------------------------- MNIST


@pytest.fixture(scope="module")
def mnist():
    return MnistDataset().load(context(seed=0))


def test_mnist_shapes_dtype_range(mnist):
    assert (mnist.train.x.shape, mnist.val.x.shape, mnist.test.x.shape) == ((55000, 784), (5000, 784), (10000, 784))
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
        assert split.x.min() == 0.0 and split.x.max() == 1.0
    assert mnist.meta.input_shape == (784,) and mnist.meta.output_size == 10
    assert mnist.meta.task == "classification" and mnist.meta.classes == tuple("0123456789")


def test_mnist_label_counts_match_readme(mnist):
    train_and_val = np.concatenate([mnist.train.y, mnist.val.y])
    assert np.bincount(train_and_val, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test.y, minlength=10).tolist() == TEST_COUNTS


def test_mnist_split_is_seeded(mnist):
    again = MnistDataset(val_size=5000).load(context(seed=0))
    np.testing.assert_array_equal(again.val.x, mnist.val.x)
    np.testing.assert_array_equal(again.train.y, mnist.train.y)
    other = MnistDataset(data_dir=str(SHARED), val_size=1000).load(context(seed=1))
    assert len(other.val) == 1000 and len(other.train) == 59000
    assert not np.array_equal(other.val.y, mnist.val.y[:1000])
    np.testing.assert_array_equal(other.test.x, mnist.test.x)


def test_mnist_checksum_mismatch_names_file(tmp_path):
    home = tmp_path / "mnist"
    home.mkdir()
    for f in MNIST_DIR.iterdir():
        (home / f.name).symlink_to(f)
    labels = home / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[100] = (data[100] + 1) % 10  # still a valid IDX file, different content
    labels.unlink()
    labels.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(RunnerError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch.*expected ff7bcfd4"):
        MnistDataset(data_dir=str(tmp_path)).load(context())
    loaded = MnistDataset(data_dir=str(tmp_path), verify=False, val_size=0).load(context())
    assert len(loaded.val) == 0 and loaded.test.y[92] == data[100]


def test_mnist_reads_plain_idx(tmp_path):
    home = tmp_path / "mnist"
    home.mkdir()
    for f in MNIST_DIR.iterdir():
        if f.name.startswith("t10k"):
            (home / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
        else:
            (home / f.name).symlink_to(f)
    splits = MnistDataset(data_dir=str(tmp_path)).load(context())
    assert np.bincount(splits.test.y).tolist() == TEST_COUNTS


@pytest.mark.parametrize(
    "options, message",
    [
        ({"val_size": -1}, "val_size: expected a whole number >= 0"),
        ({"val_size": 1.5}, "val_size"),
        ({"verify": "yes"}, "verify: expected true or false"),
        ({"timeout": 0}, "timeout"),
        ({"mirrors": ["http://example.com/mnist/"]}, "only https"),
    ],
)
def test_mnist_rejects_bad_options(options, message):
    with pytest.raises(RunnerError, match=message):
        MnistDataset(**options)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(tmp_path):
    splits = FashionMnistDataset(val_size=6000).load(context(data_dir=tmp_path))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
    assert np.bincount(np.concatenate([splits.train.y, splits.val.y])).tolist() == [6000] * 10
    assert np.bincount(splits.test.y).tolist() == [1000] * 10
    assert splits.meta.name == "fashion_mnist" and splits.meta.classes[0] == "T-shirt/top"
    assert splits.meta.classes[-1] == "Ankle boot" and 0 <= splits.test.x.min() < splits.test.x.max() <= 1
    assert not list(tmp_path.iterdir())  # nothing downloaded


# --------------------------------------------------------------------------- corrupt IDX


@pytest.fixture
def labels_raw():
    return gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())


def test_read_idx_reads_header_shape(labels_raw, tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(labels_raw)
    labels = read_idx(path, ndim=1)
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes((MNIST_DIR / path.name).read_bytes()[:50_000])
    with pytest.raises(RunnerError, match=rf"{path}: truncated gzip stream"):
        read_idx(path)


def test_corrupt_gzip(tmp_path, labels_raw):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    gz = bytearray(gzip.compress(labels_raw))
    gz[-8:-4] = b"\0\0\0\0"  # CRC
    path.write_bytes(bytes(gz))
    with pytest.raises(RunnerError, match=rf"{path}: corrupt gzip data"):
        read_idx(path)


def test_wrong_magic(tmp_path, labels_raw):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x12\x34" + labels_raw[2:]))
    with pytest.raises(RunnerError, match=rf"{path}: not an IDX file: magic number 12340801"):
        read_idx(path)


def test_unknown_dtype_code(tmp_path, labels_raw):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(b"\0\0\x07" + labels_raw[3:]))
    with pytest.raises(RunnerError, match=rf"{path}: unknown IDX dtype code 0x07"):
        read_idx(path)


def test_wrong_number_of_dims(tmp_path, labels_raw):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(labels_raw))
    with pytest.raises(RunnerError, match=rf"{path}: header says 1 dimensions, expected 3"):
        read_idx(path, ndim=3)


def test_fewer_bytes_than_header_says(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress((MNIST_DIR / path.name).read_bytes())
    path.write_bytes(gzip.compress(raw[: 16 + 1234], compresslevel=1))
    message = rf"{path}: truncated: header says 10000 records of 28x28 uint8 \(7840000 bytes of data\), file holds 1234 bytes"
    with pytest.raises(RunnerError, match=message):
        read_idx(path)


def test_trailing_bytes(tmp_path, labels_raw):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(labels_raw + b"extra"))
    with pytest.raises(
        RunnerError, match=r"trailing data: header says 10000 records uint8 \(10000 bytes of data\), file holds 10005"
    ):
        read_idx(path)


def test_corrupt_file_in_data_dir_names_it(tmp_path):
    home = tmp_path / "mnist"
    home.mkdir()
    for f in MNIST_DIR.iterdir():
        (home / f.name).symlink_to(f)
    bad = home / "train-labels-idx1-ubyte.gz"
    data = bad.read_bytes()
    bad.unlink()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunnerError, match=rf"{bad}: truncated gzip stream"):
        MnistDataset(data_dir=str(tmp_path), verify=False).load(context())


# --------------------------------------------------------------------------- Iris


@pytest.mark.parametrize("cls", [IrisDataset, IrisBinaryDataset])
def test_iris_split_sizes_and_stratification(cls):
    splits = cls().load(context(seed=3))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 30, 30)
    for split in (splits.train, splits.val, splits.test):
        assert split.x.shape == (len(split), 4) and split.x.dtype == np.float32
        assert split.y.shape == (len(split),) and split.y.dtype == np.int64
    if cls is IrisDataset:
        assert [np.bincount(s.y).tolist() for s in (splits.train, splits.val, splits.test)] == [[30] * 3, [10] * 3, [10] * 3]
        assert splits.meta.classes == ("Iris-setosa", "Iris-versicolor", "Iris-virginica")
        assert (splits.meta.output_size, splits.meta.task) == (3, "classification")
    else:
        assert [int(s.y.sum()) for s in (splits.train, splits.val, splits.test)] == [30, 10, 10]
        assert (splits.meta.output_size, splits.meta.task) == (1, "binary")
        assert set(np.unique(splits.train.y)) == {0, 1}


def test_iris_is_the_whole_table_unstandardized():
    splits = IrisDataset().load(context(seed=0, dtype=np.float64))
    x = np.concatenate([splits.train.x, splits.val.x, splits.test.x])
    assert len(np.unique(x, axis=0)) == 147  # the UCI file has 3 duplicated rows
    np.testing.assert_allclose(x.mean(axis=0), [5.843, 3.054, 3.759, 1.199], atol=5e-4)


def test_iris_binary_labels_setosa_by_its_petals():
    splits = IrisBinaryDataset().load(context())
    x = np.concatenate([splits.train.x, splits.val.x, splits.test.x])
    y = np.concatenate([splits.train.y, splits.val.y, splits.test.y])
    assert ((x[:, 2] < 2.5) == (y == 1)).all()  # setosa: petal length < 2.5 cm


def test_iris_split_reproducible_and_seeded():
    a, b, c = (IrisDataset().load(context(seed=s)) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.train.x, c.train.x)


def test_iris_fractions_and_standardize():
    splits = IrisDataset(val_fraction=0.1, test_fraction=0.3, standardize=True).load(context())
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 15, 45)
    np.testing.assert_allclose(splits.train.x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(splits.train.x.std(axis=0), 1, atol=1e-5)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"val_fraction": 1.2}, r"val_fraction: expected a number in \[0, 1\), got 1.2"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction"),
        ({"standardize": "no"}, "standardize"),
    ],
)
def test_iris_rejects_bad_options(options, message):
    with pytest.raises(RunnerError, match=message):
        IrisDataset(**options)


# --------------------------------------------------------------------------- synthetic


def test_linear_exact_on_test_noisy_on_train():
    splits = LinearDataset(noise=0.5).load(context(seed=2))
    for split, n in ((splits.train, 200), (splits.val, 50), (splits.test, 50)):
        assert split.x.shape == split.y.shape == (n, 1) and split.x.dtype == np.float32
        assert -10 <= split.x.min() and split.x.max() <= 10
    np.testing.assert_array_equal(splits.test.y, 2 * splits.test.x + 1)
    assert 0.3 < np.std(splits.train.y - (2 * splits.train.x + 1)) < 0.7
    assert (splits.meta.task, splits.meta.output_size, splits.meta.input_shape) == ("regression", 1, (1,))


def test_linear_options_and_seed():
    a = LinearDataset(slope=-3.0, intercept=0.5, low=0.0, high=1.0).load(context(seed=1))
    np.testing.assert_allclose(a.train.y, -3 * a.train.x + 0.5, rtol=1e-6)
    assert 0 <= a.train.x.min() and a.train.x.max() <= 1
    b = LinearDataset(slope=-3.0, intercept=0.5, low=0.0, high=1.0, n_train=10).load(context(seed=1))
    np.testing.assert_array_equal(a.test.x, b.test.x)  # one split's size leaves the others alone
    c = LinearDataset().load(context(seed=2))
    assert not np.array_equal(LinearDataset().load(context(seed=1)).train.x, c.train.x)
    with pytest.raises(RunnerError, match="low, high: expected low < high"):
        LinearDataset(low=1.0, high=1.0)


def test_regression_shapes_and_teacher():
    splits = RegressionDataset(inputs=5, outputs=2, n_train=100, n_val=20, n_test=30).load(context(seed=4))
    assert splits.train.x.shape == (100, 5) and splits.train.y.shape == (100, 2)
    assert splits.val.x.shape == (20, 5) and splits.test.y.shape == (30, 2)
    assert splits.meta == splits.meta.__class__("regression", (5,), 2, "regression")
    assert splits.test.y.std() > 0.1  # the teacher is not trivial
    again = RegressionDataset(inputs=5, outputs=2, n_train=100, n_val=20, n_test=30).load(context(seed=4))
    np.testing.assert_array_equal(again.train.y, splits.train.y)


def test_regression_targets_are_learnable():
    """Even a linear least-squares fit on train explains most of the noise-free test targets."""
    splits = RegressionDataset(noise=0.0).load(context(seed=7, dtype=np.float64))

    def design(x):
        return np.hstack([x, np.ones((len(x), 1))])

    w, *_ = np.linalg.lstsq(design(splits.train.x), splits.train.y, rcond=None)
    residual = splits.test.y - design(splits.test.x) @ w
    r2 = 1 - residual.var(axis=0) / splits.test.y.var(axis=0)
    assert (r2 > 0.5).all()


def test_spirals_arms_lie_on_their_spirals():
    from runner.builtins.datasets.synthetic import SpiralsDataset

    splits = SpiralsDataset(classes=3, noise=0.0).load(context(seed=4))
    assert splits.meta == splits.meta.__class__("spirals", (2,), 3, "classification", ("arm 0", "arm 1", "arm 2"))
    x, y = splits.train.x.astype(np.float64), splits.train.y
    assert splits.train.x.dtype == np.float32
    assert sorted(set(y.tolist())) == [0, 1, 2] and len(y) == 300
    r = np.hypot(x[:, 0], x[:, 1])  # r = t, angle = 4 t + 2 pi k / 3: recover k from the point alone
    k = np.round((np.arctan2(x[:, 0], x[:, 1]) - 4 * r) / (2 * np.pi / 3)) % 3
    np.testing.assert_array_equal(k, y)
    again = SpiralsDataset(classes=3, noise=0.0).load(context(seed=4))
    np.testing.assert_array_equal(again.test.x, splits.test.x)
    assert not np.array_equal(SpiralsDataset().load(context(seed=5)).train.x, SpiralsDataset().load(context(seed=4)).train.x)
