"""The data directory and downloads: precedence, no network, mirrors, and never a partial file under a real name.

The network is replaced by fake ``download_url`` functions that write the
bytes the tests choose (pooch still does the temporary file, the md5 check and
the rename around them); the real one is exercised on an HTTP server on the
loopback address.
"""

import functools
import http.server
import pathlib
import sys
import threading
import urllib.error

import pytest

import minirso
from minirso.data import DataError, MissingDataError, data_dir, download, load_mnist, load_mnist_or_bundled, mnist
from minirso.data.download import download_url as real_download_url  # before conftest replaces it

from .fakes import IDX_NAMES, gz_files, mnist_like, patch_idx_table, write_files


def served(monkeypatch, files, fail=(), corrupt=()):
    """Replace the network by a dict of files; URLs containing a string in ``fail`` are unreachable.

    Returns the list of URLs asked for.
    """
    calls = []

    def fake(url, path, timeout=None):
        calls.append(url)
        if any(s in url for s in fail):
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        data = files[url.rsplit("/", 1)[1]]
        if any(s in url for s in corrupt):
            data = data[:-100] + bytes(100)  # a transfer that went wrong near the end
        with open(path, "wb") as f:
            f.write(data)

    monkeypatch.setattr(download, "download_url", fake)
    return calls


def fake_remote_mnist(monkeypatch):
    arrays = mnist_like(n_train=12, n_test=5, seed=7)
    files = gz_files(arrays)
    patch_idx_table(monkeypatch, mnist.MNIST_FILES, arrays, files)
    return arrays, files


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_data_dir_precedence(monkeypatch, tmp_path):
    # conftest points $XDG_CACHE_HOME at tmp_path / "user-cache": on Linux the user cache folder is under it
    default = data_dir()
    if sys.platform.startswith("linux"):
        assert default == tmp_path / "user-cache" / "minirso"
    # never the clone (editable install) or site-packages (regular install): the folder holding the package
    assert not default.resolve().is_relative_to(pathlib.Path(minirso.__file__).resolve().parent.parent)
    monkeypatch.setenv("MINIRSO_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"  # an explicit argument beats the variable
    assert data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv("MINIRSO_DATA", "")
    assert data_dir() == default  # empty counts as unset


def test_default_downloads_go_to_the_user_cache_not_the_package(monkeypatch, tmp_path):
    _, files = fake_remote_mnist(monkeypatch)
    served(monkeypatch, files)
    ds = load_mnist()  # no data_dir, no $MINIRSO_DATA
    assert leftovers(data_dir() / "mnist") == sorted(IDX_NAMES)
    assert str(data_dir() / "mnist") in ds.source and len(ds.y_train) == 12
    package = pathlib.Path(minirso.__file__).resolve().parent
    assert sorted(p.name for p in package.rglob("train-*")) == []  # nothing landed in the package


def test_loaders_read_minirso_data_unless_given_a_directory(monkeypatch, tmp_path):
    arrays, files = fake_remote_mnist(monkeypatch)
    write_files(tmp_path / "env" / "mnist", files)
    monkeypatch.setenv("MINIRSO_DATA", str(tmp_path / "env"))
    ds = load_mnist(download=False)
    assert str(tmp_path / "env" / "mnist") in ds.source and len(ds.y_train) == 12
    with pytest.raises(MissingDataError, match=str(tmp_path / "arg" / "mnist")):
        load_mnist(tmp_path / "arg", download=False)


def test_no_network_raises_data_error_with_what_where_and_urls(monkeypatch, tmp_path):
    calls = served(monkeypatch, {}, fail=("http",))
    with pytest.raises(MissingDataError) as e:
        load_mnist(tmp_path, download=True)
    msg = str(e.value)
    for part in (
        "download failed",
        "Name or service not known",
        "train-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        str(tmp_path / "mnist"),
        *mnist.MNIST_MIRRORS,
    ):
        assert part in msg
    assert calls == [m + "train-images-idx3-ubyte.gz" for m in mnist.MNIST_MIRRORS]  # both mirrors tried
    assert leftovers(tmp_path / "mnist") == []  # no temporary file left behind
    ds, note = load_mnist_or_bundled(tmp_path, download=True)
    assert "could not be downloaded" in note and ds.name == "mnist-test-split"


def test_download_lands_under_the_real_names(monkeypatch, tmp_path):
    arrays, files = fake_remote_mnist(monkeypatch)
    calls = served(monkeypatch, files)
    ds = load_mnist(tmp_path)  # download=True is the default
    assert calls == [mnist.MNIST_MIRRORS[0] + n for n in IDX_NAMES]
    assert leftovers(tmp_path / "mnist") == sorted(IDX_NAMES)
    for name in IDX_NAMES:
        assert (tmp_path / "mnist" / name).read_bytes() == files[name]
    assert "downloaded" in ds.source and ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    calls.clear()
    load_mnist(tmp_path)
    assert calls == []  # present and verified: nothing fetched again


def test_an_unreachable_mirror_falls_through_to_the_next(monkeypatch, tmp_path):
    _, files = fake_remote_mnist(monkeypatch)
    calls = served(monkeypatch, files, fail=("ossci",))
    ds = load_mnist(tmp_path)
    assert len(calls) == 8 and "storage.googleapis.com" in ds.source


def test_a_corrupt_download_leaves_no_file_under_the_real_name(monkeypatch, tmp_path):
    _, files = fake_remote_mnist(monkeypatch)
    served(monkeypatch, files, corrupt=("http",))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: download failed the checksum") as e:
        load_mnist(tmp_path)
    assert not isinstance(e.value, MissingDataError)  # damage is never mistaken for "absent"
    assert leftovers(tmp_path / "mnist") == []
    # one good mirror is enough
    served(monkeypatch, files, corrupt=("ossci",))
    assert len(load_mnist(tmp_path).y_train) == 12


def test_a_connection_cut_midway_leaves_nothing(monkeypatch, tmp_path):
    def cut(url, path, timeout=None):
        with open(path, "wb") as f:
            f.write(b"\x1f\x8b\x08 the first bytes")
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(download, "download_url", cut)
    with pytest.raises(MissingDataError, match="Connection reset"):
        load_mnist(tmp_path)
    assert leftovers(tmp_path / "mnist") == []


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the server would print every request to stderr
        pass


@pytest.fixture
def http_root(tmp_path):
    """``(root folder, base URL)`` of an HTTP server on 127.0.0.1 serving the folder, for the real downloader."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_real_download_through_pooch_over_http(monkeypatch, tmp_path, http_root):
    root, base = http_root
    arrays, files = fake_remote_mnist(monkeypatch)
    write_files(root / "mnist", files)
    monkeypatch.setattr(download, "download_url", real_download_url)
    # the first mirror answers 404 for every file, the second serves them
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (base + "gone/", base + "mnist/"))
    ds = load_mnist(tmp_path / "d")
    assert leftovers(tmp_path / "d" / "mnist") == sorted(IDX_NAMES)
    for name in IDX_NAMES:
        assert (tmp_path / "d" / "mnist" / name).read_bytes() == files[name]
    assert f"from {base}mnist/" in ds.source and ds.y_train.tolist() == arrays["train-labels-idx1-ubyte.gz"].tolist()

    # a server sending other bytes: the checksum fails and nothing is kept
    (root / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(files["train-images-idx3-ubyte.gz"][:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: download failed the checksum.*404") as e:
        load_mnist(tmp_path / "e")
    assert not isinstance(e.value, MissingDataError) and leftovers(tmp_path / "e" / "mnist") == []

    with pytest.raises(OSError, match="404"):
        real_download_url(base + "absent.bin", tmp_path / "x")
