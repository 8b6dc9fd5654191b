"""The CuPy stand-in's arrays (tests/standin/cupy: _core, _ufunc, _indexing, _functions, _promotion, cuda) against
CuPy's documented behaviour and source (tags v13.6.0 / v14.2.0; each test names its reference).  Runs on the CPU
in every lane: the stand-in is loaded under a private name (tests/_cupy_standin.py), never as ``cupy``.
"""

import numpy as np
import pytest

from . import _cupy_standin

cp = _cupy_standin.load()
CTL = cp._standin


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def x(rng):
    """An asymmetric float32 device array (3, 4)."""
    return cp.asarray(rng.standard_normal((3, 4)).astype(np.float32) + 0.25)


def mode(monkeypatch, m):
    monkeypatch.setattr(CTL, "PROMOTION", m)


# ---- no implicit host <-> device traffic ---------------------------------------------------------------------
def test_array_protocol_refuses_implicit_conversion(x):
    """core.pyx ``__array__``: TypeError 'Implicit conversion to a NumPy array is not allowed...'."""
    with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not allowed. Please use `.get\(\)`"):
        np.asarray(x)
    assert isinstance(x, cp.ndarray) and not isinstance(x, np.ndarray)
    assert type(x).__module__ == "cupy"


@pytest.mark.parametrize("host", [np.ones(4, np.float32), np.full((), 2.0, np.float32)])
def test_elementwise_with_numpy_array_raises_both_ways(x, host):
    """_kernel.pyx ``_preprocess_arg``: a numpy.ndarray (0-d too) is 'Unsupported type'; core.pyx
    ``__array_ufunc__`` hands ``numpy_array + cupy_array`` to the same CuPy ufunc."""
    with pytest.raises(TypeError, match="Unsupported type"):
        x + host
    with pytest.raises(TypeError, match="Unsupported type"):
        host * x
    with pytest.raises(TypeError):
        cp.maximum(x, host)


def test_numpy_scalars_and_python_scalars_are_accepted(x):
    """_scalar.pyx ``scalar_to_numpy_scalar``: Python and NumPy scalars are kernel arguments."""
    want = x.get() * np.float32(3) + 2
    got = np.float32(3) * x + 2
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(got.get(), want)


def test_comparison_with_0d_numpy_array_uses_its_item(x):
    """core.pyx ``__richcmp__``: a 0-d numpy.ndarray compares as ``other.item()``."""
    np.testing.assert_array_equal((x < np.asarray(0.3)).get(), x.get() < 0.3)


def test_numpy_functions_dispatch_or_raise(x):
    """core.pyx ``__array_ufunc__``/``__array_function__``: ``numpy.f(cupy_array)`` runs ``cupy.f``; a function
    CuPy (here: the stand-in) lacks returns NotImplemented, so NumPy raises TypeError."""
    got = np.maximum(x, 0.0)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(got.get(), np.maximum(x.get(), 0.0))
    with pytest.raises(TypeError, match="no implementation found for 'numpy.median'"):
        np.median(x)


def test_setitem_numpy_array_into_slice_raises_but_scalars_and_device_arrays_work(x, rng):
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


def test_ascontiguousarray_takes_device_arrays_only():
    """core.pyx ``ascontiguousarray(_ndarray_base a, ...)``: a numpy.ndarray is a TypeError."""
    with pytest.raises(TypeError):
        cp.ascontiguousarray(np.ones(3))


# ---- indexing ------------------------------------------------------------------------------------------------
def test_integer_array_indices_wrap_around():
    """core.pyx ``__getitem__``/``__setitem__`` docstrings: ``arange(3)[[1, 3]] == [1, 0]``;
    ``x[[1, 3]] = 10`` gives ``[10, 10, 2]`` (CuPy wraps out-of-bounds indices, NumPy raises)."""
    np.testing.assert_array_equal(cp.arange(3)[[1, 3]].get(), [1, 0])
    np.testing.assert_array_equal(cp.arange(3)[cp.asarray([-4, 5])].get(), [2, 2])
    y = cp.arange(3)
    y[[1, 3]] = 10
    np.testing.assert_array_equal(y.get(), [10, 10, 2])
    z = cp.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(z[:, [5, -1]].get(), np.arange(12).reshape(3, 4)[:, [1, 3]])


def test_boolean_mask_costs_a_sync(x):
    """_routines_indexing.pyx ``_prepare_mask_indexing_single``: ``int(mask_scanned[-1])`` syncs."""
    with CTL.counters.counting() as d:
        got = x[x > 0.3]
    np.testing.assert_array_equal(got.get(), x.get()[x.get() > 0.3])
    assert d["syncs"] == 1


# ---- results stay on the device ------------------------------------------------------------------------------
def test_reductions_return_0d_device_arrays(x):
    """_reduction.pyx: a full reduction is a 0-d cupy.ndarray, not a NumPy scalar; sum keeps float32 and sums
    integers to int64 (_routines_math.pyx ``_sum_auto_dtype``)."""
    for r, want in ((x.sum(), x.get().sum()), (x.max(), x.get().max()), (x.mean(), x.get().mean()),
                    (x.argmax(), x.get().argmax())):
        assert isinstance(r, cp.ndarray) and r.shape == ()
        np.testing.assert_allclose(r.get(), want, rtol=1e-6)
    assert x.sum().dtype == np.float32
    assert cp.arange(5, dtype=np.int32).sum().dtype == np.int64


def test_empty_is_garbage_and_launches_nothing():
    """basic.py ``empty``: 'Returns an array without initializing the elements' (never zeros here)."""
    with CTL.counters.counting() as d:
        e = cp.empty((4, 5), np.float32)
        f = cp.empty_like(cp.ndarray((2,), np.int64))
    assert d["launches"] == 0
    assert not np.all(e.get() == 0) and not np.all(f.get() == 0)


def test_conversions_sync_once_and_misuse_raises(x):
    """core.pyx: ``float``/``int``/``bool``/``item``/``tolist`` all go through ``get()`` (one sync each);
    several elements raise as NumPy does; ``item`` says 'can only convert an array of size 1'."""
    s = x[1, 2]
    with CTL.counters.counting() as d:
        values = (float(s), int(s > 0), bool(s > 0), s.item(), x.get())
    assert d["syncs"] == 5 and d["d2h"] == 5
    assert values[0] == values[3] == float(values[4][1, 2])
    with pytest.raises(ValueError, match="can only convert an array of size 1"):
        x.item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)
    with pytest.raises(TypeError):
        float(x)


# ---- counters ------------------------------------------------------------------------------------------------
def test_counters_launches_views_and_copies(x, rng):
    """_standin counters: an elementwise op, a reduction and a matmul are one launch each; views none;
    asarray(numpy) is one host-to-device copy; asarray(cupy) copies nothing."""
    h = rng.standard_normal((4, 2)).astype(np.float32)
    with CTL.counters.counting() as d:
        v = x.T[1:].reshape(-1)[None]  # transpose, slice: still a view; reshape of a non-contiguous copy
    assert d["launches"] == 1
    with CTL.counters.counting() as d:
        views = (x.T, x[1:], x.reshape(4, 3), x[None], x.ravel(), cp.broadcast_to(x, (2, 3, 4)),
                 x.astype(np.float32, copy=False), cp.asarray(x))
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


def test_inplace_operator_checks_same_kind_cast():
    """_kernel.pyx ``_get_out_args_from_optionals``: the loop's float64 output cannot go into int64 under
    'same_kind' (NumPy raises the same)."""
    a = cp.arange(3)
    with pytest.raises(TypeError):
        a += 1.5
    a += 2
    np.testing.assert_array_equal(a.get(), [2, 3, 4])


# ---- scalar promotion ----------------------------------------------------------------------------------------
def test_promotion_cupy13_value_based(monkeypatch):
    """v13.6.0 _kernel.pyx ``_check_should_use_min_scalar``/``_min_scalar_type``, worked by hand: a scalar of a
    kind no higher than the arrays' counts as its minimal type, and the first loop all inputs cast to safely
    wins.  65536 is uint32-or-int32 (neither casts to float32: 'dd' loop), 65535 uint16 (casts: 'ff');
    0.5 float16 ('ff'); 1e39 float64 ('dd'); 300 uint16-or-int16 with int8 ('hh'); NumPy scalars too
    (np.float64(2) is float16: 'ff'); an int array with a float scalar: kind higher, float64 ('dd')."""
    mode(monkeypatch, "13")
    f = cp.ones(3, np.float32)
    assert (f / 65536).dtype == np.float64
    assert (f / 65535).dtype == np.float32
    assert (f * 0.5).dtype == np.float32
    assert (f + 1e39).dtype == np.float64
    assert (cp.ones(2, np.int8) + 300).dtype == np.int16
    assert (f * np.float64(2)).dtype == np.float32
    assert (cp.arange(3, dtype=np.int32) * 0.5).dtype == np.float64
    assert (cp.arange(3, dtype=np.uint32) + (-1)).dtype == np.int64  # int8 casts to no unsigned loop
    assert cp.__version__ == "13.6.0"


@pytest.mark.parametrize("dt, scalar", [(np.float32, 65536), (np.float32, 0.5), (np.float32, 1e30),
                                        (np.uint32, 2654435761), (np.uint32, 16), (np.int32, 2.5),
                                        (np.float32, np.float64(2)), (np.int8, 3), (np.bool_, 1)])
def test_promotion_cupy14_is_nep50(monkeypatch, dt, scalar, rng):
    """v14.2.0 _kernel.pyx ``_check_should_use_weak_scalar``: NEP 50, so the result dtype is NumPy 2's."""
    mode(monkeypatch, "14")
    h = (rng.integers(1, 5, 4)).astype(dt)
    for op in (np.add, np.multiply, np.true_divide, np.maximum):
        if op is np.true_divide and dt == np.bool_:
            continue
        assert op(cp.asarray(h), scalar).dtype == op(h, scalar).dtype, (op, dt, scalar)
    assert cp.__version__ == "14.2.0"


def test_promotion_cupy14_integer_overflow_raises(monkeypatch):
    """v14.2.0 _scalar.pyx ``CScalar._store_c_value`` packs the Python int into the loop's type (NEP 50)."""
    mode(monkeypatch, "14")
    with pytest.raises(OverflowError):
        cp.ones(2, np.int8) + 300


def test_boolean_subtract_raises():
    """_routines_math.pyx ``_subtract_boolean_error``."""
    with pytest.raises(TypeError, match="boolean subtract"):
        cp.asarray([True, False]) - cp.asarray([False, False])


# ---- strictness and cuda -------------------------------------------------------------------------------------
def test_unmodelled_names_raise_attribute_error():
    """The stand-in models only what minirso uses: any other name is an AttributeError naming it."""
    with pytest.raises(AttributeError, match="'fft'.*models only what minirso uses"):
        cp.fft
    with pytest.raises(AttributeError, match="'MemoryPool'"):
        cp.cuda.MemoryPool
    assert not hasattr(cp, "savez")


def test_cuda_device_and_stream(monkeypatch):
    """device.pyx ``Device.compute_capability`` (a string, read when asked), runtime.pyx device queries,
    ``Stream.synchronize`` (one host sync)."""
    assert cp.cuda.runtime.getDeviceCount() == 1 and cp.cuda.runtime.is_hip is False
    monkeypatch.setattr(CTL, "compute_capability", "75")
    assert cp.cuda.Device().compute_capability == "75"
    assert cp.cuda.runtime.getDeviceProperties(0)["major"] == 7
    assert isinstance(cp.cuda.runtime.getDeviceProperties(0)["name"], bytes)
    with CTL.counters.counting() as d:
        cp.cuda.get_current_stream().synchronize()
        cp.cuda.Device(0).synchronize()
    assert d["syncs"] == 2
