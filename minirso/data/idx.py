"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), gzip-compressed, with checksum checks.

An IDX file is a 4-byte magic number ``0 0 <type> <ndim>``, ``ndim`` big-endian
uint32 sizes, then the values in C order.  MNIST uses type 0x08 (uint8).
A damaged file never loads silently: a wrong checksum, a bad gzip stream, a
bad magic number or a wrong length raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import pathlib
import zlib

import numpy

__all__ = ["DataError", "read_idx", "md5sum"]

_TYPES = {0x08: numpy.uint8, 0x09: numpy.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A data file is missing, damaged or not what it claims to be (the message names the file)."""


def md5sum(path) -> str:
    return hashlib.md5(pathlib.Path(path).read_bytes()).hexdigest()


def read_idx(path, md5: str | None = None) -> numpy.ndarray:
    """Read a (gzip-compressed or plain) IDX file; verify its md5 first when ``md5`` is given."""
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if md5 is not None and hashlib.md5(raw).hexdigest() != md5:
        raise DataError(f"{path}: md5 {hashlib.md5(raw).hexdigest()} does not match the published {md5} "
                        "(truncated or corrupt download?)")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: damaged gzip stream ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise DataError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = numpy.dtype(_TYPES[raw[2]])
    expected = header + int(numpy.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes")
    return numpy.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
