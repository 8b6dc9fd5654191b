"""The CuPy stand-in's arrays (tests/standin/cupy: _core, _ufunc, _indexing, _functions, _promotion, cuda) against
CuPy's documented behaviour and source (tags v13.6.0 / v14.2.0; each test names its reference).

Every test of a CuPy behaviour takes the ``cp`` fixture: the stand-in (loaded under a private name,
tests/_cupy_standin.py, never as ``cupy``) in every lane, and also the real CuPy (id ``cupy``) where one is
importable and sees a GPU (benchmarks/device_check.sh), so any place where the stand-in and CuPy disagree shows
as a failure of the ``cupy`` case; the fix goes into the stand-in.  Tests of what only the stand-in has
(counters, garbage in ``empty``, switching its promotion mode, checks where it is deliberately stricter than
CuPy) are marked ``@standin_only`` and say why.
"""

import contextlib

import numpy as np
import pytest

from . import _cupy_standin

SI = _cupy_standin.load()  # the stand-in, under its private name
CTL = SI._standin


def _real_cupy():
    """The real CuPy module if it imports and sees a CUDA device, else None.  With ``PYTHONPATH=tests/standin``
    the name ``cupy`` is the stand-in (it has ``_standin``): then there is no real CuPy to compare with."""
    try:
        import cupy
    except Exception:  # not installed, or its CUDA libraries are missing
        return None
    if hasattr(cupy, "_standin"):
        return None
    try:
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # no driver / no device
        return None


_REAL = _real_cupy()
MODULES = [pytest.param(SI, id="standin")] + ([pytest.param(_REAL, id="cupy")] if _REAL is not None else [])
standin_only = pytest.mark.parametrize("cp", [pytest.param(SI, id="standin")])


def is_standin(cp):
    return cp is SI


@pytest.fixture(params=MODULES)
def cp(request):
    """The module under test: the stand-in, and the real CuPy where one is usable."""
    return request.param


def counting(cp):
    """The stand-in's counters around a block (``with counting(cp) as d``: ``d`` is their delta); a real CuPy
    has none (``d`` is None), so count assertions go under ``if is_standin(cp)``."""
    return cp._standin.counters.counting() if is_standin(cp) else contextlib.nullcontext()


def promotion(cp, monkeypatch, m):
    """Scalar promotion of CuPy ``m`` ("13" value-based, "14" NEP 50): the stand-in is switched to it; a real
    CuPy has its major version's, so a test for the other one is skipped there."""
    if is_standin(cp):
        monkeypatch.setattr(cp._standin, "PROMOTION", m)
    elif cp.__version__.split(".")[0] != m:
        pytest.skip(f"CuPy {cp.__version__} has its own major version's promotion, not CuPy {m}'s")


def assert_version(cp, m):
    """``cupy.__version__``: the stand-in's is exactly the modelled tag; a real CuPy's major version is ``m``."""
    if is_standin(cp):
        assert cp.__version__ == {"13": "13.6.0", "14": "14.2.0"}[m]
    else:
        assert cp.__version__.split(".")[0] == m


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def x(cp, rng):
    """An asymmetric float32 device array (3, 4)."""
    return cp.asarray(rng.standard_normal((3, 4)).astype(np.float32) + 0.25)


# ---- no implicit host <-> device traffic ---------------------------------------------------------------------
def test_array_protocol_refuses_implicit_conversion(cp, x):
    """core.pyx ``__array__``: TypeError 'Implicit conversion to a NumPy array is not allowed...'."""
    with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not allowed. Please use `.get\(\)`"):
        np.asarray(x)
    assert isinstance(x, cp.ndarray) and not isinstance(x, np.ndarray)
    assert type(x).__module__ == "cupy"


@pytest.mark.parametrize("host", [np.ones(4, np.float32), np.full((), 2.0, np.float32)])
def test_elementwise_with_numpy_array_raises_both_ways(cp, x, host):
    """_kernel.pyx ``_preprocess_arg``: a numpy.ndarray (0-d too) is 'Unsupported type'; core.pyx
    ``__array_ufunc__`` hands ``numpy_array + cupy_array`` to the same CuPy ufunc."""
    with pytest.raises(TypeError, match="Unsupported type"):
        x + host
    with pytest.raises(TypeError, match="Unsupported type"):
        host * x
    with pytest.raises(TypeError):
        cp.maximum(x, host)


def test_numpy_scalars_and_python_scalars_are_accepted(cp, x):
    """_scalar.pyx ``scalar_to_numpy_scalar``: Python and NumPy scalars are kernel arguments."""
    want = x.get() * np.float32(3) + 2
    got = np.float32(3) * x + 2
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(got.get(), want)


def test_comparison_with_0d_numpy_array_uses_its_item(cp, x):
    """core.pyx ``__richcmp__``: a 0-d numpy.ndarray compares as ``other.item()``."""
    np.testing.assert_array_equal((x < np.asarray(0.3)).get(), x.get() < 0.3)


def test_numpy_functions_dispatch_or_raise(cp, x):
    """core.pyx ``__array_ufunc__``/``__array_function__``: ``numpy.f(cupy_array)`` runs ``cupy.f``; a function
    the module lacks returns NotImplemented, so NumPy raises TypeError.  The stand-in lacks ``median`` (a real
    CuPy has it, and dispatches); neither has ``busday_count``."""
    got = np.maximum(x, 0.0)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(got.get(), np.maximum(x.get(), 0.0))
    if is_standin(cp):
        with pytest.raises(TypeError, match="no implementation found for 'numpy.median'"):
            np.median(x)
    else:
        got = np.median(x)
        assert isinstance(got, cp.ndarray)
        np.testing.assert_allclose(got.get(), np.median(x.get()), rtol=1e-6)
    assert not hasattr(cp, "busday_count")
    with pytest.raises(TypeError, match="no implementation found for 'numpy.busday_count'"):
        np.busday_count(x, x)


def test_setitem_numpy_array_into_slice_raises_but_scalars_and_device_arrays_work(cp, x, rng):
    """_routines_indexing.pyx ``_scatter_op`` -> core.pyx ``fill``: 'non-scalar numpy.ndarray cannot be used
    for fill'; a scalar fills; a cupy array is copied with broadcasting."""
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x[0] = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x[...] = [1.0, 2.0, 3.0, 4.0]
    row = rng.standard_normal(4).astype(np.float32)
    want = x.get()
    want[1:] = row
    want[0, 2] = -7.5
    x[1:] = cp.asarray(row)
    x[0, 2] = -7.5
    np.testing.assert_array_equal(x.get(), want)


def test_ascontiguousarray_takes_device_arrays_only(cp):
    """core.pyx ``ascontiguousarray(_ndarray_base a, ...)``: a numpy.ndarray is a TypeError."""
    with pytest.raises(TypeError):
        cp.ascontiguousarray(np.ones(3))


# ---- indexing ------------------------------------------------------------------------------------------------
def test_integer_array_indices_wrap_around(cp):
    """core.pyx ``__getitem__``/``__setitem__`` docstrings: ``arange(3)[[1, 3]] == [1, 0]``;
    ``x[[1, 3]] = 10`` gives ``[10, 10, 2]`` (CuPy wraps out-of-bounds indices, NumPy raises)."""
    np.testing.assert_array_equal(cp.arange(3)[[1, 3]].get(), [1, 0])
    np.testing.assert_array_equal(cp.arange(3)[cp.asarray([-4, 5])].get(), [2, 2])
    y = cp.arange(3)
    y[[1, 3]] = 10
    np.testing.assert_array_equal(y.get(), [10, 10, 2])
    z = cp.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(z[:, [5, -1]].get(), np.arange(12).reshape(3, 4)[:, [1, 3]])


def test_boolean_mask_costs_a_sync(cp, x):
    """_routines_indexing.pyx ``_prepare_mask_indexing_single``: ``int(mask_scanned[-1])`` syncs (the sync is
    counted on the stand-in only; the result is checked on both)."""
    with counting(cp) as d:
        got = x[x > 0.3]
    np.testing.assert_array_equal(got.get(), x.get()[x.get() > 0.3])
    if is_standin(cp):
        assert d["syncs"] == 1


# ---- results stay on the device ------------------------------------------------------------------------------
def test_reductions_return_0d_device_arrays(cp, x):
    """_reduction.pyx: a full reduction is a 0-d cupy.ndarray, not a NumPy scalar; sum keeps float32 and sums
    integers to int64 (_routines_math.pyx ``_sum_auto_dtype``)."""
    for r, want in (
        (x.sum(), x.get().sum()),
        (x.max(), x.get().max()),
        (x.mean(), x.get().mean()),
        (x.argmax(), x.get().argmax()),
    ):
        assert isinstance(r, cp.ndarray) and r.shape == ()
        np.testing.assert_allclose(r.get(), want, rtol=1e-6)
    assert x.sum().dtype == np.float32
    assert cp.arange(5, dtype=np.int32).sum().dtype == np.int64


@standin_only
def test_empty_is_garbage_and_launches_nothing(cp):
    """basic.py ``empty``: 'Returns an array without initializing the elements' (never zeros here).  Stand-in
    only: a real CuPy's uninitialised memory may well be zeros, and it has no launch counter."""
    with CTL.counters.counting() as d:
        e = cp.empty((4, 5), np.float32)
        f = cp.empty_like(cp.ndarray((2,), np.int64))
    assert d["launches"] == 0
    assert not np.all(e.get() == 0) and not np.all(f.get() == 0)


def test_conversions_sync_once_and_misuse_raises(cp, x):
    """core.pyx: ``float``/``int``/``bool``/``item``/``tolist`` all go through ``get()`` (one sync each: counted
    on the stand-in only); several elements raise as NumPy does; ``item`` says 'can only convert an array of
    size 1'."""
    s = x[1, 2]
    with counting(cp) as d:
        values = (float(s), int(s > 0), bool(s > 0), s.item(), x.get())
    if is_standin(cp):
        assert d["syncs"] == 5 and d["d2h"] == 5
    assert values[0] == values[3] == float(values[4][1, 2])
    with pytest.raises(ValueError, match="can only convert an array of size 1"):
        x.item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)
    with pytest.raises(TypeError):
        float(x)


# ---- counters ------------------------------------------------------------------------------------------------
@standin_only
def test_counters_launches_views_and_copies(cp, x, rng):
    """_standin counters: an elementwise op, a reduction and a matmul are one launch each; views none;
    asarray(numpy) is one host-to-device copy; asarray(cupy) copies nothing.  Stand-in only: the counters are
    the stand-in's."""
    h = rng.standard_normal((4, 2)).astype(np.float32)
    with CTL.counters.counting() as d:
        v = x.T[1:].reshape(-1)[None]  # transpose, slice: still a view; reshape of a non-contiguous copy
    assert d["launches"] == 1
    with CTL.counters.counting() as d:
        views = (
            x.T,
            x[1:],
            x.reshape(4, 3),
            x[None],
            x.ravel(),
            cp.broadcast_to(x, (2, 3, 4)),
            x.astype(np.float32, copy=False),
            cp.asarray(x),
        )
    assert d["launches"] == 0 and views[-1] is x and v.shape == (1, 9)
    with CTL.counters.counting() as d:
        y = x * 2.0
        s = y.sum()
        m = x @ cp.asarray(h)
    assert d["launches"] == 3 and d["h2d"] == 1
    assert d["flops"] == 12 + 12 + 2 * 3 * 2 * 4
    assert d["by_name"]["cupy_matmul"] == 1
    np.testing.assert_allclose(m.get(), x.get() @ h, rtol=1e-5)
    assert s.shape == ()


def test_inplace_operator_checks_same_kind_cast(cp):
    """_kernel.pyx ``_get_out_args_from_optionals``: the loop's float64 output cannot go into int64 under
    'same_kind' (NumPy raises the same)."""
    a = cp.arange(3)
    with pytest.raises(TypeError):
        a += 1.5
    a += 2
    np.testing.assert_array_equal(a.get(), [2, 3, 4])


# ---- scalar promotion ----------------------------------------------------------------------------------------
def test_promotion_cupy13_value_based(cp, monkeypatch):
    """v13.6.0 _kernel.pyx ``_check_should_use_min_scalar``/``_min_scalar_type``, worked by hand: a scalar of a
    kind no higher than the arrays' counts as its minimal type, and the first loop all inputs cast to safely
    wins.  65536 is uint32-or-int32 (neither casts to float32: 'dd' loop), 65535 uint16 (casts: 'ff');
    0.5 float16 ('ff'); 1e39 float64 ('dd'); 300 uint16-or-int16 with int8 ('hh'); NumPy scalars too
    (np.float64(2) is float16: 'ff'); an int array with a float scalar: kind higher, float64 ('dd').
    The stand-in is switched to 13; a real CuPy runs this only if it is CuPy 13."""
    promotion(cp, monkeypatch, "13")
    f = cp.ones(3, np.float32)
    assert (f / 65536).dtype == np.float64
    assert (f / 65535).dtype == np.float32
    assert (f * 0.5).dtype == np.float32
    assert (f + 1e39).dtype == np.float64
    assert (cp.ones(2, np.int8) + 300).dtype == np.int16
    assert (f * np.float64(2)).dtype == np.float32
    assert (cp.arange(3, dtype=np.int32) * 0.5).dtype == np.float64
    assert (cp.arange(3, dtype=np.uint32) + (-1)).dtype == np.int64  # int8 casts to no unsigned loop
    assert_version(cp, "13")


@pytest.mark.parametrize(
    "dt, scalar",
    [
        (np.float32, 65536),
        (np.float32, 0.5),
        (np.float32, 1e30),
        (np.uint32, 2654435761),
        (np.uint32, 16),
        (np.int32, 2.5),
        (np.float32, np.float64(2)),
        (np.int8, 3),
        (np.bool_, 1),
    ],
)
def test_promotion_cupy14_is_nep50(cp, monkeypatch, dt, scalar, rng):
    """v14.2.0 _kernel.pyx ``_check_should_use_weak_scalar``: NEP 50, so the result dtype is NumPy 2's.
    The stand-in is switched to 14; a real CuPy runs this only if it is CuPy 14."""
    promotion(cp, monkeypatch, "14")
    h = (rng.integers(1, 5, 4)).astype(dt)
    for op in (np.add, np.multiply, np.true_divide, np.maximum):
        if op is np.true_divide and dt == np.bool_:
            continue
        assert op(cp.asarray(h), scalar).dtype == op(h, scalar).dtype, (op, dt, scalar)
    assert_version(cp, "14")


def test_promotion_cupy14_integer_overflow_raises(cp, monkeypatch):
    """v14.2.0 _scalar.pyx ``CScalar._store_c_value`` packs the Python int into the loop's type (NEP 50).
    The stand-in is switched to 14; a real CuPy runs this only if it is CuPy 14."""
    promotion(cp, monkeypatch, "14")
    with pytest.raises(OverflowError):
        cp.ones(2, np.int8) + 300


def test_boolean_subtract_raises(cp):
    """_routines_math.pyx ``_subtract_boolean_error``."""
    with pytest.raises(TypeError, match="boolean subtract"):
        cp.asarray([True, False]) - cp.asarray([False, False])


# ---- strictness and cuda -------------------------------------------------------------------------------------
@standin_only
def test_unmodelled_names_raise_attribute_error(cp):
    """The stand-in models only what minirso uses: any other name is an AttributeError naming it.  Stand-in
    only: a real CuPy has ``fft``, ``cuda.MemoryPool`` and ``savez``."""
    with pytest.raises(AttributeError, match="'fft'.*models only what minirso uses"):
        cp.fft
    with pytest.raises(AttributeError, match="'MemoryPool'"):
        cp.cuda.MemoryPool
    assert not hasattr(cp, "savez")


def test_cuda_device_and_stream(cp, monkeypatch):
    """device.pyx ``Device.compute_capability`` (a string, read when asked), runtime.pyx device queries,
    ``Stream.synchronize`` (one host sync).  On the stand-in: exactly one device, its compute capability set
    through ``_standin`` and the syncs counted; on a real CuPy: at least one device, and the properties agree
    with its own compute capability."""
    n = cp.cuda.runtime.getDeviceCount()
    assert n == 1 if is_standin(cp) else n >= 1
    assert cp.cuda.runtime.is_hip is False
    if is_standin(cp):
        monkeypatch.setattr(CTL, "compute_capability", "75")
        assert cp.cuda.Device().compute_capability == "75"
        assert cp.cuda.runtime.getDeviceProperties(0)["major"] == 7
    cc = cp.cuda.Device().compute_capability
    assert isinstance(cc, str) and cc.isdigit()
    props = cp.cuda.runtime.getDeviceProperties(0)
    assert (props["major"], props["minor"]) == (int(cc[:-1]), int(cc[-1]))
    assert isinstance(props["name"], bytes)
    with counting(cp) as d:
        cp.cuda.get_current_stream().synchronize()
        cp.cuda.Device(0).synchronize()
    if is_standin(cp):
        assert d["syncs"] == 2
