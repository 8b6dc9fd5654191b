"""The elementwise kernels (minirso/kernels/elementwise.py; aMC's twins beside their plain code in
minirso/optim/amc_core.py) driven by minirso's own glue code through the CuPy stand-in's ElementwiseKernel on
the CPU (CuPy's argument rules and return values), against the plain array code."""

import numpy as np
import pytest

from minirso import kernels
from minirso.optim.amc_core import AMCCore

from ._host import c_normals


def test_amc_move_returns_eps_and_moves_in_one_launch(lib, fused):
    """AMCCore.move_gpu on the stand-in's ElementwiseKernel, which returns (x, saved, eps) as CuPy does for three
    outputs: move_gpu hands back eps itself, x moved by it, saved the old x, bit for bit the plain three passes."""
    r = np.random.default_rng(6)
    p, seed, stream, offset = 2001, 2**41 + 3, 11, 5 * 2001
    mu = (r.standard_normal(p) * 1e-3).astype(np.float32)
    x0 = (r.standard_normal(p) * 0.3 - 0.2).astype(np.float32)
    z = c_normals(lib, seed, stream, offset, p)
    lam_sigma = (r.uniform(0.5, 2.0, p) * np.float32(0.02)).astype(np.float32)
    for scale, name in ((0.0173, "minirso_move_scalar"), (lam_sigma, "minirso_move")):
        x, saved = x0.copy(), np.full(p, np.nan, np.float32)
        with fused.counting() as d:
            eps = AMCCore.move_gpu(x, saved, mu, scale, seed, stream, offset)
        assert isinstance(eps, np.ndarray) and eps.shape == (p,) and eps.dtype == np.float32
        assert d["by_name"] == {name: 1}
        np.testing.assert_array_equal(eps, mu + scale * z)
        np.testing.assert_array_equal(saved, x0)
        np.testing.assert_array_equal(x, x0 + eps)
    m = mu.copy()
    assert AMCCore.mu_update_gpu(m, eps, 0.013) is True
    ref = mu.copy()
    ref += 0.013 * (eps - ref)
    np.testing.assert_array_equal(m, ref)


@pytest.mark.parametrize("signal_norm", [False, True])
def test_amc_with_every_fused_kernel_takes_the_plain_decisions(fused, monkeypatch, signal_norm):
    """aMC on the Fig. 1 net as it runs on a GPU (fused move, fused eq. 10, fused forward + loss where
    no signal norm is recorded), driven by minirso's own glue code through the stand-in's kernels with
    CuPy's semantics (a three-output kernel returns a tuple), against the plain NumPy run from the same
    start: the same accept / reject decision at every step, sigma decays included, and the same
    parameters up to float32 rounding."""
    from minirso import models
    from minirso.optim import AMC, ModelLoss

    r = np.random.default_rng(11)
    x = (r.random((300, 29)) * np.linspace(0.1, 1.0, 29)).astype(np.float32)
    y = r.integers(0, 10, 300).astype(np.int64)

    def run(on):
        net = models.mlp([29, 16, 16, 10], output="softmax", seed=4, init=("gaussian", 0.3))
        opt = AMC(
            net.params, ModelLoss(net, x, y, "mse"), sigma0=0.05, epsilon=0.2, n_s=3, signal_norm=signal_norm, seed=9
        )
        with monkeypatch.context() as m:
            if not on:
                m.setattr(kernels, "enabled", lambda xp: False)
            with fused.counting() as c:
                decisions = [opt.step()["accepted"] for _ in range(40)]
        assert kernels.status() == "on"
        return decisions, opt, net, c["by_name"]

    (d_plain, o_plain, n_plain, c_plain), (d_fused, o_fused, n_fused, c_fused) = run(False), run(True)
    assert not c_plain and c_fused["minirso_move_scalar" if not signal_norm else "minirso_move"] == 40
    assert c_fused["minirso_mu_update"] == sum(d_fused) and ("minirso_mlp_tail" in c_fused) != signal_norm
    assert d_fused == d_plain
    assert 5 < sum(d_plain) < 35 and o_plain.sigma < 0.05  # both outcomes and at least one decay were tested
    assert o_fused.sigma == o_plain.sigma and o_fused.n_cr == o_plain.n_cr
    np.testing.assert_allclose(n_fused.params, n_plain.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(o_fused.mu, o_plain.mu, rtol=1e-4, atol=1e-8)
    assert o_fused.loss == pytest.approx(o_plain.loss, rel=1e-5)
