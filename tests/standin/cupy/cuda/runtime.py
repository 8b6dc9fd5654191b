"""``cupy.cuda.runtime`` of the stand-in (cupy_backends/cuda/api/runtime.pyx): one CUDA device."""

from __future__ import annotations

from .. import _standin

is_hip = False  # runtime.pyx: False on CUDA builds


class CUDARuntimeError(RuntimeError):
    """``cupy_backends.cuda.api.runtime.CUDARuntimeError``."""


def getDeviceCount() -> int:
    return 1


def getDevice() -> int:
    return 0


def runtimeGetVersion() -> int:
    """CUDA runtime version as ``1000 * major + 10 * minor`` (12.8 -> 12080)."""
    return 12080


def driverGetVersion() -> int:
    return 12080


def getDeviceProperties(device: int) -> dict:
    """A subset of cudaDeviceProp as runtime.pyx returns it: a dict, ``name`` in bytes."""
    if device != 0:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
    cc = _standin.compute_capability
    return {
        "name": b"CuPy stand-in (CPU)",
        "totalGlobalMem": 80 * 1024**3,
        "major": int(cc[:-1]),
        "minor": int(cc[-1]),
        "multiProcessorCount": 132,
        "warpSize": 32,
        "maxThreadsPerBlock": 1024,
        "sharedMemPerBlock": 49152,
        "clockRate": 1980000,
        "memoryClockRate": 2619000,
        "memoryBusWidth": 5120,
        "l2CacheSize": 52428800,
    }


def __getattr__(name):
    raise AttributeError(
        f"module 'cupy.cuda.runtime' has no attribute {name!r} (the CuPy stand-in models only what minirso uses)"
    )
