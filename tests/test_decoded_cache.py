"""The decoded cache of IDX datasets (plugins/datasets/decoded.py, issue 19): written once, used after,
never trusted -- a damaged, stale or tampered entry is rebuilt -- and never a reason for a run to fail.

Small synthetic IDX files where the format is what matters; a copy of the real MNIST where ``verify``
and the splits are."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from runner.api import DataContext
from runner.builtins.datasets import MnistDataset, decoded
from runner.builtins.datasets.idx import DTYPES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]
CODES = {dtype: code for code, dtype in DTYPES.items()}


def idx_content(array: np.ndarray) -> bytes:
    """The IDX file of ``array``: magic, dtype code, dimensions, shape, then the big-endian data."""
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return bytes([0, 0, CODES[array.dtype], array.ndim]) + dims + array.tobytes()


def write_gz(path: Path, array: np.ndarray) -> bytes:
    content = idx_content(array)
    path.write_bytes(gzip.compress(content, compresslevel=1))
    return content


@pytest.fixture
def images(tmp_path) -> tuple[Path, np.ndarray]:
    """A gzipped IDX file of 50 random 28x28 uint8 images, in a folder of its own."""
    array = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "images-idx3-ubyte.gz"
    write_gz(path, array)
    return path, array


def entry(path: Path) -> tuple[Path, Path]:
    """The .npy and .json of ``path`` in its folder's .decoded/."""
    stem = path.name.removesuffix(".gz")
    return path.parent / ".decoded" / f"{stem}.npy", path.parent / ".decoded" / f"{stem}.json"


def read(path: Path, ndim: int | None = 3, **kw) -> decoded.Decoded:
    return decoded.read(path, ndim, path.parent / ".decoded", **kw)


# --------------------------------------------------------------------------- written once, used after


def test_first_load_writes_the_entry_and_the_second_uses_it(images, caplog):
    path, array = images
    caplog.set_level(logging.DEBUG, logger="runner.data")
    first = read(path)
    npy, key = entry(path)
    assert not first.cached and npy.is_file() and key.is_file()
    assert f"{path}: decoded into {npy}" in caplog.text and "from the decoded cache" not in caplog.text
    caplog.clear()
    second = read(path)
    assert second.cached and f"{path}: from the decoded cache {npy}" in caplog.text
    assert "decoded into" not in caplog.text
    for got in (first, second):
        assert got.array.dtype == np.uint8 and got.array.shape == (50, 28, 28) and not got.array.flags.writeable
        assert got.array.tobytes() == array.tobytes() and type(got.array) is np.ndarray
        assert got.sha256 == hashlib.sha256(idx_content(array)).hexdigest()  # what verify compares
    assert sorted(p.name for p in npy.parent.iterdir()) == [key.name, npy.name]  # no temporary files left


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">f4", ">f8", "i1"])
def test_every_idx_dtype_round_trips_big_endian(tmp_path, dtype):
    array = (np.arange(-30, 30).reshape(6, 10) * 1.5).astype(dtype)
    path = tmp_path / "values.gz"
    content = write_gz(path, array)
    cold, warm = read(path, 2), read(path, 2)
    assert warm.cached and warm.array.dtype == np.dtype(dtype) and warm.array.shape == (6, 10)
    assert warm.array.tobytes() == cold.array.tobytes() == array.tobytes()
    assert warm.sha256 == cold.sha256 == hashlib.sha256(content).hexdigest()


def test_plain_idx_files_and_cache_off_write_nothing(tmp_path, images):
    path, array = images
    plain = tmp_path / "data" / "plain-idx3-ubyte"
    plain.write_bytes(idx_content(array))
    assert read(plain).array.tobytes() == array.tobytes()
    assert decoded.read(path, 3, None).array.tobytes() == array.tobytes()
    assert not (tmp_path / "data" / ".decoded").exists()


# --------------------------------------------------------------------------- never trusted


def _truncate(npy: Path, key: Path, size: int) -> None:
    with open(npy, "r+b") as f:
        f.truncate(size)


def _flip_last_byte(npy: Path, key: Path) -> None:
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))


def _other_shape(npy: Path, key: Path) -> None:
    np.save(npy, np.zeros((49, 28, 28), np.uint8))


def _edit_key(**changes):
    def edit(npy: Path, key: Path) -> None:
        key.write_text(json.dumps({**json.loads(key.read_text()), **changes}))

    return edit


DAMAGES = {
    "npy truncated in the data": lambda npy, key: _truncate(npy, key, npy.stat().st_size // 2),
    "npy truncated in the header": lambda npy, key: _truncate(npy, key, 20),
    "npy empty": lambda npy, key: _truncate(npy, key, 0),
    "npy missing": lambda npy, key: npy.unlink(),
    "npy byte changed": _flip_last_byte,
    "npy of another shape": _other_shape,
    "npy not an npy": lambda npy, key: npy.write_bytes(b"PK\x03\x04 a zip file, not an array"),
    "key not json": lambda npy, key: key.write_text("{not json"),
    "key not an object": lambda npy, key: key.write_text("[1, 2]"),
    "key of a later format": _edit_key(format=decoded.FORMAT + 1),
    "key shape wrong": _edit_key(shape=[25, 56, 28]),
    "key shape not ints": _edit_key(shape=["50", 28, 28]),
    "key dtype wrong": _edit_key(dtype="<u2"),
    "key digest wrong": _edit_key(sha256="0" * 64),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_entry_is_rebuilt_with_one_warning(images, caplog, damage):
    path, array = images
    read(path)
    npy, key = entry(path)
    damage(npy, key)
    caplog.set_level(logging.DEBUG, logger="runner.data")
    again = read(path)
    assert not again.cached and again.array.tobytes() == array.tobytes()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"decoding {path} again" in warnings[0].getMessage()
    assert read(path).cached  # the rebuilt entry is good


def test_a_changed_source_is_decoded_again(images, caplog):
    path, _ = images
    read(path)
    other = np.full((70, 28, 28), 7, np.uint8)
    write_gz(path, other)
    caplog.set_level(logging.INFO, logger="runner.data")
    got = read(path)
    assert not got.cached and got.array.tobytes() == other.tobytes()
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "the source changed" in caplog.text
    assert read(path).cached


def test_a_source_of_the_same_size_rewritten_later_is_decoded_again(images):
    path, array = images
    path.write_bytes(gzip.compress(idx_content(array), compresslevel=0))  # stored: the size depends on the length only
    read(path)
    st = path.stat()
    other = array[::-1].copy()
    path.write_bytes(gzip.compress(idx_content(other), compresslevel=0))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a later write, however coarse the clock
    assert path.stat().st_size == st.st_size
    got = read(path)
    assert not got.cached and got.array.tobytes() == other.tobytes()


def test_an_entry_of_other_content_than_expected_is_not_used_nor_written(images, caplog):
    """``verify``: an entry is used only when its content has a pinned digest; content that has none is not cached."""
    path, array = images
    good = hashlib.sha256(idx_content(array)).hexdigest()
    read(path)
    caplog.set_level(logging.WARNING, logger="runner.data")
    assert read(path, expected={good}).cached
    got = read(path, expected={"f" * 64})  # the caller then reports the mismatch, naming the .gz
    assert not got.cached and got.sha256 == good and "not one of the pinned digests" in caplog.text
    shutil.rmtree(path.parent / ".decoded")
    read(path, expected={"f" * 64})
    assert not (path.parent / ".decoded").exists()


# --------------------------------------------------------------------------- where, and when it cannot be written


def test_an_unwritable_cache_folder_still_loads_and_says_so_once(images, caplog):
    path, array = images
    blocker = path.parent / "a-file"
    blocker.write_text("not a folder")
    caplog.set_level(logging.DEBUG, logger="runner.data")
    for _ in range(2):
        got = decoded.read(path, 3, blocker / ".decoded")
        assert not got.cached and got.array.tobytes() == array.tobytes()
    said = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG


def test_a_read_only_data_dir_takes_the_user_cache(tmp_path, monkeypatch):
    user = tmp_path / "user-cache"
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(user))
    data = tmp_path / "data"
    data.mkdir()
    assert decoded.cache_folder(data, beside=True) == data / ".decoded"
    assert decoded.cache_folder(data, beside=False).parent == user  # a system copy's folder is never written
    data.chmod(0o555)  # root may still write here: the missing write bits are what is respected
    try:
        folder = decoded.cache_folder(data, beside=True)
    finally:
        data.chmod(0o755)
    assert folder.parent == user and folder.name.startswith("data-")
    other = tmp_path / "elsewhere" / "data"
    other.mkdir(parents=True)
    assert decoded.cache_folder(other, beside=False) != decoded.cache_folder(data, beside=False)


def test_user_cache_default_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNNER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert decoded.user_cache() == tmp_path / "runner" / "decoded"


# --------------------------------------------------------------------------- the real MNIST


@pytest.fixture
def mnist_copy(tmp_path) -> Path:
    """A writable data dir holding a copy of ../shared/data/mnist."""
    shutil.copytree(SHARED / "mnist", tmp_path / "data" / "mnist", copy_function=shutil.copyfile)
    (tmp_path / "data" / "mnist").chmod(0o755)
    return tmp_path / "data"


def load(data: Path, **options):
    return MnistDataset(data_dir=str(data), **options).load(DataContext(data, seed=3))


def assert_same_splits(a, b):
    for name in ("train", "val", "test"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.x.dtype == y.x.dtype and x.y.dtype == y.y.dtype
        assert np.array_equal(x.x.view(np.uint8), y.x.view(np.uint8)) and np.array_equal(x.y, y.y)  # bit for bit


def test_mnist_splits_are_bitwise_the_same_with_and_without_the_cache(mnist_copy, caplog):
    caplog.set_level(logging.DEBUG, logger="runner.data")
    without = load(mnist_copy, cache=False)
    assert not (mnist_copy / "mnist" / ".decoded").exists()
    cold = load(mnist_copy)
    assert len(list((mnist_copy / "mnist" / ".decoded").glob("*.npy"))) == 4
    caplog.clear()
    warm = load(mnist_copy)
    assert caplog.text.count("from the decoded cache") == 4
    assert_same_splits(without, cold)
    assert_same_splits(without, warm)


def test_mnist_verify_rejects_a_consistent_but_tampered_entry(mnist_copy, caplog):
    """An entry rewritten with its key to match (content and digest both changed) still fails ``verify``'s pinned
    digest: the run decodes the .gz again and trains on what the digest promised."""
    truth = load(mnist_copy, cache=False)
    load(mnist_copy)
    npy, key = entry(mnist_copy / "mnist" / "t10k-labels-idx1-ubyte.gz")
    labels = np.load(npy)
    labels[:10] = (labels[:10] + 1) % 10
    np.save(npy, labels)
    key.write_text(json.dumps({**json.loads(key.read_text()), "sha256": decoded.content_sha256(labels)}))
    caplog.set_level(logging.WARNING, logger="runner.data")
    assert_same_splits(truth, load(mnist_copy))
    assert "not one of the pinned digests" in caplog.text


def test_the_shared_data_folder_is_never_written(decoded_cache):
    """../shared/data is read-only by its mode: its decoded cache goes to the user cache (this session's)."""
    load(SHARED, val_size=100)
    assert not (SHARED / "mnist" / ".decoded").exists()
    assert any(decoded_cache.glob("mnist-*/train-images-idx3-ubyte.npy"))


LOADER = textwrap.dedent(
    """
    import hashlib, sys, time
    from pathlib import Path
    import numpy as np
    from runner.api import DataContext
    from runner.builtins.datasets import MnistDataset
    data, start = Path(sys.argv[1]), Path(sys.argv[2])
    while not start.exists():
        time.sleep(0.005)
    s = MnistDataset(data_dir=str(data)).load(DataContext(data, seed=3))
    print(hashlib.sha256(b"".join(a.tobytes() for p in (s.train, s.val, s.test) for a in (p.x, p.y))).hexdigest())
    """
)


def test_two_processes_filling_a_fresh_cache_at_once_both_succeed(mnist_copy, tmp_path):
    start = tmp_path / "start"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen([sys.executable, "-c", LOADER, str(mnist_copy), str(start)], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    start.touch()  # both are past their imports by now or soon: they decode and write together
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    truth = load(mnist_copy, cache=False)
    expected = hashlib.sha256(b"".join(a.tobytes() for p in (truth.train, truth.val, truth.test) for a in (p.x, p.y))).hexdigest()
    assert outputs == [expected, expected]
    folder = mnist_copy / "mnist" / ".decoded"
    assert sorted(p.suffix for p in folder.iterdir()) == [".json"] * 4 + [".npy"] * 4  # no temporary files left
    for gz in (mnist_copy / "mnist").glob("*.gz"):
        assert decoded.read(gz, None, folder).cached
