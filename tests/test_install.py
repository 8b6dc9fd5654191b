"""A regular (non-editable) install works outside the clone: the user's `pip install .` then Python elsewhere.

Issue 16: after `pip install .` the bundled digits were looked for in
``site-packages/data/`` (not shipped, so ``load_mnist_or_bundled()`` failed)
and downloads would have gone there too.  This test does what the user does,
in subprocesses: pip installs a copy of the source (no network, no build
isolation: the venv's setuptools builds the wheel) into a fresh folder, and
Python runs in another folder with only that folder on ``PYTHONPATH``, so the
clone is not what gets imported.
"""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

from minirso.data import load_mnist_test

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Runs in the installed copy.  Port 9 (discard) on the loopback address refuses connections: an offline download.
SCRIPT = r"""
import hashlib, json, sys
import minirso
from minirso import data
from minirso.data import mnist

ds, note = data.load_mnist_or_bundled()
mnist.MNIST_MIRRORS = ("http://127.0.0.1:9/mnist/",)
try:
    data.load_mnist(download=True)
    offline = None
except data.MissingDataError as e:
    offline = str(e)
print(json.dumps({
    "file": minirso.__file__, "bundled": str(data.BUNDLED_DIR), "data_dir": str(data.data_dir()), "note": note,
    "shapes": [list(a.shape) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)], "dtype": str(ds.x_train.dtype),
    "labels_md5": hashlib.md5(ds.y_train.tobytes() + ds.y_test.tobytes()).hexdigest(), "offline": offline,
}))
"""


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_pip_install_dot_has_the_bundled_digits_and_downloads_outside_the_package(tmp_path):
    src = tmp_path / "src"  # a copy: building in the clone would leave build/ there, whose stale files end up in wheels
    shutil.copytree(ROOT / "minirso", src / "minirso", ignore=shutil.ignore_patterns("__pycache__"))
    for path in ROOT.iterdir():  # pyproject.toml, README.md, LICENSE, ...: what the build may read besides the code
        if path.is_file():
            shutil.copy(path, src / path.name)
    site = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(site),
            str(src),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    installed = _files(site)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MINIRSO_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"), MINIRSO_BACKEND="numpy")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    got = json.loads(run.stdout.splitlines()[-1])

    assert pathlib.Path(got["file"]).is_relative_to(site)  # the installed copy ran, not the clone
    assert pathlib.Path(got["bundled"]).is_relative_to(site / "minirso")  # package data, read from the package
    assert got["shapes"] == [[8000, 1, 28, 28], [8000], [2000, 1, 28, 28], [2000]] and got["dtype"] == "float32"
    _, labels = load_mnist_test()  # the clone's copy of the official test set: the same digits in the same order
    assert got["labels_md5"] == hashlib.md5(labels.tobytes()).hexdigest()
    assert "bundled official MNIST test set" in got["note"]

    data_dir = pathlib.Path(got["data_dir"])
    assert not data_dir.is_relative_to(site) and not data_dir.is_relative_to(ROOT)
    if sys.platform.startswith("linux"):  # platformdirs' user cache folder is $XDG_CACHE_HOME there
        assert data_dir == tmp_path / "cache" / "minirso"
    # offline: the error names the files, the folder they belong in and the URL; nothing was written in the package
    for part in ("train-images-idx3-ubyte.gz", str(data_dir / "mnist"), "http://127.0.0.1:9/mnist/", "MINIRSO_DATA"):
        assert part in got["offline"]
    assert _files(site) == installed
