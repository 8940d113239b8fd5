"""Read IDX files (the MNIST format), gzipped or plain, with NumPy.

Layout: two zero bytes, a dtype code, the number of dimensions, then one
big-endian uint32 per dimension, then the data in C order, big-endian.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from runner.api import RunnerError

#: IDX dtype codes -> big-endian NumPy dtypes.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzipped (detected by its magic bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RunnerError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise RunnerError(f"{path}: truncated gzip stream ({len(raw)} bytes): the file was cut short") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise RunnerError(f"{path}: corrupt gzip data: {e}") from None


def parse_idx(data: bytes, path: Path, ndim: int | None = None) -> np.ndarray:
    """The array in ``data`` (read from ``path``, named in errors); ``ndim`` if given must match the header."""
    if len(data) < 4:
        raise RunnerError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    zero, code, dims = data[:2], data[2], data[3]
    if zero != b"\x00\x00":
        raise RunnerError(f"{path}: not an IDX file: magic number {data[:4].hex()} does not start with 0000")
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in DTYPES)
        raise RunnerError(f"{path}: unknown IDX dtype code 0x{code:02x} (known: {known})")
    if ndim is not None and dims != ndim:
        raise RunnerError(f"{path}: header says {dims} dimensions, expected {ndim}")
    offset = 4 + 4 * dims
    if len(data) < offset:
        raise RunnerError(f"{path}: truncated: header of {dims} dimensions needs {offset} bytes, file holds {len(data)}")
    shape = tuple(int(n) for n in np.frombuffer(data, dtype=">u4", count=dims, offset=4))
    dtype = DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    held = len(data) - offset
    if held != expected:
        what = "truncated" if held < expected else "trailing data"
        records = f"{shape[0]} records" if shape else "a scalar"
        of = f" of {'x'.join(map(str, shape[1:]))}" if len(shape) > 1 else ""
        raise RunnerError(
            f"{path}: {what}: header says {records}{of} {dtype.name} ({expected} bytes of data), file holds {held} bytes of data"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into a read-only array of its header's shape and dtype."""
    return parse_idx(read_bytes(path), Path(path), ndim)
