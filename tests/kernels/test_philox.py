"""philox.cuh and the elementwise loop bodies, built by the host C compiler, against minirso.random.

The header is C that is also CUDA C, so the host C compiler builds the SAME text and the arithmetic is checked
here without a GPU, on NumPy arrays whatever the backend: Philox words bit for bit against
``minirso.random.random_bits``, normals against ``minirso.random.normal`` (equal up to the last bit of the C
library's float64 log / cos against NumPy's), the aMC proposal, move and eq. (10) bit for bit against the plain
array code given the same normals, for one chain and for K chains (the C harness in conftest.py).
"""

import re

import numpy as np
import pytest

from minirso import kernels
from minirso import random as mr

from ._host import c_normals, c_words, ptr

# seeds and streams above 2^32 and 2^63, offsets that cross a block and the 2^32 counter boundary
CASES = [(0, 0, 0), (7, 1, 3), (2**63 + 12345, 2**33 + 5, 2**32 - 3), (123456789, 4, 2**40 + 7)]


def test_header_constants_are_minirso_random_s():
    """minirso.random is the source of truth: the header's #define'd constants equal its PHILOX_* numbers,
    and Box-Muller's 2 pi and 2^-32 are the float64 numbers the array code uses."""
    defines = dict(
        re.findall(r"^#define MINIRSO_PHILOX_(\w+) (0x[0-9A-Fa-f]+)(?:u|ull)\b", kernels.PHILOX_SOURCE, re.MULTILINE)
    )
    assert {k: int(v, 16) for k, v in defines.items()} == {
        "M0": mr.PHILOX_M0,
        "M1": mr.PHILOX_M1,
        "W0": mr.PHILOX_W0,
        "W1": mr.PHILOX_W1,
    }
    assert float("6.283185307179586") == 2.0 * np.pi and float("4294967296.0") == 2.0**32
    assert "cos(6.283185307179586 * u2)" in kernels.PHILOX_SOURCE and "(1.0 / 4294967296.0)" in kernels.PHILOX_SOURCE


@pytest.mark.parametrize("seed, stream, offset", CASES)
def test_philox_words_bit_identical(lib, seed, stream, offset):
    np.testing.assert_array_equal(
        c_words(lib, seed, stream, offset, 1001), mr.random_bits(seed, stream, offset, 1001, np)
    )


def test_philox_known_answer(lib):
    """Random123's kat_vectors for philox4x32-10, counter = key = 0: 6627e8d5 e169c58d bc57ac4c 9b00dbd8."""
    np.testing.assert_array_equal(
        c_words(lib, 0, 0, 0, 4), np.array([0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8], np.uint32)
    )


@pytest.mark.parametrize("seed, stream, offset", CASES)
def test_normals_match_random_normal(lib, seed, stream, offset):
    n = 20001
    c = c_normals(lib, seed, stream, offset, n)
    ref = mr.normal(seed, stream, offset, n, np, dtype=np.float32)
    # the same float64 formula; the C library's log / cos and NumPy's may differ in the last bit,
    # which survives the rounding to float32 only rarely
    np.testing.assert_allclose(c, ref, rtol=2e-7, atol=1e-7)
    assert np.mean(c == ref) > 0.99
    assert abs(float(c.mean())) < 0.03 and abs(float(c.std()) - 1) < 0.03  # and they are standard normals


def test_amc_proposal_one_chain(lib):
    """Scalar sigma and a lambda * sigma array: bit for bit the plain mu + scale * z of the same normals."""
    r = np.random.default_rng(3)
    p, seed, stream, offset = 5003, 2**40 + 9, 11, 7 * 5003
    mu = (r.standard_normal(p) * 1e-3).astype(np.float32)
    z = c_normals(lib, seed, stream, offset, p)
    out = np.empty(p, np.float32)
    sigma = 0.0123
    lib.proposal_scalar(ptr(mu), sigma, seed, stream, offset, 1, p, ptr(out))
    np.testing.assert_array_equal(out, mu + sigma * z)  # NumPy 2: the Python float is rounded to float32 first
    scale = (r.uniform(0.5, 2.0, p) * np.float32(sigma)).astype(np.float32)  # lambda_i sigma
    seeds = np.array([seed], np.uint64)
    lib.proposal_arrays(ptr(mu), ptr(scale), 0, ptr(seeds), stream, offset, 1, p, ptr(out))
    np.testing.assert_array_equal(out, mu + scale * z)


def test_amc_proposal_k_chains(lib):
    """K rows, each with its own seed and sigma, counting from the same offset: AMCChains' plain proposal."""
    r = np.random.default_rng(4)
    k, p, stream, offset = 5, 777, 11, 3 * 777
    seeds = np.array([5, 2**63 + 1, 17, 0, 99], np.uint64)
    mu = (r.standard_normal((k, p)) * 1e-3).astype(np.float32)
    sigma = r.uniform(1e-4, 1e-2, k).astype(np.float32)
    out = np.empty((k, p), np.float32)
    lib.proposal_arrays(ptr(mu), ptr(sigma), 1, ptr(seeds), stream, offset, k, p, ptr(out))
    z = np.stack([c_normals(lib, int(s), stream, offset, p) for s in seeds])
    np.testing.assert_array_equal(out, mu + sigma[:, None] * z)
    ref = mu + sigma[:, None] * np.stack([mr.normal(int(s), stream, offset, p, np) for s in seeds])
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-9)


def test_amc_move_and_mu_update(lib):
    """The fused move: saved = x, eps = the proposal, x = x + eps, bit for bit the plain three passes
    (scalar sigma and lambda sigma); eq. (10) bit for bit the plain ``mu += epsilon * (eps - mu)``."""
    r = np.random.default_rng(5)
    p, seed, stream, offset = 3001, 77, 11, 12 * 3001
    mu = (r.standard_normal(p) * 1e-3).astype(np.float32)
    x0 = (r.standard_normal(p) * 0.3 + 0.1).astype(np.float32)
    z = c_normals(lib, seed, stream, offset, p)
    lam_sigma = (r.uniform(0.5, 2.0, p) * np.float32(0.02)).astype(np.float32)
    for scale in (0.0173, lam_sigma):
        x, saved, eps = x0.copy(), np.full(p, np.nan, np.float32), np.full(p, np.nan, np.float32)
        is_array = isinstance(scale, np.ndarray)
        lib.move(
            ptr(mu),
            ptr(scale) if is_array else None,
            int(is_array),
            0.0 if is_array else scale,
            seed,
            stream,
            offset,
            p,
            ptr(x),
            ptr(saved),
            ptr(eps),
        )
        ref_eps = mu + scale * z
        np.testing.assert_array_equal(eps, ref_eps)
        np.testing.assert_array_equal(saved, x0)
        np.testing.assert_array_equal(x, x0 + ref_eps)
    m = mu.copy()
    lib.mu_update(ptr(eps), 0.013, p, ptr(m))
    ref = mu.copy()
    ref += 0.013 * (eps - ref)
    np.testing.assert_array_equal(m, ref)
    assert not np.array_equal(m, mu)
