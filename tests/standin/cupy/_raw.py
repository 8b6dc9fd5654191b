"""``cupy.RawKernel`` of the stand-in (re-exported by ``_kernel.py``): the CUDA source compiled for the CPU and
launched block by block under ``_host.py``'s runtime, after CuPy's launch rules and a check of every argument
against the kernel's own signature (see ``_kernel.py``'s docstring for why that check is stricter than CuPy)."""

from __future__ import annotations

import ctypes
import re

import numpy

from . import _core, _host, _standin
from ._kernel import _INVALID, _NUMPY_SCALARS, CUDADriverError, _scalar_dtype

__all__ = ["RawKernel"]

_SHARED_DEFAULT = 48 * 1024  # bytes of shared memory per block without opting in (CUDA Programming Guide)
# the most a block may opt in to, by compute capability (CUDA Programming Guide, "Technical Specifications")
_SHARED_OPTIN = {
    "60": 48 * 1024,
    "61": 48 * 1024,
    "70": 96 * 1024,
    "75": 64 * 1024,
    "80": 163 * 1024,
    "86": 99 * 1024,
    "89": 99 * 1024,
    "90": 227 * 1024,
}

_DYN_SHARED = re.compile(
    r"extern\s+__shared__\s+(__align__\s*\((?:[^()]|\([^()]*\))*\)\s*)?"
    r"([A-Za-z_][\w\s]*?\w)\s*(\**)\s*([A-Za-z_]\w*)\s*\[\s*\]"
)

_WRAPPER = r"""
template <int K, typename... P> struct _standin_nth;
template <typename H, typename... P> struct _standin_nth<0, H, P...> { typedef H type; };
template <int K, typename H, typename... P> struct _standin_nth<K, H, P...> {
    typedef typename _standin_nth<K - 1, P...>::type type;
};
template <typename T> struct _standin_ld { static T get(void *p) { return *(T *)p; } };  // by value
template <typename T> struct _standin_ld<T *> { static T *get(void *p) { return (T *)p; } };  // the pointer itself
template <typename T> struct _standin_size { enum { value = sizeof(T) }; };
template <> struct _standin_size<void> { enum { value = 0 }; };
template <typename T> struct _standin_kind {
    enum { value = std::is_same<T, bool>::value ? 'b' : std::is_floating_point<T>::value ? 'f'
           : std::is_integral<T>::value ? (std::is_signed<T>::value ? 'i' : 'u') : std::is_void<T>::value ? 'v' : '?' };
};
template <typename T> struct _standin_desc {
    enum { ptr = 0, cst = 0, kind = _standin_kind<T>::value, size = _standin_size<T>::value };
};
template <typename T> struct _standin_desc<T *> {
    typedef typename std::remove_cv<T>::type U;
    enum { ptr = 1, cst = std::is_const<T>::value, kind = _standin_kind<U>::value, size = _standin_size<U>::value };
};
template <typename F> struct _standin_fn;
template <typename... P> struct _standin_fn<void (*)(P...)> {
    enum { arity = sizeof...(P) };
    template <int K> struct arg { typedef typename _standin_nth<K, P...>::type type; };
};
typedef _standin_fn<decltype(&%(name)s)> _standin_F;  // the kernel's own parameter types, from the compiler
extern "C" const int _standin_arity = _standin_F::arity;
extern "C" const int _standin_sig[] = {%(sig)s 0};
static void **_standin_args;
static void _standin_body(void) { %(name)s(%(call)s); }
extern "C" int _standin_launch(void **args, const unsigned int *dims, void *dyn, unsigned long long dyn_size)
{
    _standin_args = args;
    _standin_dyn_smem = (unsigned char *)dyn;
    _standin::body = _standin_body;
    return _standin::protect([&]() { _standin::run_blocks(dims, (size_t)dyn_size); });
}
"""

# (kind, size) of a parameter -> the dtypes whose arrays / scalars it takes (docs: kernel.rst's type table)
_DTYPES = {
    ("b", 1): ("bool",),
    ("i", 1): ("int8",),
    ("u", 1): ("uint8",),
    ("i", 2): ("int16",),
    ("u", 2): ("uint16",),
    ("i", 4): ("int32",),
    ("u", 4): ("uint32",),
    ("i", 8): ("int64",),
    ("u", 8): ("uint64",),
    ("f", 4): ("float32",),
    ("f", 8): ("float64",),
}


def _signature(pre: str, name: str):
    """``[(declaration text, parameter name)]`` of ``__global__ void name(...)`` in preprocessed source."""
    m = re.search(
        r"(?:__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void|void\s+__global__)\s+" + re.escape(name) + r"\s*\(",
        pre,
    )
    if m is None:  # cuModuleGetFunction finds no such kernel
        raise CUDADriverError(
            f"CUDA_ERROR_NOT_FOUND: named symbol not found (stand-in: no __global__ void {name}(...) in the source)"
        )
    depth, k = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(pre[k], 0)
        k += 1
    text = pre[m.end() : k - 1]
    parts, depth, start = [], 0, 0
    for j, c in enumerate(text):
        depth += {"(": 1, "<": 1, ")": -1, ">": -1}.get(c, 0)
        if c == "," and depth == 0:
            parts.append(text[start:j])
            start = j + 1
    parts.append(text[start:])
    parts = [" ".join(p.split()) for p in parts]
    if parts == [""] or parts == ["void"]:
        return []
    out = []
    for p in parts:
        w = re.search(r"([A-Za-z_]\w*)\s*$", p)
        out.append((p, w.group(1) if w else "?"))
    return out


class RawKernel:
    """``cupy.RawKernel(code, name, options=(), backend='nvrtc', *, translate_cucomplex=False,
    enable_cooperative_groups=False, jitify=None)`` (cupy/_core/raw.pyx), compiled at the first call."""

    def __init__(
        self,
        code,
        name,
        options=(),
        backend="nvrtc",
        *,
        translate_cucomplex=False,
        enable_cooperative_groups=False,
        jitify=None,
    ):
        if not isinstance(code, str) or not isinstance(name, str):
            raise TypeError("RawKernel(code, name): str arguments")  # raw.pyx: `str code, str name`
        if not isinstance(options, tuple):
            raise TypeError(f"Argument 'options' has incorrect type (expected tuple, got {type(options).__name__})")
        if translate_cucomplex or enable_cooperative_groups or jitify:
            raise NotImplementedError("stand-in: translate_cucomplex, cooperative groups and jitify are not modelled")
        self.code, self.name, self.options, self.backend = code, name, options, backend
        self.__name__ = name
        self._compiled = None  # (lib, [(decl, pname)], [(ptr, const, kind, size)], static shared bytes)
        self._max_dyn = None

    # -- compilation ------------------------------------------------------------------------------------
    def _kernel(self):
        key = (_standin.PROMOTION, _standin.compute_capability)
        if self._compiled is None or self._compiled[0] != key:
            flags = _host.host_flags(self.options)
            sig = _signature(_host.preprocess(self.code, flags), self.name)
            src = _DYN_SHARED.sub(
                lambda m: f"{m.group(2)} {m.group(3)}*{m.group(4)} = ({m.group(2)} {m.group(3)}*)_standin_dyn_smem",
                self.code,
            )
            n = len(sig)
            arg = "_standin_F::arg<%d>::type"
            desc = "".join(f"_standin_desc<{arg % k}>::{f}, " for k in range(n) for f in ("ptr", "cst", "kind", "size"))
            call = ", ".join(f"_standin_ld<{arg % k}>::get(_standin_args[{k}])" for k in range(n))
            lib = _host.build(src + _WRAPPER % {"name": self.name, "sig": desc, "call": call}, flags)
            if not hasattr(lib, self.name):  # without extern "C" the symbol is mangled: raw.pyx get_function fails
                raise CUDADriverError(
                    f'CUDA_ERROR_NOT_FOUND: named symbol not found (stand-in: {self.name} is not declared extern "C")'
                )
            arity = ctypes.c_int.in_dll(lib, "_standin_arity").value
            assert arity == n, (arity, sig)
            raw = (ctypes.c_int * (4 * n + 1)).in_dll(lib, "_standin_sig")
            descs = [tuple(raw[4 * k : 4 * k + 4]) for k in range(n)]
            lib._standin_launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulonglong]
            self._compiled = (key, lib, sig, descs, int(lib._standin_static_shared()))
        return self._compiled

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        """The kernel attribute (CUDA's default: 48 KiB less the static shared memory)."""
        static = self._kernel()[4]
        return self._max_dyn if self._max_dyn is not None else _SHARED_DEFAULT - static

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value):
        static = self._kernel()[4]
        if value < 0 or value + static > _SHARED_OPTIN.get(_standin.compute_capability, _SHARED_DEFAULT):
            raise CUDADriverError(_INVALID)  # cuFuncSetAttribute: over the device's opt-in maximum
        self._max_dyn = int(value)

    # -- launch ---------------------------------------------------------------------------------------------
    def __call__(self, grid, block, args, **kwargs):
        """``kernel(grid, block, args, *, shared_mem=0, stream=None)`` (cuda/function.pyx Function.__call__)."""
        shared_mem = kwargs.pop("shared_mem", 0)
        kwargs.pop("stream", None)
        if kwargs:
            raise TypeError(f"__call__() got an unexpected keyword argument {next(iter(kwargs))!r}")
        for label, t in (("grid", grid), ("block", block)):
            if not isinstance(t, tuple):  # function.pyx: `tuple grid, tuple block`
                raise TypeError(f"Argument '{label}' has incorrect type (expected tuple, got {type(t).__name__})")
        if shared_mem < 0:
            raise OverflowError("can't convert negative value to size_t")
        # function.pyx: missing dimensions are 1, extra ones dropped, and each is at least 1 (a 0 grid runs 1 block)
        grid = tuple(max(1, _index(v)) for v in (grid + (1, 1))[:3])
        block = tuple(max(1, _index(v)) for v in (block + (1, 1))[:3])
        key, lib, sig, descs, static = self._kernel()
        threads = block[0] * block[1] * block[2]
        if (
            threads > 1024
            or block[0] > 1024
            or block[1] > 1024
            or block[2] > 64
            or grid[0] > 2**31 - 1
            or grid[1] > 65535
            or grid[2] > 65535
        ):
            raise CUDADriverError(
                f"{_INVALID} (stand-in: grid {grid}, block {block}: at most 1,024 threads per "
                "block, block (1024, 1024, 64), grid (2**31 - 1, 65535, 65535))"
            )
        if shared_mem > self.max_dynamic_shared_size_bytes or static > _SHARED_DEFAULT:
            raise CUDADriverError(
                f"{_INVALID} (stand-in: {shared_mem} bytes of dynamic and {static} of static shared "
                f"memory; without opting in a block has {_SHARED_DEFAULT})"
            )
        args = tuple(args)
        if len(args) != len(sig):
            raise TypeError(
                f"stand-in: kernel {self.name} takes {len(sig)} arguments, {len(args)} given "
                "(CuPy would launch it and the kernel would read garbage)"
            )
        self._launch(lib, sig, descs, args, grid, block, threads, int(shared_mem))

    def _launch(self, lib, sig, descs, args, grid, block, threads, shared_mem):
        keep, ptrs, buffers, regions, nbytes = [], [], [], {}, 0
        try:
            for k, ((decl, pname), desc, a) in enumerate(zip(sig, descs, args)):
                what = f"argument {k} ({pname}: `{decl}`) of kernel {self.name}"
                if desc[0]:
                    ptr = self._pointer(a, desc, what, buffers, regions, pname)
                    if _is_array(a):
                        nbytes += _core._unwrap(a).nbytes
                    ptrs.append(ptr)
                else:
                    v = self._scalar(a, desc, what)
                    keep.append(v)
                    ptrs.append(v.ctypes.data)
            dyn = _host.Guarded(shared_mem, "the dynamic shared memory (shared_mem bytes)")
            buffers.append(dyn)
            dims = (ctypes.c_uint * 6)(*grid, *block)
            with _host.LAUNCH_LOCK:
                rc = lib._standin_launch((ctypes.c_void_p * max(1, len(ptrs)))(*ptrs), dims, dyn.addr, shared_mem)
            if rc:
                raise CUDADriverError(_host.fault_message(lib, rc, buffers, self.name))
            for x, buf, writable in regions.values():
                if writable:
                    x[...] = buf.bytes_view().view(x.dtype).reshape(x.shape)
        finally:
            for b in buffers:
                b.free()
        _standin.launch(self.name, nbytes, flops=0)

    @staticmethod
    def _pointer(a, desc, what, buffers, regions, pname):
        _, const, kind, size = desc
        if a is None:
            return None  # function.pyx _pointer: None is a null pointer
        if not _is_array(a):
            if isinstance(a, numpy.ndarray) and a.size != 1:
                raise TypeError(
                    f"You are trying to pass a numpy.ndarray of shape {a.shape} as a kernel parameter. "
                    "Only numpy.ndarrays of size one can be passed by value. If you meant to pass a "
                    "pointer to __global__ memory, you need to pass a cupy.ndarray instead."
                )
            raise TypeError(f"stand-in: {what} is a pointer; got {type(a).__name__} (passed by value in CuPy)")
        x = _core._unwrap(a)
        if kind == ord("?"):
            raise NotImplementedError(f"stand-in: {what}: pointers to this type are not modelled")
        if kind != ord("v") and x.dtype.name not in _DTYPES.get((chr(kind), size), ()):
            raise TypeError(
                f"stand-in: {what} takes {'/'.join(_DTYPES.get((chr(kind), size), ('?',)))} data; "
                f"got a {x.dtype} array (CuPy passes the pointer unchecked: the kernel misreads it)"
            )
        if not x.flags.c_contiguous:
            raise ValueError(
                f"stand-in: {what}: a non-C-contiguous array (RawKernel ignores views and reads the "
                "memory as if contiguous: docs/source/user_guide/kernel.rst)"
            )
        addr = x.__array_interface__["data"][0]
        known = regions.get((addr, x.nbytes))
        if known is not None:  # the same array in two slots: one memory, as on the device
            if not const and not known[2]:
                known[1].writable()  # written through this slot: no longer read-only
                regions[(addr, x.nbytes)] = (x, known[1], True)
            return known[1].addr
        for (a0, n0), _r in regions.items():
            if a0 < addr + x.nbytes and addr < a0 + n0:
                raise NotImplementedError(f"stand-in: {what} overlaps another argument; not modelled")
        buf = _host.Guarded(x.nbytes, f"argument '{pname}'")
        buffers.append(buf)
        buf.bytes_view()[...] = x.reshape(-1).view(numpy.uint8)
        if const:
            buf.read_only()  # a write through a const pointer faults
        regions[(addr, x.nbytes)] = (x, buf, not const)
        return buf.addr

    @staticmethod
    def _scalar(a, desc, what):
        _, _, kind, size = desc
        if a is None or _is_array(a):
            raise TypeError(f"stand-in: {what} is passed by value; got {'None' if a is None else 'an array'}")
        if isinstance(a, numpy.ndarray):
            if a.size != 1:
                raise TypeError(
                    f"You are trying to pass a numpy.ndarray of shape {a.shape} as a kernel parameter. "
                    "Only numpy.ndarrays of size one can be passed by value."
                )
            dtype = a.dtype  # function.pyx CNumpyArray: its bytes, by value
        elif _standin.PROMOTION == "13" and isinstance(a, int) and type(a) not in _NUMPY_SCALARS:
            dtype = numpy.int64(a).dtype  # v13 function.pyx: numpy.int64(x) for any Python int or bool (OverflowError)
        else:
            dtype = _scalar_dtype(a)  # Python int -> int64 (>= 2**63: uint64), float -> double, bool -> bool
        want = _DTYPES.get((chr(kind), size))
        if want is None:
            raise NotImplementedError(f"stand-in: {what}: parameters of this type are not modelled")
        if dtype.name not in want:
            raise TypeError(
                f"stand-in: {what} takes a value of type {want[0]}; got {type(a).__name__} passed as "
                f"{dtype} "
                f"(Python int is int64 and float is float64 in CuPy; pass numpy.{want[0]}(...))"
            )
        v = numpy.empty((), dtype)
        v[()] = a if not isinstance(a, numpy.ndarray) else a.reshape(())
        return v


def _is_array(x) -> bool:
    return isinstance(x, _core.ndarray)


def _index(v) -> int:
    if isinstance(v, (bool, float)) or not hasattr(v, "__index__"):
        raise TypeError(f"an integer is required (got {type(v).__name__})")  # Cython's conversion to a C int
    return v.__index__()
