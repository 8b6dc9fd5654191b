"""The stand-in's device on the CPU: CUDA C++ compiled by the host C++ compiler and run under a small runtime.

Used by ``_kernel.py`` (``ElementwiseKernel``, ``RawKernel``).  What is modelled, and how:

* The source is compiled as NVRTC sees it: ``__CUDACC__``, ``__CUDACC_RTC__`` and ``__CUDA_ARCH__`` (from
  ``_standin.compute_capability``) are defined, and ``PRELUDE`` supplies the device builtins on the host
  (``threadIdx`` ..., ``__syncthreads``, ``atomicAdd`` ..., ``min``/``max``, CUDA's math names through
  ``<cmath>``).  ``atomicAdd(double *, double)`` exists only for ``__CUDA_ARCH__ >= 600``, as in CUDA.
* A launch runs block after block; the threads of a block are coroutines (``ucontext``) that run in
  turn, each until it reaches ``__syncthreads()`` or returns, so a barrier is exact and the run is
  deterministic.  A barrier that some threads of a block reach and others never do is an error (CUDA
  Programming Guide: ``__syncthreads`` must be reached by every thread of the block).
* Shared memory: ``__shared__`` variables are static objects in an ELF section whose size is the static
  shared memory; ``extern __shared__ T name[]`` is rewritten to a pointer into the launch's dynamic
  buffer.  Both are filled with 0xFF bytes (NaN garbage) before every block, as CUDA leaves them
  uninitialised.
* Memory: each array argument is copied into its own ``mmap`` region whose last byte touches a
  ``PROT_NONE`` guard page (a guard page also precedes it; the dynamic shared buffer is guarded the
  same way), and arrays behind ``const`` pointers are read-only.  A fault inside the kernel (an
  out-of-bounds access, a write through a ``const`` pointer, a stack overflow, an integer division by
  zero) is caught by a signal handler that jumps back out of the kernel, and the launch raises
  ``CUDADriverError`` naming the argument.  If the handler itself cannot run, the fault kills the
  pytest process: a crash, by design, never a silent pass.
* Built libraries are cached under ``<tempdir>/minirso-standin-kernels-<uid>`` by a hash of the source
  and flags, written under a temporary name and renamed (safe for parallel test processes).

Not modelled: data races between threads (the turn-taking order is fixed), warp-level operations
(``__shfl_*``, ``__syncwarp``: compile errors here), CUDA's intrinsics and vector types, ``-ftz=true``
(CuPy flushes float32 denormals to zero on the GPU; x86's flush mode would flush double too, so the host
keeps IEEE denormals), CUDA's own ``log``/``cos``/``tanhf``... (the host's libm may differ in the last
bit), registers per thread (``tests/test_nvrtc.py`` checks them with the real compiler), the asynchrony
of launch errors (raised here at the launch, by CUDA at a later synchronisation).
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import re
import shutil
import subprocess
import tempfile
import threading

import numpy

from . import _standin

PAGE = mmap.PAGESIZE

PRELUDE = r"""
// ---- the stand-in's host prelude: CUDA's device environment on the CPU (tests/standin/cupy/_host.py) ----
#include <cfloat>
#include <climits>
#include <cmath>
#include <csetjmp>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <sys/mman.h>
#include <ucontext.h>
#include <math.h>
#define __CUDACC__ 1
#define __CUDACC_RTC__ 1
#define __global__
#define __device__
#define __host__
#define __constant__ static
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ __attribute__((section("minirso_shared"))) static
#define __syncthreads() _standin::syncthreads()
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)
#define __trap() _standin::fail("__trap() called")
#undef assert
#define assert(e) ((e) ? (void)0 : _standin::fail("device-side assert triggered: " #e))
using std::isnan; using std::isinf; using std::isfinite; using std::signbit;

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static const int warpSize = 32;
static unsigned char *_standin_dyn_smem;  // the launch's dynamic shared memory
extern "C" char __start_minirso_shared[] __attribute__((weak));  // static shared memory (GNU ld section bounds)
extern "C" char __stop_minirso_shared[] __attribute__((weak));

namespace _standin {
static sigjmp_buf jmp;
static void *fault_addr;
static int fault_sig, fault_write;
static const char *error_msg;
static ucontext_t ctx[1024];
static unsigned char state[1024];  // 0 runnable, 1 waiting at a barrier, 2 returned, 3 not started
static int cur;
static char *stacks;
static const size_t STACK = 1 << 17;
static void (*body)(void);

[[noreturn]] static void fail(const char *msg) { error_msg = msg; siglongjmp(jmp, 2); }

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    fault_addr = si->si_addr;
    fault_sig = sig;
#if defined(__x86_64__) && defined(REG_ERR)
    fault_write = (int)((((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] >> 1) & 1);
#else
    (void)uc; fault_write = -1;
#endif
    siglongjmp(jmp, 1);
}

// fn() with SIGSEGV / SIGBUS / SIGFPE turned into return code 1 and fail() into 2
template <typename F> static int protect(F fn)
{
    static char altstack[1 << 16];
    stack_t ss, old_ss;
    ss.ss_sp = altstack; ss.ss_size = sizeof altstack; ss.ss_flags = 0;
    struct sigaction sa, old[3];
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    const int sigs[3] = {SIGSEGV, SIGBUS, SIGFPE};
    sigaltstack(&ss, &old_ss);
    for (int k = 0; k < 3; ++k) sigaction(sigs[k], &sa, &old[k]);
    error_msg = 0; fault_addr = 0; fault_sig = 0;
    volatile int rc = 0;
    switch (sigsetjmp(jmp, 1)) {  // (setjmp only where the C standard allows it)
    case 0: fn(); break;
    case 1: rc = 1; break;
    default: rc = 2;
    }
    for (int k = 0; k < 3; ++k) sigaction(sigs[k], &old[k], 0);
    sigaltstack(&old_ss, 0);
    return rc;
}

// Switching between threads: the first entry into a thread is setcontext() onto its own stack, every later
// switch a _setjmp / _longjmp pair (no signal-mask system call, unlike swapcontext: ~50 ns instead of ~1 us).
static jmp_buf sched_jb, thread_jb[1024];
static inline void syncthreads() { state[cur] = 1; if (!_setjmp(thread_jb[cur])) _longjmp(sched_jb, 1); }
// A thread that returns parks at the top of its loop: the next block resumes it there (no new context per block).
static void entry(void)
{
    for (;;) {
        body();
        state[cur] = 2;
        if (!_setjmp(thread_jb[cur])) _longjmp(sched_jb, 1);
    }
}

// blocks one after another; in a block, the threads take turns, each running to its next barrier
static void run_blocks(const unsigned int *d, size_t dyn_size)
{
    const int n = (int)(d[3] * d[4] * d[5]);
    if (!stacks) {  // 1,024 coroutine stacks, each above a guard page (a stack overflow faults)
        stacks = (char *)mmap(0, 1024 * (STACK + 4096), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (stacks == (char *)MAP_FAILED) { stacks = 0; fail("cannot map the coroutine stacks"); }
        for (int t = 0; t < 1024; ++t) mprotect(stacks + t * (STACK + 4096), 4096, PROT_NONE);
    }
    gridDim = dim3(d[0], d[1], d[2]);
    blockDim = dim3(d[3], d[4], d[5]);
    for (int t = 0; t < n; ++t) {
        getcontext(&ctx[t]);
        ctx[t].uc_stack.ss_sp = stacks + t * (STACK + 4096) + 4096;
        ctx[t].uc_stack.ss_size = STACK;
        ctx[t].uc_link = 0;
        makecontext(&ctx[t], entry, 0);
    }
    bool first = true;
    for (unsigned int bz = 0; bz < d[2]; ++bz)
    for (unsigned int by = 0; by < d[1]; ++by)
    for (unsigned int bx = 0; bx < d[0]; ++bx) {
        blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
        if (__stop_minirso_shared != __start_minirso_shared)
            memset(__start_minirso_shared, 0xFF, (size_t)(__stop_minirso_shared - __start_minirso_shared));
        if (dyn_size) memset(_standin_dyn_smem, 0xFF, dyn_size);
        for (int t = 0; t < n; ++t) state[t] = first ? 3 : 0;  // 3: not started yet
        first = false;
        for (;;) {
            for (int t = 0; t < n; ++t) {
                if (state[t] != 0 && state[t] != 3) continue;
                cur = t;
                threadIdx.x = t % d[3]; threadIdx.y = (t / d[3]) % d[4]; threadIdx.z = t / (d[3] * d[4]);
                if (!_setjmp(sched_jb)) {
                    if (state[t] == 3) { state[t] = 0; setcontext(&ctx[t]); }
                    _longjmp(thread_jb[t], 1);
                }
            }
            int waiting = 0, done = 0;
            for (int t = 0; t < n; ++t) { waiting += state[t] == 1; done += state[t] == 2; }
            if (waiting == 0) break;
            if (done) fail("__syncthreads() reached by some threads of a block while others returned");
            for (int t = 0; t < n; ++t) state[t] = 0;
        }
    }
}
}  // namespace _standin

extern "C" void *_standin_fault_addr(void) { return _standin::fault_addr; }
extern "C" int _standin_fault_sig(void) { return _standin::fault_sig; }
extern "C" int _standin_fault_write(void) { return _standin::fault_write; }
extern "C" const char *_standin_error(void) { return _standin::error_msg; }
extern "C" long long _standin_static_shared(void)
{
    return (long long)(__stop_minirso_shared - __start_minirso_shared);
}

// CUDA's min / max overloads (the same-type ones and float / double mixes)
#define _STANDIN_MINMAX(T) \
    static inline T min(T a, T b) { return a < b ? a : b; } static inline T max(T a, T b) { return a > b ? a : b; }
_STANDIN_MINMAX(int) _STANDIN_MINMAX(unsigned int) _STANDIN_MINMAX(long long) _STANDIN_MINMAX(unsigned long long)
_STANDIN_MINMAX(float) _STANDIN_MINMAX(double)
static inline double min(float a, double b) { return min((double)a, b); }
static inline double min(double a, float b) { return min(a, (double)b); }
static inline double max(float a, double b) { return max((double)a, b); }
static inline double max(double a, float b) { return max(a, (double)b); }

// atomics: the threads take turns, so a plain read-modify-write is atomic here
#define _STANDIN_ATOMIC(T) \
    static inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; } \
    static inline T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
#define _STANDIN_ATOMIC_INT(T) _STANDIN_ATOMIC(T) \
    static inline T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; } \
    static inline T atomicMax(T *p, T v) { T o = *p; *p = o > v ? o : v; return o; } \
    static inline T atomicMin(T *p, T v) { T o = *p; *p = o < v ? o : v; return o; } \
    static inline T atomicCAS(T *p, T c, T v) { T o = *p; *p = o == c ? v : o; return o; }
_STANDIN_ATOMIC_INT(int) _STANDIN_ATOMIC_INT(unsigned int) _STANDIN_ATOMIC_INT(unsigned long long)
_STANDIN_ATOMIC(float)
#if __CUDA_ARCH__ >= 600
static inline double atomicAdd(double *p, double v) { double o = *p; *p = o + v; return o; }  // sm_60 and newer
#endif
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline int __float_as_int(float v) { int i; memcpy(&i, &v, 4); return i; }
static inline double __longlong_as_double(long long v) { double f; memcpy(&f, &v, 8); return f; }
static inline long long __double_as_longlong(double v) { long long i; memcpy(&i, &v, 8); return i; }
// ---- end of the prelude; the kernel source follows ----
"""

# one launch at a time: the runtime's state and the fault handler are process-wide (ctypes releases the GIL)
LAUNCH_LOCK = threading.Lock()
_CACHE = os.path.join(tempfile.gettempdir(), f"minirso-standin-kernels-{os.getuid()}")
_LIBS = {}  # path -> loaded CDLL (a library is loaded once per process)


class CompileException(Exception):
    """The host compiler rejected a kernel (CuPy raises ``cupy.cuda.compiler.CompileException`` for NVRTC's
    errors; the stand-in's message carries the host compiler's log and the generated source's path)."""


def _compiler():
    cc = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    if cc is None:
        raise CompileException("stand-in: no host C++ compiler (c++, g++ or clang++) to build the kernel")
    return cc


def _have_fma() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"^flags\s*:.*\bfma\b", f.read(), re.M) is not None
    except OSError:
        return False


def host_flags(options) -> list:
    """Host compiler flags for NVRTC ``options``: ``-D``/``-U``/``-I`` pass through, ``-std=`` is kept
    (default C++17: CuPy v14 ``_core/core.pyx`` ``assemble_cupy_compiler_options``; 13 uses C++11), and
    ``--fmad=false`` is ``-ffp-contract=off``.  NVRTC's default ``--fmad=true`` lets the GPU contract
    ``a * b + c`` into an FMA: modelled by letting GCC contract too (``-mfma -ffp-contract=fast``) where
    the CPU has FMA, so a kernel that needs ``--fmad=false`` to round like NumPy fails without it."""
    flags, std, fmad = [], None, True
    opts = list(options)
    while opts:
        o = opts.pop(0)
        if o in ("-D", "-U", "-I", "--define-macro", "--undefine-macro", "--include-path") and opts:
            flags.append(
                o[:2]
                if o.startswith("-") and len(o) == 2
                else {"--define-macro": "-D", "--undefine-macro": "-U", "--include-path": "-I"}[o]
            )
            flags.append(opts.pop(0))
        elif re.match(r"^(-D|-U|-I)", o):
            flags.append(o)
        elif re.match(r"^--(define-macro|undefine-macro|include-path)=", o):
            k, v = o.split("=", 1)
            flags.append({"--define-macro": "-D", "--undefine-macro": "-U", "--include-path": "-I"}[k] + v)
        elif re.match(r"^--?std=", o):
            std = o.split("=", 1)[1]
        elif re.match(r"^--?fmad=", o):
            fmad = o.split("=", 1)[1].lower() in ("true", "1")
        elif o in ("--use_fast_math", "-use_fast_math"):
            fmad = True  # (also approximate division and ftz on the GPU: not modelled)
    default_std = "c++17" if _standin.PROMOTION == "14" else "c++11"
    flags.append(f"-std={std or default_std}")
    flags += ["-mfma", "-ffp-contract=fast"] if fmad and _have_fma() else ["-ffp-contract=off"]
    return flags + [f"-D__CUDA_ARCH__={int(_standin.compute_capability) * 10}"]


def build(source: str, flags) -> ctypes.CDLL:
    """Compile ``PRELUDE + source`` into a shared library (cached across processes) and load it."""
    cc = _compiler()
    full = PRELUDE + source
    cmd = [cc, "-O2", "-shared", "-fPIC", "-U_FORTIFY_SOURCE", "-w", *flags]
    key = hashlib.sha256("\0".join([full, *cmd]).encode()).hexdigest()[:32]
    os.makedirs(_CACHE, exist_ok=True)
    so = os.path.join(_CACHE, f"k{key}.so")
    if so in _LIBS:
        return _LIBS[so]
    if not os.path.exists(so):
        src = os.path.join(_CACHE, f"k{key}.cpp")
        fd, tmp_src = tempfile.mkstemp(suffix=".cpp", dir=_CACHE)
        with os.fdopen(fd, "w") as f:
            f.write(full)
        os.replace(tmp_src, src)
        fd, tmp_so = tempfile.mkstemp(suffix=".so", dir=_CACHE)
        os.close(fd)
        r = subprocess.run([*cmd, "-o", tmp_so, src], capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(tmp_so)
            raise CompileException(f"stand-in: the host compiler rejected the kernel ({src}):\n{r.stderr[-4000:]}")
        os.replace(tmp_so, so)  # atomic: a parallel process sees the whole library or none
    lib = _LIBS[so] = ctypes.CDLL(so)
    lib._standin_fault_addr.restype = ctypes.c_void_p
    lib._standin_error.restype = ctypes.c_char_p
    lib._standin_static_shared.restype = ctypes.c_longlong
    return lib


def preprocess(source: str, flags) -> str:
    """``source`` after the host preprocessor, with NVRTC's predefined macros and the CUDA keywords left as
    they are (the view in which ``extern "C" __global__ void name(...)`` is looked for)."""
    std = [f for f in flags if f.startswith(("-D", "-U", "-I", "-std="))]
    r = subprocess.run(
        [_compiler(), "-E", "-P", "-x", "c++", *std, "-D__CUDACC__", "-D__CUDACC_RTC__", "-"],
        input=source,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise CompileException(f"stand-in: the host preprocessor rejected the kernel:\n{r.stderr[-4000:]}")
    return r.stdout


# ---- guarded memory ------------------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)


class Guarded:
    """``nbytes`` of fresh memory whose last byte touches a ``PROT_NONE`` page (and whose first page is
    preceded by one): an access past either end faults."""

    def __init__(self, nbytes: int, label: str):
        self.nbytes, self.label = int(nbytes), label
        self.body = -(-self.nbytes // PAGE) * PAGE
        self.total = self.body + 2 * PAGE
        base = _libc.mmap(None, self.total, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise MemoryError(f"stand-in: mmap of {self.total} bytes failed (errno {ctypes.get_errno()})")
        self.base = base
        if self.body:
            self._protect(mmap.PROT_READ | mmap.PROT_WRITE)
        self.addr = base + PAGE + self.body - self.nbytes  # the last byte sits just before the guard page

    def _protect(self, prot):
        if _libc.mprotect(self.base + PAGE, self.body, prot) != 0:
            raise OSError(ctypes.get_errno(), "stand-in: mprotect failed")

    def writable(self):
        if self.body:
            self._protect(mmap.PROT_READ | mmap.PROT_WRITE)

    def read_only(self):
        if self.body:
            self._protect(mmap.PROT_READ)

    def bytes_view(self) -> numpy.ndarray:
        """A uint8 view of the ``nbytes`` (drop it before ``free``)."""
        if self.nbytes == 0:
            return numpy.empty(0, numpy.uint8)
        return numpy.frombuffer((ctypes.c_char * self.nbytes).from_address(self.addr), numpy.uint8)

    def where(self, addr: int) -> str | None:
        """How ``addr`` relates to this buffer, or None when it is nowhere near."""
        if self.addr <= addr < self.addr + self.nbytes:
            return f"inside {self.label}"
        if self.addr + self.nbytes <= addr < self.base + self.total:
            return f"{addr - self.addr - self.nbytes} bytes past the end of {self.label} ({self.nbytes} bytes)"
        if self.base <= addr < self.addr:
            return f"{self.addr - addr} bytes before the start of {self.label}"
        return None

    def free(self):
        if self.base:
            _libc.munmap(self.base, self.total)
            self.base = 0


def fault_message(lib, rc: int, buffers, kernel: str) -> str:
    """The CUDA error text of a fault (rc 1) or a device-side error (rc 2) reported by the runtime."""
    if rc == 2:
        text = (lib._standin_error() or b"device-side error").decode()
        code = (
            "CUDA_ERROR_ASSERT: device-side assert triggered"
            if text.startswith("device-side assert")
            else "CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure"
        )
        return f"{code} (stand-in, kernel {kernel}: {text})"
    if lib._standin_fault_sig() == 8:  # SIGFPE
        return (
            f"CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure (stand-in, kernel {kernel}: integer division "
            "by zero; a GPU does not trap, the result is undefined)"
        )
    addr = lib._standin_fault_addr() or 0
    access = {0: "read", 1: "write"}.get(lib._standin_fault_write(), "access")
    text = f"illegal {access} at address {addr:#x} (a null or wild pointer, or a stack overflow)"
    for b in buffers:
        w = b.where(addr)
        if w is not None:
            text = (
                f"{access} {w}, which is read-only (a write through a const pointer)"
                if w.startswith("inside")
                else f"out-of-bounds {access}: {w}"
            )
            break
    return f"CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered (stand-in, kernel {kernel}: {text})"
