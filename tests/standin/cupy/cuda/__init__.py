"""``cupy.cuda`` of the stand-in: one modelled device (an H100 unless ``_standin.compute_capability`` says
otherwise), its current stream, and the ``runtime`` calls minirso makes.  Any other name: AttributeError."""

from __future__ import annotations

from .. import _standin
from . import runtime

__all__ = ["Device", "Stream", "get_current_stream", "runtime"]


class Device:
    """``cupy.cuda.Device(device=None)`` (cupy/cuda/device.pyx): only device 0 exists."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            # device.pyx: the driver rejects an unknown ordinal
            raise runtime.CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    @property
    def compute_capability(self) -> str:
        """e.g. ``"90"`` (major and minor digits, as device.pyx builds it); read at call time."""
        return _standin.compute_capability

    def synchronize(self):
        """Wait for the device: one host synchronisation."""
        _standin.sync()

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class Stream:
    """``cupy.cuda.Stream`` (cupy/cuda/stream.py): the stand-in runs everything at once; ``synchronize`` is a
    host sync."""

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.null = null

    def synchronize(self):
        _standin.sync()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = Stream(null=True)


def get_current_stream(device_id=None):
    """The current stream (the null stream: the stand-in models no other)."""
    return _NULL


def __getattr__(name):
    raise AttributeError(
        f"module 'cupy.cuda' has no attribute {name!r} (the CuPy stand-in models only what "
        f"minirso uses; add it on purpose, checked against real CuPy)"
    )
