"""Isolation for the data tests: no network, no $MINIRSO_DATA from the caller, no system-wide datasets.

A machine may have Debian's Fashion-MNIST in /usr/share/datasets or a user's
$MINIRSO_DATA set; the tests must see neither, or "missing file" tests would
find real files.  Any call to the real download function fails the test.
"""

import pytest

from minirso.data import download, mnist


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIRS", ())

    def no_network(url, path, timeout=None):
        pytest.fail(f"a test tried to download {url}")

    monkeypatch.setattr(download, "download_url", no_network)
