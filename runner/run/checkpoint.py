"""Checkpoints: every array and setting needed to continue a run exactly, written atomically.

One ``.npz`` file of plain arrays; the nested state's non-array parts (steps, RNG states, the
config) travel inside it as a JSON string. Loading uses ``allow_pickle=False``: a checkpoint
never runs code. Writing goes to a temp file in the same directory, is fsync'ed, and replaces
the checkpoint with ``os.replace``; the previous checkpoint is kept as ``checkpoint.prev.npz`` (a
hard link to it, made before the replacement): ``checkpoint.npz`` never disappears, even for a moment.
A copy of it opened before a replacement reads the old file to its end; one opened after, the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from runner.api import RunnerError

FILE, PREVIOUS = "checkpoint.npz", "checkpoint.prev.npz"
FORMAT = 1


def _split(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The tree with every array replaced by {"__array__": key}; the arrays collected."""
    if isinstance(tree, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = tree
        return {"__array__": key}
    if isinstance(tree, dict):
        return {str(k): _split(v, arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, arrays) for v in tree]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _join(tree: Any, arrays) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return np.array(arrays[tree["__array__"]])
        return {k: _join(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save(directory: Path, state: dict) -> Path:
    """Write ``state`` to ``directory/checkpoint.npz`` atomically, keeping the previous one."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    skeleton = _split({"format": FORMAT, **state}, arrays)
    final, temp = directory / FILE, directory / f".{FILE}.tmp"
    with open(temp, "wb") as f:
        np.savez(f, allow_pickle=False, __meta__=np.array(json.dumps(skeleton)), **arrays)
        f.flush()
        os.fsync(f.fileno())
    if final.exists():
        keep(final, directory / PREVIOUS)
    os.replace(temp, final)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # the renames themselves reach the disk
    finally:
        os.close(descriptor)
    return final


def keep(final: Path, previous: Path) -> None:
    """``previous`` becomes ``final``'s current file, and ``final`` stays where it is (a hard link,
    renamed into place; where the file system has none, a copy)."""
    temp = previous.with_name(f".{previous.name}.tmp")
    temp.unlink(missing_ok=True)
    try:
        os.link(final, temp)
    except OSError:
        shutil.copyfile(final, temp)
    os.replace(temp, previous)


def load(path: Path) -> dict:
    """The state saved in ``path``; a damaged or foreign file is a RunnerError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            skeleton = json.loads(str(data["__meta__"]))
            state = _join(skeleton, {k: data[k] for k in data.files if k != "__meta__"})
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise RunnerError(
            f"checkpoint {path}: cannot be read ({type(e).__name__}: {e}); expected a runner checkpoint.npz"
        ) from None
    if state.get("format") != FORMAT:
        raise RunnerError(f"checkpoint {path}: format {state.get('format')!r}, this runner reads format {FORMAT}")
    return state
