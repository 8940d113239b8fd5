"""The decoded cache: a gzipped IDX file is decompressed once, then loaded memory-mapped (issue 19).

One entry per source file ``<folder>/<name>.gz``, in a cache folder (``cache_folder``):

- ``<name>.npy``: the decoded array, uncompressed, in the IDX file's own dtype (so its bytes are the
  IDX data bytes, big-endian ones included);
- ``<name>.json``: its key: the format version, the source's size and mtime_ns, the array's shape and
  dtype, and the sha256 of the decompressed IDX content (header + data) it was decoded from.

Nothing in the cache is trusted. Each load checks the key against the source's ``stat`` (a changed
source is rebuilt), maps the ``.npy``, checks its shape and dtype, and hashes the IDX content the array
stands for -- the header rebuilt from shape and dtype, then the mapped bytes -- against the key's
sha256. That hash is the one ``verify`` compares with the pinned digests, so a run verifies the very
bytes it trains on, as it did before the cache. The cache saves the gunzip (0.16 s for MNIST's training
images), not the hash (0.03 s with SHA-NI). A corrupt or stale entry is rebuilt from the source with
one log line; an entry that cannot be written is skipped (one debug line): a run never fails for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import idx

log = logging.getLogger("runner.data")

#: Bump when the entry layout or the key's meaning changes: older entries are then rebuilt.
FORMAT = 1
CODES = {dtype.str: code for code, dtype in idx.DTYPES.items()}
#: Folders whose entries could not be written, reported once per process.
_unwritable: set[Path] = set()


@dataclass(frozen=True)
class Decoded:
    """An IDX file's array, the sha256 of its decompressed content, and whether the cache gave it."""

    array: np.ndarray
    sha256: str
    cached: bool = False


def user_cache() -> Path:
    """``$RUNNER_CACHE_DIR``, else ``$XDG_CACHE_HOME/runner/decoded`` (``~/.cache/runner/decoded``)."""
    if os.environ.get("RUNNER_CACHE_DIR"):
        return Path(os.environ["RUNNER_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "runner" / "decoded"


def cache_folder(source_folder: Path, beside: bool) -> Path:
    """Where the entries of files in ``source_folder`` live: ``<source_folder>/.decoded`` when ``beside``
    (the data dir the runner downloads into) and that folder may be written, else a folder of the user cache
    named after it (system copies such as /usr/share/datasets, read-only data dirs)."""
    if beside and _writable(source_folder):
        return source_folder / ".decoded"
    where = str(source_folder.resolve())
    return user_cache() / f"{source_folder.name}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def _writable(folder: Path) -> bool:
    # os.access alone says yes to root everywhere: a folder with no write bit at all (a shared, read-only
    # data folder) is left alone even then.
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def read(path: Path, ndim: int | None, cache: Path | None, expected: Collection[str] | None = None) -> Decoded:
    """The IDX file ``path`` (``.gz`` or plain), through the cache folder ``cache`` when it is gzipped.

    ``expected``: the digests the content must have (``verify``). A cache entry of other content is not used, and
    content of another digest is not cached: the caller's check then fails on the file itself, naming it.
    ``cache=None``, or a plain IDX file (reading it is as fast as reading a cache entry), reads the file itself.
    """
    path = Path(path)
    # stat before reading: a source replaced meanwhile then leaves a key that no longer matches (rebuilt
    # next time), never a key that matches content it was not decoded from
    source = _source_key(path) if cache is not None and _is_gzip(path) else None
    if cache is None or source is None:
        return _decode(path, ndim)  # which names the file and the reason when it cannot be read
    entry = _Entry(cache, path)
    found = entry.load(source, ndim, expected)
    if found is not None:
        return found
    decoded = _decode(path, ndim)
    if expected is None or decoded.sha256 in expected:
        entry.save(decoded, source)
    return decoded


def _decode(path: Path, ndim: int | None) -> Decoded:
    data = idx.read_bytes(path)
    return Decoded(idx.parse_idx(data, path, ndim), hashlib.sha256(data).hexdigest())


def _is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _source_key(path: Path) -> dict[str, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def content_sha256(array: np.ndarray) -> str:
    """The sha256 of the IDX file content ``array`` was decoded from: header (rebuilt) + data bytes."""
    header = bytes([0, 0, CODES[array.dtype.str], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    h = hashlib.sha256(header)
    h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
    return h.hexdigest()


class _Entry:
    """The ``.npy`` and ``.json`` of one source file in one cache folder."""

    def __init__(self, folder: Path, source: Path):
        name = source.name.removesuffix(".gz")
        self.folder, self.source = folder, source
        self.npy, self.key = folder / f"{name}.npy", folder / f"{name}.json"

    def load(self, source: dict[str, int], ndim: int | None, expected: Collection[str] | None) -> Decoded | None:
        """The cached array when every check passes; None when there is no entry or (after one log line) it fails one."""
        found = self._check(source, ndim, expected)
        if isinstance(found, _Distrust):
            # a changed source is expected (a file downloaded again), anything else is damage
            log.log(
                logging.INFO if found.stale else logging.WARNING,
                "decoded cache %s: %s; decoding %s again",
                self.npy,
                found.why,
                self.source,
            )
            return None
        if found is not None:
            log.debug("%s: from the decoded cache %s", self.source, self.npy)
        return found

    def _check(self, source: dict[str, int], ndim: int | None, expected: Collection[str] | None) -> Decoded | _Distrust | None:
        try:
            key = json.loads(self.key.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            return _Distrust(f"unreadable key ({e})")
        problem = _key_problem(key, source, ndim)
        if problem:
            return problem
        try:
            # Mapped, not read: the hash and the float conversion read the pages straight from the OS cache (measured
            # faster than np.load). Safe because entries are only ever replaced by rename, never rewritten in place.
            array = np.lib.format.open_memmap(self.npy, mode="r").view(np.ndarray)
        except (OSError, ValueError, EOFError) as e:
            return _Distrust(f"unreadable array ({e})")
        if list(array.shape) != key["shape"] or array.dtype.str != key["dtype"]:
            return _Distrust(f"an array of {array.shape} {array.dtype.str}, the key says {tuple(key['shape'])} {key['dtype']}")
        digest = content_sha256(array)
        if digest != key["sha256"]:
            return _Distrust("its content does not match its sha256")
        if expected is not None and digest not in expected:
            return _Distrust(f"its content has sha256 {digest}, not one of the pinned digests")
        return Decoded(array, digest, cached=True)

    def save(self, decoded: Decoded, source: dict[str, int]) -> None:
        """Write the entry, the array first, the key last (a key always comes after its array); never raises."""
        array = decoded.array
        key = {"format": FORMAT, "source": source, "shape": list(array.shape), "dtype": array.dtype.str, "sha256": decoded.sha256}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(self.npy, lambda f: np.save(f, array, allow_pickle=False))
            _write_atomically(self.key, lambda f: f.write(json.dumps(key).encode()))
        except OSError as e:
            if self.folder not in _unwritable:
                _unwritable.add(self.folder)
                log.debug("decoded cache %s cannot be written (%s): the IDX files are decoded each run", self.folder, e)
            return
        log.debug("%s: decoded into %s", self.source, self.npy)


def _write_atomically(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a temporary file beside ``path``, then rename it over ``path``: readers see the old file or the new one.

    The temporary name is this process's own (pid and random), so writers at once never share one; created with
    ``open(..., "xb")``, which heeds the umask as any data file (mkstemp's 0600 would lock out the other users of a
    shared data dir). No fsync: an entry cut short by a crash fails its hash and is rebuilt.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Distrust:
    """Why an entry is not used; ``stale`` when only its source changed."""

    why: str
    stale: bool = False


def _key_problem(key: Any, source: dict[str, int], ndim: int | None) -> _Distrust | None:
    """Why ``key`` cannot describe a usable entry for a source of stat ``source``, or None."""
    if not isinstance(key, dict) or key.get("format") != FORMAT:
        return _Distrust(f"a key of another format ({key.get('format') if isinstance(key, dict) else type(key).__name__})")
    if key.get("source") != source:
        return _Distrust(f"the source changed (size and mtime_ns {key.get('source')} then, {source} now)", stale=True)
    shape, dtype, digest = key.get("shape"), key.get("dtype"), key.get("sha256")
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
        return _Distrust(f"a bad shape in the key: {shape!r}")
    if ndim is not None and len(shape) != ndim:
        return _Distrust(f"{len(shape)} dimensions in the key, expected {ndim}")
    if dtype not in CODES or not isinstance(digest, str):
        return _Distrust("a bad dtype or sha256 in the key")
    return None
