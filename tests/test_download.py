"""Downloads against a real HTTP server on 127.0.0.1 serving copies of ../shared/data/mnist."""

from __future__ import annotations

import functools
import gzip
import hashlib
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from runner.api import DataContext, RunnerError
from runner.builtins.datasets import MnistDataset
from runner.builtins.datasets.download import Digests, check_url, download
from runner.builtins.datasets.mnist import MNIST, TEST_LABELS

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


class Handler(SimpleHTTPRequestHandler):
    """Static files, plus ``/redirect/...`` which points at a plain-http outside host."""

    def do_GET(self):
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "http://example.com" + self.path)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a server with good/ (the four files), bad/ (other content), cut/ (truncated)."""
    root = tmp_path_factory.mktemp("www")
    good, bad, cut = (root / name for name in ("good", "bad", "cut"))
    shutil.copytree(MNIST_DIR, good)
    bad.mkdir()
    cut.mkdir()
    labels = (MNIST_DIR / TEST_LABELS).read_bytes()
    (bad / TEST_LABELS).write_bytes(gzip.compress(gzip.decompress(labels)[::-1]))
    (cut / TEST_LABELS).write_bytes(labels[: len(labels) // 2])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DIGESTS = MNIST.digests[TEST_LABELS]


def test_download_into_empty_data_dir_then_load(server, tmp_path):
    splits = MnistDataset(mirrors=[f"{server}/good/"], val_size=100).load(DataContext(tmp_path, seed=0))
    downloaded = sorted(p.name for p in (tmp_path / "mnist").iterdir())
    assert downloaded == sorted([".decoded", *(p.name for p in MNIST_DIR.iterdir())])  # and their decoded cache
    assert (len(splits.train), len(splits.val), len(splits.test)) == (59900, 100, 10000)
    assert splits.train.x.dtype == np.float32 and splits.test.x.max() == 1.0
    # now local: loads again with an unreachable mirror, checksums verified
    again = MnistDataset(mirrors=["https://127.0.0.1:1/"], val_size=100).load(DataContext(tmp_path, seed=0))
    np.testing.assert_array_equal(again.val.y, splits.val.y)


def test_digest_mismatch_falls_through_to_next_mirror(server, tmp_path, caplog):
    dest = tmp_path / "mnist" / TEST_LABELS
    caplog.set_level("INFO", logger="runner.data")
    download(TEST_LABELS, [f"{server}/bad/", f"{server}/good/"], dest, DIGESTS)
    assert dest.read_bytes() == (MNIST_DIR / TEST_LABELS).read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [TEST_LABELS]
    assert f"{server}/bad/{TEST_LABELS} failed: digest mismatch" in caplog.text
    assert f"downloaded {server}/good/{TEST_LABELS}" in caplog.text


def test_404_falls_through_to_next_mirror(server, tmp_path):
    dest = tmp_path / TEST_LABELS
    download(TEST_LABELS, [f"{server}/missing/", f"{server}/good"], dest, DIGESTS)
    assert hashlib.sha256(gzip.decompress(dest.read_bytes())).hexdigest() in DIGESTS.content_sha256


def test_all_mirrors_failing_lists_each_and_leaves_nothing(server, tmp_path, closed_port):
    mirrors = [f"{server}/bad/", f"{server}/missing/", f"{server}/cut/", f"http://127.0.0.1:{closed_port}/"]
    with pytest.raises(RunnerError) as caught:
        download(TEST_LABELS, mirrors, tmp_path / TEST_LABELS, DIGESTS)
    message = str(caught.value)
    assert message.startswith(f"cannot download {TEST_LABELS} to {tmp_path}: all 4 mirrors failed: ")
    assert f"{server}/bad/{TEST_LABELS}: digest mismatch: md5 " in message
    assert f"{server}/missing/{TEST_LABELS}: HTTP 404" in message
    assert f"{server}/cut/{TEST_LABELS}: digest mismatch" in message and "gzip data is damaged" in message
    assert f"http://127.0.0.1:{closed_port}/{TEST_LABELS}: ConnectionRefusedError" in message
    assert list(tmp_path.iterdir()) == []


def test_dataset_with_failing_mirrors_leaves_no_files(server, tmp_path):
    dataset = MnistDataset(mirrors=[f"{server}/missing/", f"{server}/bad/"])
    with pytest.raises(RunnerError, match=rf"cannot download train-images-idx3-ubyte.gz to {tmp_path / 'mnist'}"):
        dataset.load(DataContext(tmp_path, seed=0))
    assert list((tmp_path / "mnist").iterdir()) == []


def test_timeout_is_a_mirror_failure(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(RunnerError, match=rf"{url}{TEST_LABELS}: timed out"):
            download(TEST_LABELS, [url], tmp_path / TEST_LABELS, DIGESTS, timeout=0.3)
    assert list(tmp_path.iterdir()) == []


def test_redirect_to_plain_http_is_refused(server, tmp_path):
    with pytest.raises(RunnerError, match=r"refused redirect to http://example.com/redirect/"):
        download(TEST_LABELS, [f"{server}/redirect/"], tmp_path / TEST_LABELS, DIGESTS)
    assert list(tmp_path.iterdir()) == []


def test_gz_md5_alone_is_accepted_and_verify_off_accepts_anything(server, tmp_path):
    md5 = hashlib.md5((MNIST_DIR / TEST_LABELS).read_bytes()).hexdigest()
    download(TEST_LABELS, [f"{server}/good/"], tmp_path / "a.gz", Digests(gz_md5=frozenset({md5})))
    download(TEST_LABELS, [f"{server}/bad/"], tmp_path / "b.gz", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz", "b.gz"]


def test_non_loopback_http_is_refused_before_any_download(server, tmp_path):
    with pytest.raises(RunnerError, match=r"mirror 'http://example.com/mnist/t10k-labels-idx1-ubyte.gz': only https"):
        download(TEST_LABELS, [f"{server}/good/", "http://example.com/mnist/"], tmp_path / TEST_LABELS, DIGESTS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://127.0.0.1:8000/",
        "http://127.9.9.9/x/",
        "http://localhost/",
        "http://LOCALHOST:1/",
        "http://[::1]:8080/",
    ],
)
def test_allowed_urls(url):
    check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "http://10.0.0.1/",
        "http://128.0.0.1/",
        "http://localhost.example.com/",
        "ftp://127.0.0.1/",
        "file:///tmp/mnist/",
        "https:///no-host/",
        "example.com/mnist/",
    ],
)
def test_refused_urls(url):
    with pytest.raises(RunnerError, match="only https URLs are allowed"):
        check_url(url)
