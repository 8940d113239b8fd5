"""MNIST and Fashion-MNIST: the four standard IDX files, found locally or downloaded.

Lookup per file: ``<data_dir>/<name>/`` (``data_dir`` option, else the run's data
directory), then system copies (Debian's ``/usr/share/datasets/fashion-mnist/``),
else a download into ``<data_dir>/<name>/``. A seeded permutation of the 60000
training images gives val (``val_size``) and train; test is the t10k files.

The decoded arrays are kept in a cache (``cache`` option, decoded.py): ``<data_dir>/<name>/.decoded/``,
or the user cache for system copies and read-only data dirs. ``verify`` checks the sha256 of the
content a run trains on, whether decoded from the ``.gz`` or read from the cache.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner.api import DataContext, Dataset, Meta, RunnerError, Split, Splits, option

from . import decoded
from .download import Digests, check_url, download

log = logging.getLogger("runner.data")

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def _digests(pairs: dict[str, tuple[str, str]]) -> dict[str, Digests]:
    return {f: Digests(frozenset({md5}), frozenset({sha})) for f, (md5, sha) in pairs.items()}


@dataclass(frozen=True)
class Flavour:
    """What tells MNIST and Fashion-MNIST apart: name, classes, where to find them, digests."""

    name: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    digests: dict[str, Digests]
    system_dirs: tuple[Path, ...] = field(default=())


MNIST = Flavour(
    name="mnist",
    classes=tuple(str(d) for d in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    # (md5 of the public mirrors' .gz, sha256 of the decompressed IDX)
    digests=_digests(
        {
            TRAIN_IMAGES: (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            TRAIN_LABELS: (
                "d53e105ee54ea40749a09fcbcd1e9432",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            TEST_IMAGES: ("9fb629c4189551a2d022fa330f9573f3", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            TEST_LABELS: ("ec29112dd5afa0611ce80d1b7f02629c", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        }
    ),
)

FASHION_MNIST = Flavour(
    name="fashion_mnist",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mirrors=("https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",),
    # The sha256s are those of Debian's dataset-fashion-mnist copy (recompressed .gz; its
    # decompressed md5s equal upstream's f4a8712d..., 9018921c..., 8181f547..., 15d48437...).
    digests=_digests(
        {
            TRAIN_IMAGES: (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            TRAIN_LABELS: (
                "25c81989df183df01b3e8a0aad5dffbe",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            TEST_IMAGES: ("bef4ecab320f06d8554ea6380940ec79", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            TEST_LABELS: ("bb300cfdad3c16e7a12a480ee83cd310", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        }
    ),
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
)


class MnistDataset(Dataset):
    """The MNIST digits: x of shape (N, 784) in [0, 1], y int64 class indices."""

    flavour: Flavour = MNIST

    def __init__(
        self,
        data_dir: str | None = None,
        val_size: int = 5000,
        mirrors: list[str] | None = None,
        verify: bool = True,
        timeout: float = 30.0,
        cache: bool = True,
    ):
        option("data_dir", data_dir, (str, os.PathLike), expected="a directory path", or_none=True)
        val_size = option("val_size", val_size, int, lambda v: v >= 0, "a whole number >= 0")
        verify = option("verify", verify, bool)
        timeout = option("timeout", timeout, float, lambda v: v > 0, "a positive number of seconds")
        self.cache = option("cache", cache, bool)
        chosen = self.flavour.mirrors if mirrors is None else [mirrors] if isinstance(mirrors, str) else mirrors
        self.mirrors = [str(m) for m in chosen]
        for m in self.mirrors:
            check_url(m)
        self.data_dir = data_dir
        self.val_size = val_size
        self.verify = verify
        self.timeout = float(timeout)

    def load(self, context: DataContext) -> Splits:
        root = Path(self.data_dir).expanduser() if self.data_dir is not None else Path(context.data_dir)
        home = root / self.flavour.name
        train_x, train_y = self._read_pair(home, TRAIN_IMAGES, TRAIN_LABELS)
        test_x, test_y = self._read_pair(home, TEST_IMAGES, TEST_LABELS)
        if self.val_size >= len(train_x):
            raise RunnerError(f"val_size: {self.val_size} leaves no training images (the training files hold {len(train_x)})")
        order = np.random.default_rng(context.seed).permutation(len(train_x))
        val, train = order[: self.val_size], order[self.val_size :]
        dtype = context.dtype
        return Splits(
            train=Split(_pixels(train_x[train], dtype), train_y[train]),
            val=Split(_pixels(train_x[val], dtype), train_y[val]),
            test=Split(_pixels(test_x, dtype), test_y),
            meta=Meta(
                name=self.flavour.name,
                input_shape=(28 * 28,),
                output_size=len(self.flavour.classes),
                task="classification",
                classes=self.flavour.classes,
                image_shape=(1, 28, 28),
            ),
        )

    def _read_pair(self, home: Path, images_file: str, labels_file: str) -> tuple[np.ndarray, np.ndarray]:
        images, images_path = self._read(home, images_file, ndim=3)
        labels, labels_path = self._read(home, labels_file, ndim=1)
        if images.shape[1:] != (28, 28):
            raise RunnerError(f"{images_path}: images are {'x'.join(map(str, images.shape[1:]))}, expected 28x28")
        if len(images) != len(labels):
            raise RunnerError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
        n_classes = len(self.flavour.classes)
        if labels.size and not (labels.min() >= 0 and labels.max() < n_classes):
            raise RunnerError(f"{labels_path}: labels must lie in 0..{n_classes - 1}, found {labels.min()}..{labels.max()}")
        return images, labels.astype(np.int64)

    def _read(self, home: Path, filename: str, ndim: int) -> tuple[np.ndarray, Path]:
        path = self._find(home, filename) or self._download(home, filename)
        # beside the files only in the data dir the runner downloads into, never in a system copy's folder
        cache = decoded.cache_folder(path.parent, beside=path.parent == home) if self.cache else None
        known = self.flavour.digests[filename].content_sha256
        found = decoded.read(path, ndim, cache, expected=known if self.verify else None)
        if self.verify:
            actual = found.sha256
            if actual not in known:
                raise RunnerError(
                    f"{path}: checksum mismatch: sha256 of the decompressed content is {actual}, "
                    f"expected {' or '.join(sorted(known))} (delete the file to download it again, "
                    f"or set verify: false to use it anyway)"
                )
        return found.array, path

    def _find(self, home: Path, filename: str) -> Path | None:
        for folder in (home, *self.flavour.system_dirs):
            for name in (filename, filename.removesuffix(".gz")):
                if (folder / name).is_file():
                    log.debug("%s: using %s", self.flavour.name, folder / name)
                    return folder / name
        return None

    def _download(self, home: Path, filename: str) -> Path:
        digests = self.flavour.digests[filename] if self.verify else None
        if digests is None:
            log.warning("verify is off: %s will be downloaded without a checksum check", filename)
        return download(filename, self.mirrors, home / filename, digests, timeout=self.timeout)


class FashionMnistDataset(MnistDataset):
    """Zalando's Fashion-MNIST: the same format, options and splits as MNIST, ten clothing classes."""

    flavour = FASHION_MNIST


def _pixels(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """uint8 images (N, 28, 28) -> (N, 784) of ``dtype`` in [0, 1]."""
    x = images.reshape(len(images), 28 * 28).astype(dtype)
    x /= 255
    return x
