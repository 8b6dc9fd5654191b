"""The CuPy stand-in's ElementwiseKernel and RawKernel (tests/standin/cupy/_kernel.py, _raw.py, _host.py) against
CuPy's documented behaviour (docs/source/user_guide/kernel.rst, v14.2.0) and its source (cupy/_core/_kernel.pyx,
cupy/cuda/function.pyx), and against NumPy for the results.

As in tests/test_standin.py, every test of a CuPy behaviour takes the ``cp`` fixture: the stand-in (loaded under
a private name: tests/_cupy_standin.py) in every lane, and also the real CuPy (id ``cupy``) where one is usable,
so a disagreement shows as a failure of the ``cupy`` case (the fix goes into the stand-in).  What only the
stand-in has (counters, guard pages, its stricter RawKernel signature checks, switching its compute capability)
is ``@standin_only`` or under ``if is_standin(cp)``, and says why.
"""

import types

import numpy as np
import pytest

from .test_standin import MODULES, SI, counting, is_standin, standin_only

CTL = SI._standin


@pytest.fixture(params=MODULES)
def cp(request):
    """The module under test: the stand-in, and the real CuPy where one is usable."""
    return request.param


@pytest.fixture
def errors(cp):
    """Where the module keeps ``CompileException`` and ``CUDADriverError``: the stand-in's ``_kernel``; CuPy's
    ``cupy.cuda.compiler`` and ``cupy.cuda.driver``."""
    if is_standin(cp):
        return cp._kernel
    # cupy/cuda/__init__.py imports ``compiler`` and ``driver`` (an alias of cupy_backends.cuda.api.driver)
    return types.SimpleNamespace(
        CompileException=cp.cuda.compiler.CompileException, CUDADriverError=cp.cuda.driver.CUDADriverError
    )


@pytest.fixture
def dev(cp):
    """A NumPy array onto the device (the stand-in wraps it without counting a copy)."""
    if is_standin(cp):
        return lambda a: cp._core._wrap(np.ascontiguousarray(a))
    return lambda a: cp.asarray(np.ascontiguousarray(a))


@pytest.fixture
def host(cp):
    """A device array's values as NumPy (the stand-in unwraps it without counting a copy)."""
    if is_standin(cp):
        return cp._core._unwrap
    return lambda x: x.get()


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


@pytest.fixture(params=["13", "14"])
def cupy_version(request, cp, monkeypatch):
    """The CuPy major version whose rules apply: the stand-in is switched to each; a real CuPy is its own
    (the other one is skipped there)."""
    if is_standin(cp):
        monkeypatch.setattr(cp._standin, "PROMOTION", request.param)
    elif cp.__version__.split(".")[0] != request.param:
        pytest.skip(f"CuPy {cp.__version__} follows its own major version, not CuPy {request.param}")
    return request.param


# ---- ElementwiseKernel ---------------------------------------------------------------------------------------
def test_elementwise_docs_example_broadcasts_and_counts_one_launch(cp, dev, host, rng):
    """kernel.rst's squared_diff: a (2, 5) and a (5,) array broadcast; a Python scalar is cast to float32 (the
    one launch is counted on the stand-in only)."""
    k = cp.ElementwiseKernel("float32 x, float32 y", "float32 z", "z = (x - y) * (x - y)", "squared_diff")
    x = rng.standard_normal((2, 5)).astype(np.float32)
    y = rng.standard_normal(5).astype(np.float32)
    with counting(cp) as d:
        z = k(dev(x), dev(y))
    assert isinstance(z, cp.ndarray)
    if is_standin(cp):
        assert d["by_name"] == {"squared_diff": 1}
    np.testing.assert_array_equal(host(z), (x - y) * (x - y))
    np.testing.assert_array_equal(host(k(dev(x), 0.1)), (x - np.float32(0.1)) * (x - np.float32(0.1)))


def test_elementwise_placeholders_are_bound_by_arrays_only(cp, dev, host, rng):
    """_decide_params_type_core: T from the arrays (outputs first); a scalar for T takes T's type; a placeholder
    no array binds is CuPy's KeyError; arrays of two types for one T, or the wrong concrete type, TypeError."""
    x = rng.standard_normal(7).astype(np.float32)
    k = cp.ElementwiseKernel("T x, T s", "T z", "z = x * s", "scale")
    np.testing.assert_array_equal(host(k(dev(x), 0.3)), x * np.float32(0.3))
    out = dev(np.zeros(7, np.float64))
    np.testing.assert_array_equal(host(k(dev(x.astype(np.float64)), 0.3, out)), x.astype(np.float64) * 0.3)
    with pytest.raises(TypeError, match="Type is mismatched"):
        k(dev(x), dev(x.astype(np.float64)))
    with pytest.raises(KeyError):
        cp.ElementwiseKernel("T x, U s", "T z", "z = x * s", "unbound")(dev(x), 0.3)
    with pytest.raises(TypeError, match="Type is mismatched"):
        cp.ElementwiseKernel("float64 x", "float64 z", "z = x", "concrete")(dev(x))
    with pytest.raises(ValueError, match="Loop size is undecided"):
        k(0.5, 0.3)


def test_elementwise_rejects_what_cupy_rejects(cp, dev, errors, rng):
    """_kernel.pyx: a NumPy array, an output outside the broadcast, a wrong argument count, the parameter name
    ``i``, an invalid kernel name, a kernel that does not compile.  kernel.rst also reserves ``n`` and names
    starting with ``_``, which CuPy does not check (it just miscompiles): the stand-in rejects them, so that
    part is stand-in only."""
    x = dev(rng.standard_normal(4).astype(np.float32))
    k = cp.ElementwiseKernel("T x", "T z", "z = x + 1", "plus_one")
    with pytest.raises(TypeError, match="Unsupported type"):
        k(np.ones(4, np.float32))  # a NumPy array is not a device array
    with pytest.raises(ValueError, match="Out shape is mismatched"):  # outputs take part in the broadcast
        k(dev(np.zeros((3, 4), np.float32)), dev(np.zeros((1, 4), np.float32)))
    with pytest.raises(ValueError):
        k(x, dev(np.zeros(5, np.float32)))
    with pytest.raises(TypeError, match="Wrong number of arguments"):
        k(x, x, x)
    for bad in ("T i", "T n", "T _x") if is_standin(cp) else ("T i",):  # kernel.rst: n, i, _* are reserved
        with pytest.raises(ValueError):
            cp.ElementwiseKernel(bad, "T z", "z = 1", "reserved")
    with pytest.raises(ValueError, match="Invalid kernel name"):
        cp.ElementwiseKernel("T x", "T z", "z = x", "bad-name")
    with pytest.raises(errors.CompileException):
        cp.ElementwiseKernel("T x", "T z", "z = x + undeclared", "broken")(x)


def test_elementwise_return_convention(cp, dev, host, rng):
    """One output: the array; several: a tuple (_kernel.pyx: ret = tuple(out_args)); return_tuple, no_return;
    an empty loop launches nothing (counted on the stand-in only)."""
    x = rng.standard_normal(6).astype(np.float32)
    two = cp.ElementwiseKernel("T x", "T a, T b", "a = x + 1; b = x * 2", "two")
    a, b = dev(np.zeros(6, np.float32)), dev(np.zeros(6, np.float32))
    r = two(dev(x), a, b)
    assert isinstance(r, tuple) and r[0] is a and r[1] is b
    np.testing.assert_array_equal(host(a), x + 1)
    np.testing.assert_array_equal(host(b), x * 2)
    assert isinstance(cp.ElementwiseKernel("T x", "T z", "z = x", "t", return_tuple=True)(dev(x)), tuple)
    assert cp.ElementwiseKernel("T x", "T z", "z = x", "n", no_return=True)(dev(x)) is None
    with counting(cp) as d:  # an empty loop launches nothing
        assert host(two(dev(np.zeros(0, np.float32)))[0]).shape == (0,)
    if is_standin(cp):
        assert d["launches"] == 0


def test_elementwise_writes_non_contiguous_outputs_and_reads_them(cp, dev, host, rng):
    """An output view (a transpose) is written where it lies; an output read in the operation sees its value."""
    base = rng.standard_normal((3, 4)).astype(np.float32)
    y = dev(base.copy())
    k = cp.ElementwiseKernel("T d", "T y", "y = y + d", "accumulate")
    d = rng.standard_normal((4, 3)).astype(np.float32)
    k(dev(d), y.T)
    np.testing.assert_array_equal(host(y), base + d.T)


def test_elementwise_raw_arguments_and_size(cp, dev, host, rng):
    """kernel.rst's raw example (y read backwards, _ind.size() after broadcast); size= only with raw arrays."""
    x = rng.standard_normal(5).astype(np.float32)
    y = rng.standard_normal(5).astype(np.float32)
    k = cp.ElementwiseKernel("T x, raw T y", "T z", "z = x + y[_ind.size() - i - 1]", "add_reverse")
    np.testing.assert_array_equal(host(k(dev(x), dev(y))), x + y[::-1])
    fill = cp.ElementwiseKernel("raw T y", "raw T z", "z[i] = y[i] * 2", "raw_only")
    out = dev(np.zeros(5, np.float32))
    fill(dev(y), out, size=5)
    np.testing.assert_array_equal(host(out), y * 2)
    with pytest.raises(ValueError, match="Loop size is undecided"):
        fill(dev(y))
    with pytest.raises(ValueError, match="Output array size is Undecided"):
        cp.ElementwiseKernel("T x", "raw T z", "z[i] = x", "raw_out")(dev(x))
    with pytest.raises(ValueError, match="'size' can be used only"):
        k(dev(x), dev(y), size=5)


@standin_only
def test_elementwise_raw_read_past_the_end_is_caught(cp, dev, errors, rng):
    """A raw read past the end is an illegal address naming the argument.  Stand-in only: its guard pages catch
    it; on a GPU one element past an allocation is usually readable garbage, and the error would be
    asynchronous."""
    y = rng.standard_normal(5).astype(np.float32)
    fill = cp.ElementwiseKernel("raw T y", "raw T z", "z[i] = y[i] * 2", "raw_only")
    with pytest.raises(errors.CUDADriverError, match="ILLEGAL_ADDRESS.*past the end of raw argument 'y'"):
        fill(dev(y), dev(np.zeros(6, np.float32)), size=6)


def test_elementwise_scalar_casting_by_cupy_version(cp, dev, host, cupy_version):
    """v14 stores a scalar by NumPy assignment (PyArray_Pack: an out-of-bounds Python int is OverflowError,
    NaN to an integer ValueError); v13 by a C cast of its 64-bit value (wraps)."""
    k = cp.ElementwiseKernel("T x, uint64 s", "uint64 z", "z = s", "store")
    x = dev(np.zeros(2, np.float32))
    if cupy_version == "14":
        with pytest.raises(OverflowError):
            k(x, -1)
    else:
        assert host(k(x, -1)).tolist() == [2**64 - 1] * 2
    assert host(k(x, 2**63 + 5)).tolist() == [2**63 + 5] * 2
    f = cp.ElementwiseKernel("T x, int32 s", "int32 z", "z = s", "store_int")
    assert host(f(x, 2.7)).tolist() == [2, 2]


def test_elementwise_fmad_models_nvrtc(cp, dev, host, rng):
    """--fmad=false rounds a * b + c twice, as NumPy; NVRTC's default may fuse it (one rounding): modelled by
    letting the host compiler contract where the CPU has FMA (a GPU always has it)."""
    a, b, c = (rng.standard_normal(4096).astype(np.float32) for _ in range(3))
    args = ("float32 a, float32 b, float32 c", "float32 d", "d = a * b + c")
    plain = host(cp.ElementwiseKernel(*args, "muladd", options=("--fmad=false",))(dev(a), dev(b), dev(c)))
    np.testing.assert_array_equal(plain, a * b + c)
    if not is_standin(cp) or cp._host._have_fma():
        fused = host(cp.ElementwiseKernel(*args, "muladd")(dev(a), dev(b), dev(c)))
        exact = (a.astype(np.float64) * b + c).astype(np.float32)  # one rounding (up to rare double rounding)
        assert np.mean(fused == exact) > 0.999 and np.any(fused != plain)


# ---- RawKernel -------------------------------------------------------------------------------------------------
ADD = r"""
extern "C" __global__ void my_add(const float *x1, const float *x2, float *y) {
    int tid = blockDim.x * blockIdx.x + threadIdx.x;
    y[tid] = x1[tid] + x2[tid];
}
"""

ARGS = r"""
extern "C" __global__ void args(const double *x, double *y, long long k, double s, int n, unsigned long long u) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) y[t] = x[t] * s + (double)k + (double)(u >> 60);
}
"""


def test_raw_docs_example_and_one_launch(cp, dev, host, rng):
    """kernel.rst's my_add: grid (5,), block (5,) over 25 elements (the one launch counted on the stand-in)."""
    x1, x2 = rng.standard_normal(25).astype(np.float32), rng.standard_normal(25).astype(np.float32)
    y = dev(np.zeros(25, np.float32))
    with counting(cp) as d:
        cp.RawKernel(ADD, "my_add")((5,), (5,), (dev(x1), dev(x2), y))
    np.testing.assert_array_equal(host(y), x1 + x2)
    if is_standin(cp):
        assert d["by_name"] == {"my_add": 1}


def test_raw_arguments_by_value_and_by_pointer(cp, dev, host, rng):
    """kernel.rst: a Python int is a long long, a float a double, NumPy scalars their own type, a cupy array a
    pointer; function.pyx ``_pointer``: a NumPy array of size one is passed by value, any other NumPy array is a
    TypeError ('Only numpy.ndarrays of size one')."""
    k = cp.RawKernel(ARGS, "args")
    x = rng.standard_normal(10)
    y = dev(np.zeros(10))
    k((1,), (16,), (dev(x), y, 3, 0.5, np.int32(10), np.uint64(2**63 + 1)))  # Python int -> long long, float -> double
    np.testing.assert_array_equal(host(y), x * 0.5 + 3 + 8)
    good = [dev(x), y, 3, 0.5, np.int32(10), np.uint64(1)]
    with pytest.raises(TypeError, match="Only numpy.ndarrays of size one"):
        k((1,), (16,), (np.ones(10), *good[1:]))
    k((1,), (16,), (good[0], good[1], np.array([3], np.int64), *good[3:]))  # a size-one NumPy array: by value
    np.testing.assert_array_equal(host(y), x * 0.5 + 3)


@standin_only
def test_raw_arguments_are_checked_against_the_signature(cp, dev, rng):
    """Argument count, pointer versus value, the exact types of values and pointees, C-contiguous arrays, all
    against the kernel's signature.  Stand-in only: CuPy does not parse the signature; it passes whatever it is
    given and the kernel misreads it (the stand-in is deliberately stricter, its messages say 'stand-in:')."""
    k = cp.RawKernel(ARGS, "args")
    x = rng.standard_normal(10)
    y = dev(np.zeros(10))
    good = [dev(x), y, 3, 0.5, np.int32(10), np.uint64(1)]
    bad = {
        0: dev(x.astype(np.float32)),
        1: dev(np.zeros(10, np.int64)),
        2: np.int32(3),
        3: np.float32(0.5),
        4: 10,
        5: -1,
        1.5: None,
    }
    for k_, v in bad.items():
        args = list(good)
        if k_ == 1.5:
            args[3] = dev(x)  # an array for a value
            k_ = 3
        else:
            args[k_] = v
        with pytest.raises(TypeError, match=f"argument {k_} "):
            k((1,), (16,), tuple(args))
    with pytest.raises(TypeError, match="takes 6 arguments, 5 given"):
        k((1,), (16,), tuple(good[:5]))
    with pytest.raises(ValueError, match="non-C-contiguous"):
        k((1,), (16,), (dev(np.zeros((10, 2)))[:, 0], *good[1:]))


def test_raw_python_int_and_bool_by_cupy_version(cp, dev, host, cupy_version):
    """function.pyx: v13 passes any Python int (bool included) as int64 (>= 2**63: OverflowError); v14 passes
    an int >= 2**63 as uint64 and a bool as bool.  That v13's int64 for a ``bool`` slot is a TypeError is the
    stand-in's signature check (CuPy passes it unchecked): stand-in only."""
    src = (
        r'extern "C" __global__ void f(unsigned long long u, bool b, long long *out) '
        r"{ out[0] = (long long)(u >> 60) + b; }"
    )
    k = cp.RawKernel(src, "f")
    out = dev(np.zeros(1, np.int64))
    if cupy_version == "14":
        k((1,), (1,), (2**63 + 1, True, out))
        assert host(out)[0] == 9
    else:
        with pytest.raises(OverflowError):
            k((1,), (1,), (2**63 + 1, np.bool_(True), out))
        if is_standin(cp):
            with pytest.raises(TypeError, match="argument 1 "):
                k((1,), (1,), (np.uint64(1), True, out))


def test_raw_launch_configuration_rules(cp, dev, host, errors):
    """function.pyx: grid and block are tuples, each dimension at least 1 (a 0 grid runs one block); CUDA: at
    most 1,024 threads per block (z at most 64) and 48 KiB of shared memory without opting in."""
    src = r"""extern "C" __global__ void mark(int *out) {
        extern __shared__ int dyn[];
        atomicAdd(out + blockIdx.x, 1);
    }"""
    k = cp.RawKernel(src, "mark")
    out = dev(np.zeros(4, np.int32))
    k((0,), (3, 2), (out,))
    assert host(out).tolist() == [6, 0, 0, 0]
    with pytest.raises(TypeError, match="grid"):
        k([1], (1,), (out,))
    for block in ((1025,), (32, 33), (1, 1, 65)):
        with pytest.raises(errors.CUDADriverError, match="INVALID_VALUE"):
            k((1,), block, (out,))
    k((1,), (1,), (out,), shared_mem=48 * 1024)
    with pytest.raises(errors.CUDADriverError, match="INVALID_VALUE"):
        k((1,), (1,), (out,), shared_mem=48 * 1024 + 4)
    k.max_dynamic_shared_size_bytes = 100 * 1024  # opting in (an H100 allows up to 227 KiB)
    k((1,), (1,), (out,), shared_mem=100 * 1024)
    with pytest.raises(errors.CUDADriverError, match="NOT_FOUND"):
        cp.RawKernel(src.replace('extern "C" ', ""), "mark")((1,), (1,), (out,))


@standin_only
def test_raw_out_of_bounds_and_const_writes_are_caught(cp, dev, host, errors):
    """A guard page after each array: one element past the end is an illegal address naming the argument, and
    the array is not copied back; a write through a const pointer faults too.  Stand-in only: on a GPU neither
    faults (reliably, or synchronously)."""
    x1 = np.arange(25, dtype=np.float32)
    y = dev(np.zeros(24, np.float32))
    with pytest.raises(errors.CUDADriverError, match=r"ILLEGAL_ADDRESS.*write: 0 bytes past the end of argument 'y'"):
        cp.RawKernel(ADD, "my_add")((5,), (5,), (dev(x1), dev(x1), y))
    assert not host(y).any()
    const_write = ADD.replace("y[tid] = x1[tid] + x2[tid];", "((float *)x1)[tid] = 1.0f;")
    with pytest.raises(errors.CUDADriverError, match="read-only"):
        cp.RawKernel(const_write, "my_add")((1,), (4,), (dev(x1), dev(x1), y))


BARRIER = r"""
extern "C" __global__ void reverse(const float *x, float *y) {
    extern __shared__ float s[];
    int t = threadIdx.x, n = blockDim.x;
    s[t] = x[blockIdx.x * n + t];
    SYNC
    y[blockIdx.x * n + t] = s[n - 1 - t];
}
"""


def test_raw_barrier_and_shared_memory(cp, dev, host, rng):
    """Reversing each block through dynamic shared memory with __syncthreads() is exact."""
    x = rng.standard_normal(3 * 64).astype(np.float32)
    y = dev(np.zeros_like(x))
    cp.RawKernel(BARRIER.replace("SYNC", "__syncthreads();"), "reverse")((3,), (64,), (dev(x), y), shared_mem=256)
    np.testing.assert_array_equal(host(y), x.reshape(3, 64)[:, ::-1].ravel())


@standin_only
def test_raw_a_missing_or_divergent_barrier_shows(cp, dev, host, errors, rng):
    """Without __syncthreads() a thread reads what no thread has written yet (the shared memory starts as NaN
    garbage), which shows; a barrier some threads skip is an error.  Stand-in only: on a GPU a race may happen
    to give the right answer, and a divergent barrier is undefined (it may hang)."""
    x = rng.standard_normal(3 * 64).astype(np.float32)
    y = dev(np.zeros_like(x))
    cp.RawKernel(BARRIER.replace("SYNC", ""), "reverse")((3,), (64,), (dev(x), y), shared_mem=256)
    assert np.isnan(host(y)).any()
    diverge = BARRIER.replace("SYNC", "if (t == 0) return; __syncthreads();")
    with pytest.raises(errors.CUDADriverError, match="__syncthreads"):
        cp.RawKernel(diverge, "reverse")((1,), (64,), (dev(x), y), shared_mem=256)


def test_raw_multi_dimensional_indices_and_aliasing(cp, dev, host, rng):
    """threadIdx / blockIdx / blockDim in x and y; one array in two slots is one memory (in place)."""
    src = r"""extern "C" __global__ void grid2(const float *a, float *b, int w) {
        int col = blockIdx.x * blockDim.x + threadIdx.x, row = blockIdx.y * blockDim.y + threadIdx.y;
        b[row * w + col] = a[row * w + col] * 2.0f + (float)row;
    }"""
    a = rng.standard_normal((6, 8)).astype(np.float32)
    x = dev(a.copy())
    cp.RawKernel(src, "grid2")((2, 3), (4, 2), (x, x, np.int32(8)))
    np.testing.assert_array_equal(host(x), a * 2 + np.arange(6, dtype=np.float32)[:, None])


def test_raw_double_atomic_add_needs_sm_60(cp, dev, host, errors, monkeypatch):
    """CUDA declares atomicAdd(double *, double) from compute capability 6.0 (modelled by __CUDA_ARCH__).  The
    compile error below 6.0 is stand-in only (its compute capability is set through ``_standin``; a real
    device's is what it is); the sum runs on both (a real device below 6.0 is skipped)."""
    src = r'extern "C" __global__ void acc(double *s) { atomicAdd(s, 0.5); }'
    if is_standin(cp):
        monkeypatch.setattr(CTL, "compute_capability", "52")
        with pytest.raises(errors.CompileException, match="atomicAdd"):
            cp.RawKernel(src, "acc")((1,), (4,), (dev(np.zeros(1)),))
        monkeypatch.setattr(CTL, "compute_capability", "60")
    elif int(cp.cuda.Device().compute_capability) < 60:
        pytest.skip("atomicAdd(double *) needs compute capability >= 6.0")
    s = dev(np.zeros(1))
    cp.RawKernel(src, "acc")((2,), (4,), (s,))
    assert host(s)[0] == 4.0
