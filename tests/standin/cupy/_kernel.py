"""``cupy.ElementwiseKernel`` and ``cupy.RawKernel`` of the stand-in: CuPy's argument rules, then the kernel's
own C++ text compiled for the CPU and run there (``_host.py``: the runtime, guarded memory, what it cannot model).

Each rule names the CuPy source it follows (v14.2.0 unless said otherwise; ``_standin.PROMOTION == "13"``
switches to v13.6.0 where the two differ).  Beyond CuPy, ``RawKernel`` checks every argument against the
kernel's signature: CuPy passes raw bytes unchecked ("No validation is performed by CuPy for arguments
passed to the kernel", docs/source/user_guide/kernel.rst), so a float64 array in a ``float *`` slot or
an int32 in a ``long long`` slot computes garbage on a GPU; here it is a TypeError naming the parameter.
One call is one launch (``_standin.launch``).

Not modelled in ``ElementwiseKernel`` (beyond ``_host.py``'s list): ``reduce_dims`` and ``_ind.get()`` (the
loop runs over the C-order index ``i`` of the broadcast shape, which is what ``i`` is in CuPy; an operation
that calls ``_ind.get()`` does not compile here), ``block_size`` and ``stream`` (accepted, no effect), float16
and complex arguments (NotImplementedError), CuPy's own headers beyond ``CArray`` indexing of raw arguments.
"""

from __future__ import annotations

import ctypes
import re
import warnings

import numpy

from . import _core, _host, _standin
from ._host import CompileException

__all__ = ["ElementwiseKernel", "RawKernel", "CompileException", "CUDADriverError"]


class CUDADriverError(RuntimeError):
    """``cupy.cuda.driver.CUDADriverError`` (cupy_backends/cuda/api/driver.pyx): a failed launch."""


_INVALID = "CUDA_ERROR_INVALID_VALUE: invalid argument"
# _scalar.pyx _typenames_base: the C type of each dtype
_TYPENAMES = {
    "float64": "double",
    "float32": "float",
    "float16": "float16",
    "complex128": "thrust::complex<double>",
    "complex64": "thrust::complex<float>",
    "int64": "long long",
    "int32": "int",
    "int16": "short",
    "int8": "signed char",
    "uint64": "unsigned long long",
    "uint32": "unsigned int",
    "uint16": "unsigned short",
    "uint8": "unsigned char",
    "bool": "bool",
}


def _typename(dtype) -> str:
    name = _TYPENAMES.get(numpy.dtype(dtype).name)
    if name is None:
        raise ValueError(f"Unsupported dtype {dtype}")  # _scalar.pyx get_typename
    return name


def _host_typename(dtype) -> str:
    if numpy.dtype(dtype).kind not in "biuf" or numpy.dtype(dtype) == numpy.float16:
        raise NotImplementedError(f"stand-in: {numpy.dtype(dtype)} kernel arguments are not modelled on the host")
    return _typename(dtype)


def _is_array(x) -> bool:
    return isinstance(x, _core.ndarray)


# ---- scalars: _scalar.pyx CScalar (v14) / scalar_to_c_scalar (v13) ----------------------------------
_NUMPY_SCALARS = {numpy.dtype(c).type for c in "?bhilqBHILQefdFD"}


def _scalar_dtype(x):
    """The dtype CuPy gives a Python or NumPy scalar argument; TypeError for anything else."""
    if type(x) is bool:
        return numpy.dtype(bool)
    if type(x) is float:
        return numpy.dtype(numpy.float64)
    if type(x) is complex:
        return numpy.dtype(numpy.complex128)
    if type(x) is int:  # (an int >= 2**64 fails when it is stored: OverflowError)
        return numpy.dtype(numpy.uint64 if x >= 0x8000000000000000 else numpy.int64)
    if _standin.PROMOTION == "13":
        if type(x) in _NUMPY_SCALARS:
            return x.dtype
        raise TypeError("Unsupported type %s" % type(x))  # v13 _kernel.pyx _preprocess_arg
    if isinstance(x, numpy.generic):
        return x.dtype
    raise TypeError(f"Unsupported type {type(x)}")  # v14 _scalar.pyx CScalar.__init__


def _store(x, dtype) -> numpy.ndarray:
    """``x`` stored as a 0-d array of ``dtype`` as CuPy stores a kernel's scalar: v14 ``PyArray_Pack``
    (NumPy's assignment: an out-of-bounds Python int is OverflowError, NaN to an integer ValueError);
    v13 ``apply_dtype``: a C cast of the 64-bit value (wraps, truncates)."""
    dtype = numpy.dtype(dtype)
    if _standin.PROMOTION == "13":
        own = _scalar_dtype(x)
        v = numpy.array(x, dtype=own)  # (v13 _from_python_scalar: OverflowError outside int64 / uint64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return v.astype(dtype, casting="unsafe")
    out = numpy.empty((), dtype)
    out[()] = x
    return out


# ---- ElementwiseKernel: _kernel.pyx ParameterInfo, _decide_params_type_core, ElementwiseKernel.__call__ ------
class _Param:
    def __init__(self, param: str, is_const: bool):
        self.raw, self.is_const, self.dtype, self.ctype = False, is_const, None, None
        s = tuple(i for i in param.split() if len(i) != 0)
        if len(s) < 2:
            raise Exception("Syntax error: %s" % param)
        t, self.name = s[-2:]
        if len(t) == 1:
            self.ctype = t  # a type placeholder
        else:
            dtype = numpy.dtype(t)
            if _standin.PROMOTION == "13" and dtype.name != t:
                raise ValueError("Wrong type %s" % t)  # v13 ParameterInfo: only dtype names ('float' is not one)
            self.dtype, self.ctype = dtype, _typename(dtype)
        for i in s[:-2]:
            if i == "raw":
                self.raw = True
            elif i == "_non_const":
                self.is_const = False
            else:
                raise Exception('Unknown keyword "%s"' % i)


def _params(s: str, is_const: bool) -> tuple:
    return () if len(s) == 0 else tuple(_Param(i, is_const) for i in s.strip().split(","))


def _decide_types(in_params, out_params, in_dtypes, out_dtypes):
    """``_decide_params_type_core``: placeholders bound by ARRAY arguments only, outputs first, exact dtypes."""
    types = {}
    # outputs first, then the inputs that are arrays (a scalar's dtype is None: it binds nothing)
    for p, a in [*zip(out_params, out_dtypes), *zip(in_params, in_dtypes)]:
        if a is None:
            continue
        if p.dtype is not None:
            if a != p.dtype:
                raise TypeError("Type is mismatched. %s %s %s" % (p.name, a, p.dtype))
        elif p.ctype in types:
            if types[p.ctype] != a:
                raise TypeError("Type is mismatched. %s %s %s %s" % (p.name, a, types[p.ctype], p.ctype))
        else:
            types[p.ctype] = a
    # a placeholder no array binds: ``type_dict[p.ctype]`` raises KeyError in CuPy too
    in_types = tuple(types[p.ctype] if p.dtype is None else p.dtype for p in in_params)
    out_types = tuple(types[p.ctype] if p.dtype is None else p.dtype for p in out_params)
    return in_types, out_types, tuple(sorted(types.items()))


_ELEMENTWISE_HELPERS = r"""
struct _standin_indexer {  // CIndexer of carray.cuh, reduced to what the loop needs
    ptrdiff_t size_;
    explicit _standin_indexer(ptrdiff_t n) : size_(n) {}
    ptrdiff_t size() const { return size_; }
    void set(ptrdiff_t) {}
};
template <typename T> struct _standin_carray {  // a raw argument: CArray indexed by the C-order position
    T *data_; ptrdiff_t size_; int ndim_; const long long *shape_, *strides_;
    explicit _standin_carray(const long long *m)
        : data_((T *)(intptr_t)m[0]), size_(m[1]), ndim_((int)m[2]), shape_(m + 3), strides_(m + 3 + m[2]) {}
    ptrdiff_t size() const { return size_; }
    const long long *shape() const { return shape_; }
    const long long *strides() const { return strides_; }
    T &operator[](ptrdiff_t i) { return data_[i]; }
    const T &operator[](ptrdiff_t i) const { return data_[i]; }
};
"""


class ElementwiseKernel:
    """``cupy.ElementwiseKernel(in_params, out_params, operation, name='kernel', reduce_dims=True,
    preamble='', no_return=False, return_tuple=False, **kwargs)`` (``loop_prep``, ``after_loop``,
    ``options``), run on the CPU: the operation pasted into a loop over ``i`` as CuPy pastes it into
    ``CUPY_FOR`` (``_get_elementwise_kernel_code``), inputs bound as ``const T &x = x_[i]``, outputs as
    ``T &y = y_[i]``."""

    def __init__(
        self,
        in_params,
        out_params,
        operation,
        name="kernel",
        reduce_dims=True,
        preamble="",
        no_return=False,
        return_tuple=False,
        **kwargs,
    ):
        if not re.match("^[a-zA-Z_][a-zA-Z_0-9]*$", name):  # cuda/compiler.py is_valid_kernel_name
            raise ValueError('Invalid kernel name: "%s"' % name)
        self.in_params = _params(in_params, True)
        self.out_params = _params(out_params, False)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.params = self.in_params + self.out_params
        self.operation, self.name, self.__name__ = operation, name, name
        self.reduce_dims, self.preamble = reduce_dims, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        unknown = set(kwargs) - {"loop_prep", "after_loop", "options"}
        if unknown:  # _get_elementwise_kernel(**self.kwargs) rejects them (at the first call in CuPy)
            raise TypeError(f"ElementwiseKernel got unexpected keyword arguments {sorted(unknown)}")
        self.kwargs = kwargs
        names = [p.name for p in self.params]
        if "i" in names:
            raise ValueError("Can not use 'i' as a parameter name")
        # docs/source/user_guide/kernel.rst: "n, i, and names starting with an underscore _ are reserved"
        bad = [n for n in names if n == "n" or n.startswith("_")]
        if bad:
            raise ValueError(f"stand-in: parameter names {bad} are reserved by CuPy (n, i, names starting with _)")
        self._libs = {}

    def __call__(self, *args, **kwargs):
        size = kwargs.pop("size", -1)
        kwargs.pop("stream", None)
        block_size = kwargs.pop("block_size", 128)
        if len(kwargs):
            raise TypeError("Wrong arguments %s" % kwargs)
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) != self.nin and len(args) != self.nargs:
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or {self.nargs} "
                f"(with outputs), but given {len(args)}."
            )
        args = [a if _is_array(a) else _ScalarArg(a) for a in args]  # _preprocess_args
        use_size = size != -1
        arrays = [_core._unwrap(a) for a, p in zip(args, self.params) if _is_array(a) and not p.raw]
        if use_size and arrays:
            raise ValueError("Specified 'size' can be used only if all of the ndarray are 'raw'.")
        if not use_size and not arrays:
            raise ValueError("Loop size is undecided.")
        shape = numpy.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
        in_args, out_args = args[: self.nin], args[self.nin :]
        for a in out_args:
            if not _is_array(a):
                raise TypeError("Output arguments must be cupy.ndarray")
        in_dtypes = tuple(_core._unwrap(a).dtype if _is_array(a) else None for a in in_args)
        out_dtypes = tuple(_core._unwrap(a).dtype for a in out_args)
        in_types, out_types, type_map = _decide_types(self.in_params, self.out_params, in_dtypes, out_dtypes)
        if use_size:
            shape = (size,)
        if not out_args:  # _get_out_args_with_params
            if any(p.raw for p in self.out_params) and not use_size:
                raise ValueError("Output array size is Undecided")
            out_args = [_core._wrap(_core.garbage(shape, t)) for t in out_types]
        else:
            for a, p in zip(out_args, self.out_params):
                if not p.raw and _core._unwrap(a).shape != tuple(shape):
                    raise ValueError("Out shape is mismatched")
        if self.no_return:
            ret = None
        elif not self.return_tuple and self.nout == 1:
            ret = out_args[0]
        else:
            ret = tuple(out_args)  # several outputs: the tuple (_kernel.pyx: ret = tuple(out_args))
        n = int(numpy.prod(shape, dtype=numpy.int64))
        if n == 0:
            return ret  # nothing launched
        scalars = {k: _store(a.value, in_types[k]) for k, a in enumerate(in_args) if isinstance(a, _ScalarArg)}
        self._run(in_args, out_args, scalars, in_types, out_types, type_map, shape, n)
        return ret

    def _source(self, arg_kinds, types, type_map):
        lines, refs = [], []
        for k, (p, kind) in enumerate(zip(self.params, arg_kinds)):
            ct = p.ctype
            const = "const " if p.is_const else ""
            if kind == "scalar":
                lines.append(
                    f"const {_host_typename(types[k])} {p.name} = *(const {_host_typename(types[k])} *)"
                    f"_standin_args[{k}];"
                )
            elif p.raw:
                lines.append(f"{const}_standin_carray<{ct}> {p.name}((const long long *)_standin_args[{k}]);")
            else:
                lines.append(f"{const}{ct} *_raw_{p.name} = ({const}{ct} *)_standin_args[{k}];")
                refs.append(f"{const}{ct} &{p.name} = _raw_{p.name}[i];")
        typedefs = "".join(f"typedef {_host_typename(t)} {c};\n" for c, t in type_map)
        body = "\n        ".join(refs)
        decls = "\n    ".join(lines)
        return (
            f"{_ELEMENTWISE_HELPERS}\n{typedefs}\n{self.preamble}\n"
            f"static void _standin_kernel(void **_standin_args, ptrdiff_t _standin_n)\n{{\n    {decls}\n"
            f"    _standin_indexer _ind(_standin_n);\n    {self.kwargs.get('loop_prep', '')};\n"
            f"    for (ptrdiff_t i = 0; i < _ind.size(); ++i) {{\n        _ind.set(i);\n        {body}\n"
            f"        {self.operation};\n    }}\n    {self.kwargs.get('after_loop', '')};\n}}\n"
            'extern "C" int _standin_elementwise(void **a, long long n)\n'
            "{\n    return _standin::protect([&]() { _standin_kernel(a, (ptrdiff_t)n); });\n}\n"
        )

    def _run(self, in_args, out_args, scalars, in_types, out_types, type_map, shape, n):
        args = list(in_args) + list(out_args)
        kinds = ["scalar" if isinstance(a, _ScalarArg) else "array" for a in args]
        types = list(in_types) + list(out_types)
        key = (tuple(kinds), tuple(map(str, types)), type_map, _standin.PROMOTION, _standin.compute_capability)
        if key not in self._libs:
            flags = _host.host_flags(self.kwargs.get("options", ()))
            self._libs[key] = _host.build(self._source(kinds, types, type_map), flags)
        lib = self._libs[key]
        keep, ptrs, buffers, write_back, nbytes = [], [], [], [], 0
        try:
            for k, (a, p) in enumerate(zip(args, self.params)):
                if k in scalars:
                    keep.append(scalars[k])
                    ptrs.append(scalars[k].ctypes.data)
                    continue
                x = _core._unwrap(a)
                nbytes += x.nbytes
                if p.raw:  # its own guarded copy in C order (CArray indexes the logical array in C order)
                    buf = _host.Guarded(x.nbytes, f"raw argument '{p.name}'")
                    buffers.append(buf)
                    view = buf.bytes_view().view(x.dtype).reshape(x.shape)
                    view[...] = x
                    if k >= self.nin:
                        write_back.append((x, view))
                    meta = numpy.array(
                        [buf.addr, x.size, x.ndim, *x.shape, *(x.itemsize * s for s in _c_strides(x.shape))],
                        numpy.int64,
                    )
                    keep.append(meta)
                    ptrs.append(meta.ctypes.data)
                elif k < self.nin:
                    c = numpy.ascontiguousarray(numpy.broadcast_to(x, shape))  # the same memory when it can be
                    keep.append(c)
                    ptrs.append(c.ctypes.data)
                elif x.flags.c_contiguous:
                    ptrs.append(x.ctypes.data)
                else:
                    c = numpy.ascontiguousarray(x)
                    keep.append(c)
                    write_back.append((x, c))
                    ptrs.append(c.ctypes.data)
            with _host.LAUNCH_LOCK:
                rc = lib._standin_elementwise((ctypes.c_void_p * len(ptrs))(*ptrs), ctypes.c_longlong(n))
            if rc:
                raise CUDADriverError(_host.fault_message(lib, rc, buffers, self.name))
            for dst, src in write_back:
                dst[...] = src
        finally:
            write_back.clear()
            for b in buffers:
                b.free()
        _standin.launch(self.name, nbytes, flops=n)


def _c_strides(shape):
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return tuple(reversed(out))


class _ScalarArg:
    """A scalar argument (``_scalar.CScalar``): TypeError for what CuPy cannot pass (a numpy.ndarray too)."""

    def __init__(self, value):
        _scalar_dtype(value)
        self.value = value


# RawKernel lives in _raw.py (kept apart for file size); re-exported here as the internal API names it
from ._raw import RawKernel  # noqa: E402
