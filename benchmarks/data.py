"""The recipes' data, loaded once through runner's own dataset plugins (the very splits a run
trains on), cached as plain .npz files that every worker process loads in milliseconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``RUNNER_DATA_DIR`` when set, else ``../shared/data`` beside this checkout."""
    env = os.environ.get("RUNNER_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def cache_dataset(name: str, data_dir: Path, cache: Path, seed: int = 0) -> Path:
    """Load dataset ``name`` (float32, splits by ``seed``) with runner's plugin; save it as ``cache/<name>/``
    (one .npy per array, memory-mapped by the workers, and meta.json)."""
    path = cache / name
    if (path / "meta.json").is_file():
        return path
    from runner.api import DataContext
    from runner.plugins.discovery import load_registry

    entry = load_registry().get("dataset", name, "benchmarks")
    splits = entry.create({}, f"dataset {name}").load(DataContext(Path(data_dir), seed, np.dtype(np.float32)))
    meta = splits.meta
    arrays = {f"{split}_{key}": getattr(getattr(splits, split), key) for split in ("train", "val", "test") for key in ("x", "y")}
    meta_json = json.dumps(
        {
            "name": meta.name,
            "input_shape": list(meta.input_shape),
            "output_size": meta.output_size,
            "task": meta.task,
            "classes": list(meta.classes),
            "image_shape": list(meta.image_shape) if meta.image_shape else None,
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        np.save(path / f"{key}.npy", np.ascontiguousarray(array))
    (path / "meta.json").write_text(meta_json)  # last: marks the cache complete
    return path


class Data:
    """Train/val/test arrays (x float32, y int64) and the dataset's meta, from a cache file."""

    def __init__(self, path: Path | str, limit: int | None = None):
        path = Path(path)
        self.meta = json.loads((path / "meta.json").read_text())
        for split in ("train", "val", "test"):
            for key in ("x", "y"):
                array = np.load(path / f"{split}_{key}.npy", mmap_mode="r")
                setattr(self, f"{split}_{key}", np.array(array[:limit] if limit else array))  # an in-memory copy

    @property
    def n_in(self) -> int:
        return int(np.prod(self.meta["input_shape"]))

    @property
    def n_out(self) -> int:
        return int(self.meta["output_size"])

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """(channels, height, width) when the flat samples are images (``Meta.image_shape``), else None."""
        shape = self.meta.get("image_shape")
        return tuple(shape) if shape else None

    def splits(self):
        """As runner's ``Splits`` (for the runner engine)."""
        from runner.api import Meta, Split, Splits

        m = self.meta
        meta = Meta(m["name"], tuple(m["input_shape"]), m["output_size"], m["task"], tuple(m["classes"]), self.image_shape)
        return Splits(Split(self.train_x, self.train_y), Split(self.val_x, self.val_y), Split(self.test_x, self.test_y), meta)
