"""Download a data file from a list of mirrors, verified, atomically.

The file is streamed to ``<dest>.part`` next to ``dest``, checked against its known
digests, then renamed; a failed mirror's ``.part`` is deleted before the next is tried.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import logging
import os
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlsplit

from runner.api import RunnerError

log = logging.getLogger("runner.data")

CHUNK = 1 << 20


@dataclass(frozen=True)
class Digests:
    """Known digests of one file: md5 of the ``.gz`` bytes, sha256 of the decompressed content.

    A file is accepted when either matches (re-compressed copies differ only in their gz bytes).
    """

    gz_md5: frozenset[str] = frozenset()
    content_sha256: frozenset[str] = frozenset()


def check_url(url: str) -> None:
    """Refuse anything but https, and plain http to a loopback host (127.0.0.0/8, localhost, ::1)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise RunnerError(f"mirror {url!r}: only https URLs are allowed (plain http only to localhost/127.0.0.1/::1)")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mirror_url(base: str, filename: str) -> str:
    return base if base.endswith(filename) else base.rstrip("/") + "/" + filename


def download(
    filename: str,
    mirrors: list[str],
    dest: Path,
    digests: Digests | None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``filename`` from the first mirror that serves it with a known digest, into ``dest``.

    ``digests=None`` skips the check. Raises RunnerError listing every mirror and why it failed.
    """
    dest = Path(dest)
    urls = [mirror_url(str(base), filename) for base in mirrors]
    if not urls:
        raise RunnerError(f"cannot download {filename}: no mirrors configured")
    for url in urls:
        check_url(url)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunnerError(f"cannot download {filename}: cannot create {dest.parent}: {e.strerror or e}") from None
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            _fetch(url, part, timeout)
            problem = _mismatch(part, digests) if digests is not None else None
            if problem is None:
                os.replace(part, dest)
                log.info("downloaded %s -> %s", url, dest)
                return dest
        except urllib.error.HTTPError as e:
            problem = f"HTTP {e.code} {e.reason}"
        except (OSError, HTTPException) as e:
            problem = _describe(e)
        finally:
            part.unlink(missing_ok=True)
        log.warning("download of %s failed: %s", url, problem)
        failures.append(f"{url}: {problem}")
    raise RunnerError(f"cannot download {filename} to {dest.parent}: all {len(urls)} mirrors failed: " + "; ".join(failures))


def _describe(e: BaseException) -> str:
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs ``check_url`` accepts (no https -> http downgrade)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            check_url(newurl)
        except RunnerError:
            raise urllib.error.URLError(f"refused redirect to {newurl} (not https)") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_SafeRedirects)


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Stream ``url`` into ``part``, logging progress."""
    log.info("downloading %s", url)
    request = urllib.request.Request(url, headers={"User-Agent": "runner-datasets"})
    with _opener.open(request, timeout=timeout) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, last_log = 0, time.monotonic()
        while chunk := response.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            if time.monotonic() - last_log > 5:
                last_log = time.monotonic()
                of = f" of {total / 1e6:.1f} MB" if total else ""
                log.info("  %s: %.1f MB%s", url, done / 1e6, of)
    if total and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")


def _mismatch(path: Path, digests: Digests) -> str | None:
    """None when ``path`` matches a known digest, else what was found."""
    md5 = _hash(path, hashlib.md5(), gz=False)
    if md5 in digests.gz_md5:
        return None
    try:
        sha = _hash(path, hashlib.sha256(), gz=_is_gzip(path))
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        return f"digest mismatch: md5 {md5} is not a known one and the gzip data is damaged ({e})"
    if sha in digests.content_sha256:
        return None
    return (
        f"digest mismatch: md5 {md5} (known: {', '.join(sorted(digests.gz_md5)) or 'none'}), "
        f"content sha256 {sha} (known: {', '.join(sorted(digests.content_sha256)) or 'none'})"
    )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _hash(path: Path, h, gz: bool) -> str:
    with (gzip.open if gz else open)(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
