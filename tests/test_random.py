"""minirso.random: Philox4x32-10, counter-based.

Checked against the Random123 known-answer vectors, an independent pure-Python
Philox written here, the documented index maps (word i of (seed, stream) is
Philox(key=seed, counter=(i // 4, stream))[i % 4]; normal k is Box-Muller of
words 2k, 2k+1), slicing consistency, and distribution statistics.
"""

import math

import numpy as np
import pytest

import minirso
from minirso.random import normal, philox4x32, random_bits, uniform

M32 = 0xFFFFFFFF


# ---- an independent reference: Philox4x32-10 in plain Python integers (Salmon et al. 2011) -------
def philox_ref(ctr, key, rounds=10):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(rounds):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        hi0, lo0, hi1, lo1 = p0 >> 32, p0 & M32, p1 >> 32, p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def bits_ref(seed, stream, i):
    """Word i of the (seed, stream) sequence, by the formula in minirso.random's docstring."""
    block = i // 4
    ctr = (block & M32, block >> 32, stream & M32, stream >> 32)
    return philox_ref(ctr, (seed & M32, seed >> 32))[i % 4]


KAT = [  # Random123 kat_vectors, philox4x32_10: counter, key, expected output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32, M32, M32, M32), (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def np_(a):
    return minirso.to_numpy(a)


# ---- known answers -------------------------------------------------------------------------------
@pytest.mark.parametrize("ctr, key, expected", KAT)
def test_philox_known_answers(xp, ctr, key, expected):
    out = philox4x32(*(xp.asarray([c], dtype=xp.uint32) for c in ctr), key[0], key[1])
    assert tuple(int(np_(w)[0]) for w in out) == expected
    assert all(np_(w).dtype == np.uint32 for w in out)


@pytest.mark.parametrize("ctr, key, expected", KAT)
def test_reference_implementation_known_answers(ctr, key, expected):
    assert philox_ref(ctr, key) == expected  # the oracle used below is itself right


def test_philox_vectorised_over_counters(xp):
    ctrs = [KAT[0][0], KAT[1][0], KAT[2][0], (1, 2, 3, 4)]
    key = (0xA4093822, 0x299F31D0)
    cols = [xp.asarray([c[k] for c in ctrs], dtype=xp.uint32) for k in range(4)]
    out = np.stack([np_(w) for w in philox4x32(*cols, *key)], axis=1)
    for row, c in zip(out, ctrs):
        assert tuple(int(v) for v in row) == philox_ref(c, key)


def test_random_bits_follow_documented_counter_layout(xp):
    """bits(seed, stream, i) = Philox(key=seed, counter=(i//4 lo, i//4 hi, stream lo, stream hi))[i % 4],
    with high words of seed, stream and block index all non-zero."""
    seed, stream = 0x0123456789ABCDEF, 0xFEDCBA9876543210
    offset = (5 << 34) + 2  # block index >= 2**32: exercises the counter's second word
    got = np_(random_bits(seed, stream, offset, 11, xp=xp))
    assert got.dtype == np.uint32
    assert [int(v) for v in got] == [bits_ref(seed, stream, offset + k) for k in range(11)]


def test_random_bits_small_offsets_match_reference(xp):
    got = np_(random_bits(42, 7, 0, 10, xp=xp))
    assert [int(v) for v in got] == [bits_ref(42, 7, k) for k in range(10)]
    # word 0 of (seed 0, stream 0) is the first KAT word
    assert int(np_(random_bits(0, 0, 0, 1, xp=xp))[0]) == 0x6627E8D5


def test_extreme_seed_stream_and_offset(xp):
    top = 2**64 - 1
    got = np_(random_bits(top, top, top - 6, 7, xp=xp))
    assert [int(v) for v in got] == [bits_ref(top, top, top - 6 + k) for k in range(7)]


# ---- slicing: offset k, length n == [k:k+n] of a longer draw -------------------------------------
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5, 7, 13, 30])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 9])
def test_slices_are_consistent(xp, offset, n):
    seed, stream = 2024, 3
    long_bits = np_(random_bits(seed, stream, 0, 64, xp=xp))
    long_u = np_(uniform(seed, stream, 0, 64, xp=xp))
    long_z = np_(normal(seed, stream, 0, 64, xp=xp))
    b = np_(random_bits(seed, stream, offset, n, xp=xp))
    u = np_(uniform(seed, stream, offset, n, xp=xp))
    z = np_(normal(seed, stream, offset, n, xp=xp))
    assert b.shape == u.shape == z.shape == (n,)
    np.testing.assert_array_equal(b, long_bits[offset : offset + n])
    np.testing.assert_array_equal(u, long_u[offset : offset + n])
    np.testing.assert_array_equal(z, long_z[offset : offset + n])


def test_uniform_and_normal_follow_documented_maps(xp):
    seed, stream, offset, n = 99, 5, 3, 17
    bits = np.array([bits_ref(seed, stream, k) for k in range(2 * (offset + n))], dtype=np.float64)
    u = np_(uniform(seed, stream, offset, n, xp=xp))
    assert u.dtype == np.float64
    np.testing.assert_array_equal(u, (bits[offset : offset + n] + 0.5) / 2**32)
    z = np_(normal(seed, stream, offset, n, xp=xp))
    assert z.dtype == np.float32
    u1 = (bits[2 * offset :: 2] + 0.5) / 2**32  # words 2k
    u2 = (bits[2 * offset + 1 :: 2] + 0.5) / 2**32  # words 2k + 1
    expected = np.array([math.sqrt(-2 * math.log(a)) * math.cos(2 * math.pi * b) for a, b in zip(u1, u2)])
    np.testing.assert_allclose(z, expected.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_same_inputs_same_output(xp):
    for f in (random_bits, uniform, normal):
        np.testing.assert_array_equal(np_(f(5, 1, 10, 100, xp=xp)), np_(f(5, 1, 10, 100, xp=xp)))


def test_default_array_module_is_active_backend():
    a = normal(1, 2, 0, 8)
    assert minirso.get_array_module(a) is minirso.backend.xp()


@pytest.mark.parametrize(
    "a, b",
    [
        ((0, 0), (1, 0)),  # seed
        ((0, 0), (0, 1)),  # stream
        ((0, 0), (1 << 32, 0)),  # seed, high word only
        ((0, 0), (0, 1 << 32)),  # stream, high word only
        ((3, 5), (5, 3)),  # seed and stream are not interchangeable
    ],
)
def test_different_seeds_and_streams_differ(xp, a, b):
    n = 256
    for f in (random_bits, normal):
        x, y = np_(f(*a, 0, n, xp=xp)), np_(f(*b, 0, n, xp=xp))
        assert np.count_nonzero(x == y) <= 2  # independent 32-bit words: a match is a ~2^-32 event


# ---- ranges and distributions --------------------------------------------------------------------
def test_uniform_open_interval_and_moments(xp):
    n = 10**6
    u = np_(uniform(11, 2, 0, n, xp=xp))
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)  # SE of the mean of U(0, 1): sqrt(1/12/n)


def test_uniform_extremes_map_inside_open_interval(xp):
    """Words 0 and 2**32-1 (found offline at seed 0, stream 0) give values strictly inside (0, 1) in float64."""
    lo_off, hi_off = 71035964, 44126575
    assert int(np_(random_bits(0, 0, lo_off, 1, xp=xp))[0]) <= 0x7F
    assert int(np_(random_bits(0, 0, hi_off, 1, xp=xp))[0]) >= 0xFFFFFF80
    lo, hi = np_(uniform(0, 0, lo_off, 1, xp=xp))[0], np_(uniform(0, 0, hi_off, 1, xp=xp))[0]
    assert 0.0 < lo < 1e-7 and 1 - 1e-7 < hi < 1.0


def test_uniform_float32_stays_below_one(xp):
    """Regression: (bits + 0.5) / 2**32 rounded to exactly 1.0 in float32 for the top words."""
    hi_off = 44126575  # seed 0, stream 0: word 0xFFFFFFCC
    u = np_(uniform(0, 0, hi_off, 1, xp=xp, dtype=np.float32))
    assert u.dtype == np.float32
    assert u[0] < 1.0 and u[0] == np.float32(1 - 2**-24)
    # the float32 formula, checked word by word: ((bits >> 9) + 0.5) / 2**23
    bits = np_(random_bits(5, 6, 0, 1000, xp=xp)).astype(np.int64)
    expect = ((bits >> 9) + 0.5) / 2**23
    np.testing.assert_array_equal(np_(uniform(5, 6, 0, 1000, xp=xp, dtype=np.float32)), expect.astype(np.float32))
    with pytest.raises(ValueError, match="dtype"):
        uniform(0, 0, 0, 3, xp=xp, dtype=np.float16)


def test_random_bits_each_bit_balanced(xp):
    n = 200_000
    b = np_(random_bits(8, 9, 0, n, xp=xp))
    ones = np.array([np.count_nonzero((b >> np.uint32(k)) & np.uint32(1)) for k in range(32)]) / n
    assert np.all(np.abs(ones - 0.5) < 5 * math.sqrt(0.25 / n))


def test_normal_moments_within_statistical_bounds(xp):
    n = 10**6
    z = np_(normal(123, 4, 0, n, xp=xp)).astype(np.float64)
    assert np.all(np.isfinite(z))
    mean, std = z.mean(), z.std()
    skew = np.mean(((z - mean) / std) ** 3)
    kurt = np.mean(((z - mean) / std) ** 4) - 3.0
    assert abs(mean) < 5 / math.sqrt(n)  # SE of the mean: 1/sqrt(n)
    assert abs(std - 1.0) < 5 / math.sqrt(2 * n)  # SE of the std of a normal: 1/sqrt(2n)
    assert abs(skew) < 5 * math.sqrt(6 / n)  # SE of the skewness: sqrt(6/n)
    assert abs(kurt) < 5 * math.sqrt(24 / n)  # SE of the excess kurtosis: sqrt(24/n)


def test_normal_kolmogorov_smirnov(xp):
    n = 10**6
    z = np.sort(np_(normal(7, 0, 0, n, xp=xp)).astype(np.float64))
    cdf = 0.5 * (1.0 + np.frompyfunc(math.erf, 1, 1)(z / math.sqrt(2.0)).astype(np.float64))
    i = np.arange(1, n + 1)
    d = max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    critical = math.sqrt(-0.5 * math.log(0.001 / 2)) / math.sqrt(n)  # asymptotic 0.1% value, ~1.95/sqrt(n)
    assert d < critical


def test_normal_tail_frequencies(xp):
    """P(|z| > 3) = 0.0027: a wrong Box-Muller (e.g. missing sqrt or factor 2) fails this."""
    n = 10**6
    z = np_(normal(31, 1, 0, n, xp=xp))
    p = math.erfc(3 / math.sqrt(2))
    frac = np.count_nonzero(np.abs(z) > 3) / n
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)


# ---- argument validation -------------------------------------------------------------------------
BAD = [-1, 2**64, 1.0, 3.5, True, False, "1", None]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("f", [random_bits, uniform, normal])
def test_invalid_seed_raises(f, bad):
    with pytest.raises(ValueError, match="seed"):
        f(bad, 0, 0, 4)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("f", [random_bits, uniform, normal])
def test_invalid_stream_raises(f, bad):
    with pytest.raises(ValueError, match="stream"):
        f(0, bad, 0, 4)


@pytest.mark.parametrize("bad", [-1, 2**64, 2.0, True])
def test_invalid_offset_raises(bad):
    with pytest.raises(ValueError, match="offset"):
        random_bits(0, 0, bad, 4)


@pytest.mark.parametrize("f", [random_bits, uniform, normal])
def test_negative_n_raises(f):
    with pytest.raises(ValueError, match="n must be"):
        f(0, 0, 0, -1)


def test_numpy_integer_and_boundary_seeds_accepted(xp):
    a = np_(random_bits(np.uint64(2**64 - 1), np.int64(3), 0, 4, xp=xp))
    b = np_(random_bits(2**64 - 1, 3, 0, 4, xp=xp))
    np.testing.assert_array_equal(a, b)
    assert random_bits(0, 0, 0, 4, xp=xp).shape == (4,)


# ---- NumPy vs CuPy -------------------------------------------------------------------------------
@pytest.mark.gpu
def test_numpy_and_cupy_draw_the_same_numbers():
    import cupy

    for seed, stream, offset, n in [(0, 0, 0, 1000), (2**63 + 5, 2**40 + 1, 3, 12345), (7, 1, 2**40 + 1, 999)]:
        b_np = random_bits(seed, stream, offset, n, xp=np)
        b_cp = random_bits(seed, stream, offset, n, xp=cupy)
        assert isinstance(b_cp, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(b_cp), b_np)
        np.testing.assert_array_equal(
            cupy.asnumpy(uniform(seed, stream, offset, n, xp=cupy)), uniform(seed, stream, offset, n, xp=np)
        )
        z_np = normal(seed, stream, offset, n, xp=np)
        z_cp = cupy.asnumpy(normal(seed, stream, offset, n, xp=cupy))
        assert z_cp.dtype == z_np.dtype == np.float32
        # float64 log/cos may differ in the last bits; after rounding to float32, at most one ulp apart
        np.testing.assert_array_max_ulp(z_cp, z_np, maxulp=1)


def test_integers_are_floor_of_scaled_uniforms_and_in_range(xp):
    """integers(..., high) = floor(high * uniform(...)) elementwise, inside [0, high), every value reachable."""
    from minirso.random import integers

    got = minirso.to_numpy(integers(77, 5, 123, 4000, 7, xp))
    u = minirso.to_numpy(uniform(77, 5, 123, 4000, xp))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.floor(u * 7).astype(np.int64))
    assert got.min() == 0 and got.max() == 6
    assert np.abs(np.bincount(got, minlength=7) / 4000 - 1 / 7).max() < 0.03


def test_the_reference_generator_imports_no_gpu_code():
    """minirso.random is the plain reference: it imports NumPy and the backend only, never minirso.kernels
    (whose philox.cuh repeats its constants; tests/kernels/test_philox.py checks the two agree)."""
    import ast

    import minirso.random

    tree = ast.parse(open(minirso.random.__file__, encoding="utf-8").read())
    absolute, relative = set(), set()  # "numpy"; "backend" for ``from .backend import ...``
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            absolute.add(node.module)
        elif isinstance(node, ast.ImportFrom):  # ``from . import x`` imports module x; ``from .m import f``, m
            relative |= {node.module} if node.module else {a.name for a in node.names}
    assert absolute <= {"__future__", "numpy"} and relative == {"backend"}, (absolute, relative)
