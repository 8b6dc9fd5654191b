"""Shared test set-up.

The suite runs on whatever backend minirso chooses (MINIRSO_BACKEND=numpy or
cupy), so the same tests check both: use the ``xp`` fixture to make inputs and
``minirso.to_numpy`` to bring results back for comparison with NumPy / PyTorch oracles.
"""

import numpy as np
import pytest

import minirso


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    on_gpu = minirso.backend_name() == "cupy"
    for item in items:
        if item.get_closest_marker("gpu") and not on_gpu:
            item.add_marker(pytest.mark.skip(reason="needs MINIRSO_BACKEND=cupy on a CUDA machine"))
        if item.get_closest_marker("slow") and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))


@pytest.fixture
def xp():
    """The active array module (numpy, or cupy under MINIRSO_BACKEND=cupy)."""
    return minirso.backend.xp()


@pytest.fixture
def rng():
    """A NumPy generator for test inputs (asymmetric random data, fixed seed)."""
    return np.random.default_rng(1234)


@pytest.fixture
def standin():
    """The CuPy stand-in's controls (``cupy._standin``: launch / sync / copy counters), or skip.

    They exist only on the stand-in (``PYTHONPATH=tests/standin MINIRSO_BACKEND=cupy``), not on NumPy
    or a real CuPy; the counts are what a GPU would be asked to do, see tests/standin/README.md.
    """
    if minirso.backend_name() != "cupy":
        pytest.skip("launch counters: run on the CuPy stand-in (PYTHONPATH=tests/standin MINIRSO_BACKEND=cupy)")
    import cupy

    controls = getattr(cupy, "_standin", None)
    if controls is None:
        pytest.skip("launch counters exist only on the CuPy stand-in (tests/standin), not on a real CuPy")
    return controls
