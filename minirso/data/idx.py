"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), gzip-compressed, with checksum checks.

An IDX file is a 4-byte magic number ``0 0 <type> <ndim>``, ``ndim`` big-endian
uint32 sizes, then the values in C order.  MNIST uses type 0x08 (uint8).
A damaged file never loads silently: a wrong checksum, a bad gzip stream, a
bad magic number or a wrong length raises :class:`DataError` naming the file.
The checksum is checked before anything is parsed, so a file that passes it
is byte for byte the published one.
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
    """The md5 hex digest of a file (the checksum every dataset publisher lists)."""
    return hashlib.md5(pathlib.Path(path).read_bytes()).hexdigest()


def read_idx(path, md5: str | None = None, *, content_md5: str | None = None) -> numpy.ndarray:
    """Read a (gzip-compressed or plain) IDX file, verifying its checksum first.

    ``md5`` is the published sum of the file as distributed (the ``.gz``);
    ``content_md5`` the sum of the uncompressed IDX bytes.  When both are
    given, a file passes if either matches: the published ``.gz``, a plain
    ``gunzip``-ed copy and a re-compressed copy of the same bytes (Debian's
    ``dataset-fashion-mnist`` ships those) are all the same data.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    file_md5 = hashlib.md5(raw).hexdigest()
    file_ok = md5 is not None and file_md5 == md5
    if md5 is not None and not file_ok and content_md5 is None:
        raise DataError(f"{path}: md5 {file_md5} does not match the published {md5} (truncated or corrupt download?)")
    if raw[:2] == b"\x1f\x8b":  # the gzip magic; without it the file is taken as plain IDX
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: truncated or damaged gzip stream ({e})") from None
    if content_md5 is not None and not file_ok and hashlib.md5(raw).hexdigest() != content_md5:
        file_part = f"md5 {file_md5} does not match the published {md5}, nor does " if md5 else ""
        raise DataError(
            f"{path}: {file_part}the md5 {hashlib.md5(raw).hexdigest()} of its uncompressed "
            f"content match the published {content_md5} (truncated, corrupt or a different file?)"
        )
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
