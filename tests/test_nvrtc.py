"""Every fused kernel of minirso.kernels (its .cu files, and the elementwise kernels over philox.cuh) compiled by
NVIDIA's own compiler, NVRTC, which needs no GPU or driver.

CI installs it (``pip install -e ".[nvrtc]"``: nvidia-cuda-nvrtc-cu12 and cuda-bindings, about 250 MB) and sets
``MINIRSO_REQUIRE_NVRTC=1``, so there a missing compiler fails; elsewhere the module skips with that reason.
Each kernel is compiled for sm_60, sm_80 and sm_90 with the options CuPy v14.2.0 uses (``cupy/_core/core.pyx``
``assemble_cupy_compiler_options``: ``--std=c++17`` unless given; ``cupy/cuda/compiler.py``
``_compile_with_cache_cuda`` and ``_compile_using_nvrtc_no_warning``: ``-ftz=true``, ``-arch=sm_XX``,
``--device-as-default-execution-space``; CuPy 13 uses ``--std=c++11``) plus minirso's own (``--fmad=false``
for the elementwise kernels) and ``--ptxas-options=-v``, whose log gives registers, stack and spills.  A
block's registers must fit one SM's register file: 65,536 32-bit registers, allocated per warp in units of
256 (CUDA Occupancy Calculator), at the most threads per block minirso launches the kernel with.
"""

from __future__ import annotations

import importlib.resources
import os
import re

import pytest

from minirso import kernels

PIP = 'pip install -e ".[nvrtc]" (nvidia-cuda-nvrtc-cu12==12.9.86, cuda-bindings<13)'


def _load_nvrtc():
    """``(nvrtc module, None)``, or ``(None, why)`` when the bindings or the NVRTC library are missing."""
    try:
        from cuda.bindings import nvrtc

        err, major, minor = nvrtc.nvrtcVersion()  # loads libnvrtc (from the nvidia-cuda-nvrtc-cu12 wheel)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return None, f"nvrtcVersion: {err}"
        return nvrtc, None
    except Exception as exc:  # ImportError, or the library not found when the bindings load it
        return None, f"{type(exc).__name__}: {exc}"


nvrtc, _why = _load_nvrtc()
if nvrtc is None:
    if os.environ.get("MINIRSO_REQUIRE_NVRTC") == "1":  # CI: a missing compiler is a failure, never a skip
        raise ImportError(f"MINIRSO_REQUIRE_NVRTC=1 but NVRTC is not usable ({_why}); {PIP}")
    pytest.skip(f"NVRTC is not installed ({_why}); to compile the kernels with it: {PIP}", allow_module_level=True)

ARCHS = ("60", "80", "90")
REGISTER_FILE = 65536  # 32-bit registers per SM (and so per block) on every architecture from sm_60 to sm_90

# A faithful minimal version of what CuPy v14.2.0 generates for an ElementwiseKernel call
# (_kernel.pyx _get_elementwise_kernel_code and _get_simple_elementwise_kernel_code; carray.cuh CArray, CIndexer,
# CUPY_FOR).  What differs: only the members the loop uses are kept (no iterators, initializer lists, JIT
# helpers, float16 / complex headers), and the headers CuPy prepends (complex.cuh, atomics.cuh,
# math_constants.h) are left out; the loop, the index arithmetic, the typedefs and the parameter list are CuPy's.
CUPY_ELEMENTWISE = r"""
#define CUPY_FOR(i, n) \
    for (ptrdiff_t i = static_cast<ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
         i += static_cast<ptrdiff_t>(blockDim.x) * gridDim.x)
template <bool B, class T, class F> struct cupy_conditional { typedef T type; };
template <class T, class F> struct cupy_conditional<false, T, F> { typedef F type; };
template <typename T, int _ndim, bool _c_contiguous = false, bool _use_32bit_indexing = false>
class CArray {
public:
  static const int ndim = _ndim;
  typedef typename cupy_conditional<_use_32bit_indexing, int, ptrdiff_t>::type index_t;
private:
  T *data_; ptrdiff_t size_; ptrdiff_t shape_[ndim]; ptrdiff_t strides_[ndim];
public:
  template <typename Int> __device__ T &operator[](const Int (&idx)[ndim]) {
    return const_cast<T &>(const_cast<const CArray &>(*this)[idx]);
  }
  template <typename Int> __device__ const T &operator[](const Int (&idx)[ndim]) const {
    index_t diff = 0;
    for (int dim = 0; dim < ndim; ++dim) diff += static_cast<index_t>(strides_[dim]) * static_cast<index_t>(idx[dim]);
    return *reinterpret_cast<const T *>(reinterpret_cast<const char *>(data_) + diff);
  }
};
template <int _ndim, bool _use_32bit_indexing = false>
class CIndexer {
public:
  static const int ndim = _ndim;
private:
  ptrdiff_t size_; ptrdiff_t shape_[ndim]; ptrdiff_t index_[ndim];
  typedef ptrdiff_t index_t[ndim];
  template <typename index_t> __device__ void _set(index_t i) {
    for (int dim = ndim; --dim > 0;) {
      index_t s = static_cast<index_t>(shape_[dim]);
      if (s & (s - 1)) { index_t t = i / s; index_[dim] = i - t * s; i = t; }
      else { index_[dim] = i & (s - 1); i >>= _log2(s); }
    }
    index_[0] = i;
  }
  static unsigned int __device__ _log2(unsigned int x) { return __popc(x - 1); }
  static unsigned long long int __device__ _log2(unsigned long long int x) { return __popcll(x - 1); }
public:
  __device__ ptrdiff_t size() const { return size_; }
  __device__ const index_t &get() const { return index_; }
  __device__ void set(ptrdiff_t i) {
    if (ndim == 1) index_[0] = i;
    else if (!_use_32bit_indexing && size_ > 1LL << 31) this->_set(static_cast<unsigned long long int>(i));
    else this->_set(static_cast<unsigned int>(i));
  }
};
"""


def cupy_elementwise_source(name: str, ndim: int, bindings: dict, array_params: set) -> str:
    """The CUDA source CuPy builds for kernel ``name`` of minirso.kernels.ELEMENTWISE, called with the arrays in
    ``array_params`` (``ndim``-dimensional after CuPy's reduce_dims; 1: all contiguous) and the placeholder
    ``bindings`` ({"T": "float", ...}); the other inputs are scalars."""
    in_params, out_params, operation, preamble = kernels.ELEMENTWISE[name]
    types = {"uint64": "unsigned long long", "int64": "long long", "float64": "double", "float32": "float"}
    contiguous = int(ndim == 1)
    params, refs = [], []
    for text, is_const in ((in_params, True), (out_params, False)):
        for p in text.split(","):
            t, n = p.split()
            ct = t if len(t) == 1 else types[t]
            const = "const " if is_const else ""
            if n in array_params or not is_const:
                c = bindings.get(ct, ct)
                params.append(f"{const}CArray<{c}, {ndim}, {contiguous}, 1> _raw_{n}")
                refs.append(f"{const}{ct} &{n} = _raw_{n}[_ind.get()];")
            else:
                params.append(f"const {bindings.get(ct, ct)} {n}")
    typedefs = "".join(f"typedef {c} {k};\n" for k, c in sorted(bindings.items()))
    body = "\n".join(refs + [operation])
    return (
        f"{CUPY_ELEMENTWISE}\n{typedefs}\n{preamble}\n"
        f'extern "C" __global__ void minirso_{name}({", ".join(params)}, CIndexer<{ndim}, 1> _ind) {{\n'
        f"  ;\n  #pragma unroll 1\n  CUPY_FOR(i, _ind.size()) {{\n    _ind.set(i);\n{body};\n  }}\n  ;\n}}\n"
    )


def compile_nvrtc(source: str, options) -> tuple[bool, str]:
    """``(compiled, log)`` of NVRTC on ``source``."""
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), b"kernel.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, err
    try:
        opts = [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        return err == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace").rstrip("\x00 ")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def cupy_options(arch: str, own=(), std="--std=c++17"):
    """NVRTC's options as CuPy passes them for a kernel built with ``options=own`` (the include paths aside)."""
    return [*own, std, "-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space", "--ptxas-options=-v"]


def resources(log: str, name: str) -> dict:
    """Registers, stack frame and spills of ``name`` from ptxas' verbose log."""
    part = log.split(f"Function properties for {name}", 1)[1]
    regs = int(re.search(r"Used (\d+) registers", part).group(1))
    stack, spill_st, spill_ld = map(
        int,
        re.search(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
            r"(\d+) bytes spill loads",
            part,
        ).groups(),
    )
    return {"registers": regs, "stack": stack, "spill_stores": spill_st, "spill_loads": spill_ld}


def block_registers(regs: int, threads: int) -> int:
    """Registers a block takes: per warp, registers x 32 rounded up to the 256-register allocation unit."""
    warps = -(-threads // 32)
    return warps * (-(-regs * 32 // 256) * 256)


def _rnn_max_threads() -> int:
    """The most threads kernels.rnn_launch_shape ever asks for (one input feature fits the widest layer)."""
    shapes = (kernels.rnn_launch_shape(4096, 1, h) for h in range(1, 1025))
    return max(s[2] for s in shapes if s is not None)


RAW = [
    ("minirso_rnn_tanh", kernels.RNN_SOURCE, _rnn_max_threads),
    ("minirso_mlp_tail", kernels.MLP_SOURCE, lambda: kernels.MLP_THREADS),
]
# the elementwise kernels as minirso calls them: T = float32; one chain (1-D contiguous arrays) and, for the
# proposal, K chains (mu (K, P) with scale and seed (K, 1): 2-D strided arrays)
ELEMENTWISE = [
    ("proposal", 1, {"T": "float", "S": "float"}, {"mu", "scale"}),
    ("proposal", 2, {"T": "float", "S": "float"}, {"mu", "scale", "seed"}),
    ("proposal_scalar", 1, {"T": "float"}, {"mu"}),
    ("normal", 1, {"T": "float"}, set()),
    ("move", 1, {"T": "float", "S": "float"}, {"mu", "scale"}),
    ("move_scalar", 1, {"T": "float"}, {"mu"}),
    ("mu_update", 1, {"T": "float"}, {"eps"}),
]
CUPY_BLOCK = 128  # ElementwiseKernel.__call__: block_size defaults to 128 (_kernel.pyx)


def test_every_kernel_of_the_package_is_compiled_here():
    """Each .cu file the package ships is one raw kernel in RAW, each elementwise kernel is in ELEMENTWISE:
    a new kernel cannot be left out of the NVRTC check."""
    files = [f.name for f in importlib.resources.files("minirso.kernels").iterdir() if f.name.endswith(".cu")]
    assert sorted(f"minirso_{f.removesuffix('.cu')}" for f in files) == sorted(r[0] for r in RAW)
    assert {e[0] for e in ELEMENTWISE} == set(kernels.ELEMENTWISE)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name, source, threads", RAW, ids=[r[0] for r in RAW])
def test_raw_kernel_compiles_and_fits_the_register_file(name, source, threads, arch):
    ok, log = compile_nvrtc(source, cupy_options(arch))
    assert ok, log
    res = resources(log, name)
    n = threads()
    assert res["registers"] <= 255 and block_registers(res["registers"], n) <= REGISTER_FILE, (arch, n, res)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name, ndim, bindings, arrays", ELEMENTWISE, ids=[f"{e[0]}-{e[1]}d" for e in ELEMENTWISE])
def test_elementwise_kernel_compiles_and_fits_the_register_file(name, ndim, bindings, arrays, arch):
    src = cupy_elementwise_source(name, ndim, bindings, arrays)
    ok, log = compile_nvrtc(src, cupy_options(arch, own=("--fmad=false",)))
    assert ok, log + "\n" + src
    res = resources(log, f"minirso_{name}")
    assert block_registers(res["registers"], CUPY_BLOCK) <= REGISTER_FILE, (arch, res)


@pytest.mark.parametrize("name, source, threads", RAW, ids=[r[0] for r in RAW])
def test_raw_kernels_compile_as_cupy_13_does(name, source, threads):
    """CuPy 13 compiles with --std=c++11 (v13.6.0 core.pyx assemble_cupy_compiler_options)."""
    ok, log = compile_nvrtc(source, cupy_options("90", std="--std=c++11"))
    assert ok, log


def test_rnn_kernel_needs_compute_capability_6():
    """The float64 atomicAdd exists from sm_60 on: NVRTC rejects the RNN kernel for sm_52 and builds it for
    sm_60, the bound minirso checks before it picks the kernel (kernels.RNN_MIN_CAPABILITY)."""
    ok, log = compile_nvrtc(kernels.RNN_SOURCE, cupy_options("52"))
    assert not ok and "atomicAdd" in log
    assert compile_nvrtc(kernels.RNN_SOURCE, cupy_options(str(kernels.RNN_MIN_CAPABILITY)))[0]


def test_the_faithful_template_is_cupy_s():
    """The template above is what CuPy's code generator emits for minirso_move (the parameter list and the
    references), checked against the text CuPy v14.2.0 builds (_kernel.pyx: CArray<T, ndim, c_contiguous,
    index_32_bits>, 'const T &x = _raw_x[_ind.get()];' for inputs, 'T &x = ...' for outputs)."""
    src = cupy_elementwise_source("move", 1, {"T": "float", "S": "float"}, {"mu", "scale"})
    assert (
        "minirso_move(const CArray<float, 1, 1, 1> _raw_mu, const CArray<float, 1, 1, 1> _raw_scale, "
        "const unsigned long long seed, const unsigned long long stream, const unsigned long long offset, "
        "const long long row_len, CArray<float, 1, 1, 1> _raw_x, CArray<float, 1, 1, 1> _raw_saved, "
        "CArray<float, 1, 1, 1> _raw_eps, CIndexer<1, 1> _ind)"
    ) in src
    assert "const T &mu = _raw_mu[_ind.get()];" in src and "T &eps = _raw_eps[_ind.get()];" in src
    assert "typedef float S;\ntypedef float T;\n" in src
