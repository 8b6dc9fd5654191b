"""Isolation for the data tests: no network, no $MINIRSO_DATA or user cache of the caller, no system-wide datasets.

A machine may have Debian's Fashion-MNIST in /usr/share/datasets, a user's
$MINIRSO_DATA set, or datasets in the user cache folder (the default data
directory, ~/.cache/minirso); the tests must see none of them, or "missing
file" tests would find real files.  $XDG_CACHE_HOME moves the user cache folder
on Linux (platformdirs reads it at each call).  Any call to the real download
function fails the test.
"""

import pytest

from minirso.data import download, mnist


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIRS", ())

    def no_network(url, path, timeout=None):
        pytest.fail(f"a test tried to download {url}")

    monkeypatch.setattr(download, "download_url", no_network)
