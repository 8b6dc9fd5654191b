"""The backend seam: choice, overrides, clear errors, host/device helpers."""

import os
import subprocess
import sys

import numpy as np
import pytest

import minirso
from minirso import backend


@pytest.fixture
def restore_backend():
    before = backend.backend_name()
    yield
    backend.use_backend(before)


def _run(env_value):
    env = dict(os.environ)
    env.pop("MINIRSO_BACKEND", None)
    if env_value is not None:
        env["MINIRSO_BACKEND"] = env_value
    code = "import minirso; print(minirso.backend_name())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_use_backend_numpy_returns_numpy(restore_backend):
    assert backend.use_backend("numpy") is np
    assert backend.backend_name() == "numpy"
    assert backend.xp() is np
    assert backend.use_backend("NumPy") is np  # case-insensitive


@pytest.mark.parametrize("bad", ["torch", "", "gpu", None, 3])
def test_unknown_backend_is_a_clear_error(bad, restore_backend):
    with pytest.raises(backend.BackendError, match="unknown backend"):
        backend.use_backend(bad)
    assert issubclass(backend.BackendError, ValueError)


def test_cupy_where_it_cannot_run_is_an_error(restore_backend):
    if backend.cupy_available():
        pytest.skip("CuPy runs here")
    with pytest.raises(backend.BackendError, match="cupy.*cannot run here"):
        backend.use_backend("cupy")
    assert backend.backend_name() != "cupy"


def test_environment_variable_selects_numpy():
    r = _run("numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"


def test_environment_variable_with_unknown_value_fails_loudly():
    r = _run("tensorflow")
    assert r.returncode != 0  # the first use of the backend fails, naming the variable and the value
    assert "MINIRSO_BACKEND='tensorflow'" in r.stderr and "unknown backend" in r.stderr


def test_environment_variable_cupy_without_gpu_fails_loudly():
    if backend.cupy_available():
        pytest.skip("CuPy runs here")
    r = subprocess.run(
        [sys.executable, "-c", "import minirso.backend as b; b.xp()"],
        env={**os.environ, "MINIRSO_BACKEND": "cupy"},
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "cannot run here" in r.stderr


def test_default_without_override_matches_cupy_availability():
    r = _run(None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("cupy" if backend.cupy_available() else "numpy")


def test_host_device_helpers_round_trip(xp):
    host = np.arange(12, dtype=np.float32).reshape(3, 4) ** 1.5
    dev = minirso.asarray(host)
    assert backend.get_array_module(dev) is xp
    back = minirso.to_numpy(dev)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    assert backend.get_array_module(host) is np
    assert backend.get_array_module() is xp


def test_array_module_by_name():
    assert backend.array_module("numpy") is np
    with pytest.raises(backend.BackendError):
        backend.array_module("jax")
