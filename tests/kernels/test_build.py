"""minirso.kernels.build: the shipped sources, one memoised build per kernel, one failure flag per kernel.

A kernel that fails to build or launch warns once, naming itself, and only it falls back to the plain array
code; the others stay on.  Shown here with NumPy (which has no kernel classes) and with the CuPy stand-in
compiling a broken source on the CPU.
"""

import importlib.resources
import re
import warnings

import numpy as np
import pytest

from minirso import kernels
from minirso.kernels import build
from minirso.optim.amc_core import AMCCore

from ._host import HOST

BROKEN_RAW = 'extern "C" __global__ void minirso_mlp_tail(int n) { this is not CUDA; }'


def by_name():
    return {k.name: k for k in kernels.all_kernels()}


def caught_warnings(fn):
    """``(fn(), [warning messages])`` with every warning recorded (pyproject turns this one into an error)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught]


def test_the_sources_are_package_data():
    """Each .cu file is one kernel, ``minirso_<file name>``, read from the installed package (importlib.resources);
    every kernel the package makes has a name, and philox.cuh is the elementwise kernels' preamble."""
    files = {f.name for f in importlib.resources.files("minirso.kernels").iterdir() if f.name.endswith((".cu", ".cuh"))}
    assert files == {"philox.cuh", "rnn_tanh.cu", "mlp_tail.cu"}
    for f in files:
        assert build.source(f) == (importlib.resources.files("minirso.kernels") / f).read_text(encoding="utf-8")
    for f in files - {"philox.cuh"}:
        stem = f.removesuffix(".cu")
        assert re.search(rf'extern "C" __global__ void minirso_{stem}\(', build.source(f)), f
    assert kernels.RNN_SOURCE == build.source("rnn_tanh.cu") and kernels.MLP_SOURCE == build.source("mlp_tail.cu")
    assert {e.preamble for n, e in kernels.ELEMENTWISE.items() if n != "mu_update"} == {kernels.PHILOX_SOURCE}
    assert set(by_name()) == set(kernels.ELEMENTWISE) | {"rnn_tanh", "mlp_tail"}


def test_sizes_have_one_definition():
    """MLP_MAX_WIDTH is read from mlp_tail.cu's #define, so Python and CUDA cannot disagree."""
    assert kernels.MLP_MAX_WIDTH == 64 == build.define(kernels.MLP_SOURCE, "MINIRSO_MLP_MAX")
    with pytest.raises(ValueError, match="MINIRSO_NOT_THERE"):
        build.define(kernels.MLP_SOURCE, "MINIRSO_NOT_THERE")


def test_each_kernel_is_built_once_and_named_once():
    k = by_name()["normal"]
    assert k.compiled(HOST) is k.compiled(HOST)  # memoised per array module (HOST makes a new object per call)
    with pytest.raises(ValueError, match="'normal' exists already"):
        build.Kernel("normal", lambda xp: None)


def test_failed_kernel_falls_back_with_one_warning(monkeypatch, fresh_kernels):
    """A kernel that cannot be built (here: NumPy has no ElementwiseKernel) warns once naming itself and
    switches only itself off: its next call returns None without a warning, the switch and the others stay."""
    monkeypatch.setenv("MINIRSO_FUSED", "1")
    out, msgs = caught_warnings(lambda: AMCCore.proposal_gpu(np.zeros(4, np.float32), 0.1, 3, 1, 0))
    assert out is None
    assert len(msgs) == 1 and "plain array code" in msgs[0] and "'proposal_scalar'" in msgs[0]
    assert kernels.status().startswith("failed: proposal_scalar (AttributeError")
    assert list(kernels.failures()) == ["proposal_scalar"]
    out, msgs = caught_warnings(lambda: AMCCore.proposal_gpu(np.zeros(4, np.float32), 0.1, 3, 1, 0))
    assert out is None and msgs == []  # once
    assert kernels.enabled(object())  # the switch stays on: the other kernels are still tried
    monkeypatch.setattr(by_name()["proposal_scalar"], "failed", None)
    monkeypatch.setenv("MINIRSO_FUSED", "0")
    assert kernels.status() == "off (MINIRSO_FUSED=0)" and not kernels.enabled(object())
    monkeypatch.setenv("MINIRSO_FUSED", "1")
    assert kernels.status() == "on" and kernels.enabled(object()) and not kernels.enabled(np)


def test_one_raw_kernel_failing_to_build_leaves_the_others_on(fused, monkeypatch):
    """The MLP kernel's source fails to compile (on the stand-in's host compiler): ModelLoss warns once naming
    it and computes the plain forward's loss, now and later without a warning; the RNN kernel and the aMC
    move still run as kernels."""
    from minirso import models
    from minirso.optim import ModelLoss

    monkeypatch.setattr(by_name()["mlp_tail"], "compiled", lambda xp: HOST.RawKernel(BROKEN_RAW, "minirso_mlp_tail"))
    r = np.random.default_rng(1)
    net = models.mlp([29, 16, 10], output="softmax", seed=1)
    x = r.random((70, 29), dtype=np.float32)
    y = r.integers(0, 10, 70)
    with monkeypatch.context() as m:
        m.setattr(kernels, "enabled", lambda xp: False)
        plain = ModelLoss(net, x, y, "mse")(net.params)
    ml = ModelLoss(net, x, y, "mse")
    with fused.counting() as c:
        u, msgs = caught_warnings(lambda: ml(net.params))
    assert u == plain and "minirso_mlp_tail" not in c["by_name"]
    assert len(msgs) == 1 and "'mlp_tail'" in msgs[0] and "CompileException" in msgs[0]
    assert kernels.status().startswith("failed: mlp_tail (CompileException")
    assert list(kernels.failures()) == ["mlp_tail"]
    with fused.counting() as c:
        (u2, msgs) = caught_warnings(lambda: ml(net.params))
        x_rnn = r.standard_normal((5, 3, 2)).astype(np.float32)
        out = kernels.rnn_tanh(
            x_rnn, np.full((4, 2), 0.3, np.float32), np.eye(4, dtype=np.float32), np.zeros(4, np.float32), True, True
        )
        p, saved = np.ones(50, np.float32), np.zeros(50, np.float32)
        eps = AMCCore.move_gpu(p, saved, np.zeros(50, np.float32), 0.01, 3, 11, 0)
    assert u2 == plain and msgs == []
    assert c["by_name"] == {"minirso_rnn_tanh": 1, "minirso_move_scalar": 1}
    assert out is not None and eps is not None and np.array_equal(p, 1 + eps) and (saved == 1).all()


def test_one_elementwise_kernel_failing_leaves_its_siblings_on(fused, monkeypatch):
    """The scalar-sigma move fails to compile: move_gpu with a scalar sigma returns None (x and saved untouched)
    after one warning naming it; with lambda sigma (its own kernel), normals and eq. (10) still launch."""
    spec = kernels.ELEMENTWISE["move_scalar"]
    monkeypatch.setattr(
        by_name()["move_scalar"],
        "compiled",
        lambda xp: HOST.ElementwiseKernel(
            spec.in_params, spec.out_params, "this is not C++;", "minirso_move_scalar", preamble=spec.preamble
        ),
    )
    p, saved, mu = np.ones(40, np.float32), np.zeros(40, np.float32), np.zeros(40, np.float32)
    eps, msgs = caught_warnings(lambda: AMCCore.move_gpu(p, saved, mu, 0.01, 3, 11, 0))
    assert eps is None and (p == 1).all() and (saved == 0).all()
    assert len(msgs) == 1 and "'move_scalar'" in msgs[0] and "CompileException" in msgs[0]
    eps, msgs = caught_warnings(lambda: AMCCore.move_gpu(p, saved, mu, 0.01, 3, 11, 0))
    assert eps is None and msgs == []  # once
    assert list(kernels.failures()) == ["move_scalar"]
    with fused.counting() as c:
        eps = AMCCore.move_gpu(p, saved, mu, np.full(40, 0.01, np.float32), 3, 11, 0)
        z = kernels.normal(3, 11, 0, 40, np, np.float32)
        assert AMCCore.mu_update_gpu(mu, eps, 0.5)
    assert c["by_name"] == {"minirso_move": 1, "minirso_normal": 1, "minirso_mu_update": 1}
    np.testing.assert_array_equal(eps, np.float32(0.01) * z)
    np.testing.assert_array_equal(mu, np.float32(0.5) * eps)
    assert (saved == 1).all() and np.array_equal(p, 1 + eps)
