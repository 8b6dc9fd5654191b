"""The integrity layer: a checkpoint file that was damaged never loads with changed values.

HDF5 checksums some of its own metadata but none of the data, so a flipped bit in a weight loads
silently.  Two layers of sha256 guard against that:

1. The first 512 bytes are the HDF5 *user block*, which HDF5 reserves for the application and never
   reads.  :func:`seal` puts a short text header there: the format, the file's size and the sha256 of
   every byte after the header.  Truncation and any flipped bit are caught here (:func:`check_header`).
2. Inside the file, a manifest (``/manifest.json``) lists every group and dataset with its attributes,
   and every dataset with the sha256 of its dtype, shape and bytes; the manifest's own sha256 is a root
   attribute.  :class:`Writer` records it while the file is written; :func:`read_tree` checks every
   object against it.  This second layer says *which* dataset changed, and it is a complete check on its
   own: the tests run both layers separately against thousands of damaged files.

:func:`verified_tree` runs both and returns the file's content as a :class:`Tree` in memory, so that
decoding (``codec.py``, ``mapping.py``) never touches h5py or unchecked bytes.  The layout of the file
is described in ``docs/checkpoint-format.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import re

import h5py
import numpy

from .errors import FILE_ERRORS, CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "VERIFY_LEVELS",
    "Writer",
    "writing",
    "seal",
    "Tree",
    "verified_tree",
    "read_bytes",
    "check_level",
    "fixed_text",
    "text_array",
    "digest",
]

FORMAT = "minirso-checkpoint"
FORMAT_VERSION = 1
HEADER_SIZE = 512  # the HDF5 user block: HDF5 finds its superblock right after it
_LIBVER = ("v110", "v110")  # HDF5 1.10 object format: its metadata carries HDF5's own checksums, and
#                             any HDF5 >= 1.10 (h5py, h5ls, MATLAB, ...) reads it
VERIFY_LEVELS = ("all", "data")


# ================================================================================================
# values as HDF5 stores them
# ================================================================================================
# Text is stored as FIXED-length UTF-8 strings.  HDF5 keeps variable-length strings (h5py's default) in
# a "global heap", the one structure of the format without a checksum, and the bit-flip tests found
# that libhdf5 can loop forever on a damaged one.  Every other structure of the HDF5 1.10 format that
# libhdf5 parses carries HDF5's own checksum, so a damaged file makes it fail cleanly instead.
def fixed_text(text: str):
    """``text`` as a 0-d fixed-length UTF-8 string array (h5py reads it back as bytes)."""
    b = text.encode("utf-8")
    return numpy.array(b, dtype=h5py.string_dtype("utf-8", max(1, len(b))))


def text_array(texts):
    """A 1-D fixed-length UTF-8 string array of ``texts`` (table columns)."""
    encoded = [t.encode("utf-8") for t in texts]
    return numpy.array(encoded, dtype=h5py.string_dtype("utf-8", max([1] + [len(b) for b in encoded])))


def _set_attr(obj, name, value):
    """Attributes are str (fixed-length UTF-8) or int."""
    if isinstance(value, str):
        obj.attrs.create(name, fixed_text(value))
    else:
        obj.attrs[name] = numpy.int64(value)


def _attr(v):
    """An attribute as a plain Python value (h5py gives NumPy scalars, and sometimes bytes)."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, (numpy.generic, numpy.ndarray)):
        return v.tolist()
    return v


def digest(value) -> str:
    """sha256 over a dataset's dtype, shape and bytes, as written and as h5py reads it back."""
    h = hashlib.sha256()
    if isinstance(value, (str, bytes)):  # a scalar string: written as str, read back as bytes
        h.update(b"string\0")
        h.update(value.encode("utf-8") if isinstance(value, str) else value)
        return h.hexdigest()
    a = numpy.asarray(value)
    if a.dtype == object:
        raise ValueError("variable-length data is not part of the format")
    h.update(f"{a.dtype.str}{a.shape}\0".encode("ascii"))
    h.update(a.tobytes(order="C"))
    return h.hexdigest()


# ================================================================================================
# writing: the manifest and the header
# ================================================================================================
class Writer:
    """Creates groups and datasets, recording each (attributes, and sha256 for datasets) for the manifest."""

    def __init__(self, f):
        self.f = f
        self.objects = {}  # path -> {"type", "attrs", ["sha256"]}, in creation order

    def group(self, path, **attrs):
        self._parents(path)
        g = self.f.create_group(path)
        self._record(g, path, "group", attrs)

    def dataset(self, path, data, **attrs):
        """``data``: a str (stored as fixed-length UTF-8 text) or a NumPy array (see :func:`text_array`)."""
        self._parents(path)
        ds = self.f.create_dataset(path, data=fixed_text(data) if isinstance(data, str) else data)
        self._record(ds, path, "dataset", attrs, sha256=digest(data))

    def __contains__(self, path) -> bool:
        return path in self.objects

    def _parents(self, path):
        parent = path.rsplit("/", 1)[0]
        if parent and parent not in self.objects:
            self.group(parent)

    def _record(self, obj, path, kind, attrs, **extra):
        for k, v in attrs.items():
            _set_attr(obj, k, v)
        self.objects[path] = {"type": kind, "attrs": attrs, **extra}

    def finish(self, root_attrs):
        """Root attributes, then the manifest of everything written, then the manifest's sha256."""
        self.objects = {"/": {"type": "group", "attrs": root_attrs}, **self.objects}
        text = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "objects": self.objects})
        self.f.create_dataset("/manifest.json", data=fixed_text(text))
        for k, v in root_attrs.items():
            _set_attr(self.f, k, v)
        _set_attr(self.f, "manifest_sha256", digest(text))


@contextlib.contextmanager
def writing(tmp, root_attrs):
    """Create the HDF5 file ``tmp`` and yield its :class:`Writer`; at the end the manifest, then the header.

    ``tmp`` must not exist.  The caller fsyncs the file afterwards (``atomic.fsync_file``).
    """
    with h5py.File(tmp, "w-", userblock_size=HEADER_SIZE, libver=_LIBVER) as f:
        w = Writer(f)
        yield w
        w.finish(root_attrs)
    seal(tmp)


def _header(size: int, sha256: str) -> bytes:
    """The 512-byte text header in the HDF5 user block (``head -c 512 run.h5`` shows it)."""
    text = (
        f"{FORMAT} {FORMAT_VERSION}\nsize {size}\nsha256 {sha256}\n"
        f"An HDF5 file follows this {HEADER_SIZE}-byte header: open it with h5py; "
        "see minirso docs/checkpoint-format.md\n"
    )
    return text.encode("ascii").ljust(HEADER_SIZE, b"\0")


def seal(tmp):
    """Write the header (size and sha256 of everything after it) into the user block of the file ``tmp``."""
    with open(tmp, "r+b") as fh:
        fh.seek(HEADER_SIZE)
        h, size = hashlib.sha256(), HEADER_SIZE
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
        fh.seek(0)
        fh.write(_header(size, h.hexdigest()))


# ================================================================================================
# reading: the header, then the manifest
# ================================================================================================
def check_level(verify):
    if verify not in VERIFY_LEVELS:
        raise ValueError(
            f"verify must be 'all' (the whole file as saved) or 'data' (what minirso wrote; "
            f"attributes added later are accepted), got {verify!r}"
        )


def read_bytes(path) -> bytes:
    """The whole file: the checksum is computed over exactly the bytes HDF5 then parses."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as e:
        raise CheckpointError(path, "no such file") from e
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file ({e.strerror or e})") from e


def verified_tree(data: bytes, path, check_header: bool = True, verify: str = "all") -> Tree:
    """Header first (cheap, and catches truncation before libhdf5 parses anything), then the manifest.

    When the file's sha256 or size does not match its header, the HDF5 pass still runs, to say which
    dataset changed; if it finds nothing, the damage is in bytes outside the datasets.  With
    ``verify="data"`` the whole-file size and sha256 are not compared (an attribute added with h5py
    changes both) and added attributes are accepted: the manifest pass alone decides.
    ``check_header=False`` skips the header entirely (the tests check the manifest layer on its own).
    """
    damage = _check_header(data, path, whole_file=verify == "all") if check_header else None
    try:
        tree, added = _read_tree(data, path)
    except CheckpointError as err:
        if damage is None:
            raise
        raise CheckpointError(path, f"{err.problem} ({damage})") from err
    if added and verify == "all":  # (this also explains a header mismatch: the edit changed the file)
        raise CheckpointError(path, _added_problem(added))
    if damage is not None:
        raise CheckpointError(path, f"{damage}: bytes outside the datasets changed after it was written")
    return tree


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_header(data: bytes, path, whole_file: bool = True):
    """Raise for "not a checkpoint", unknown version, truncation, a damaged header.  Return None if
    size and sha256 match the header (or ``whole_file`` is False), else what differs (the HDF5 pass
    then looks for the damage)."""
    if not data:
        raise CheckpointError(path, "empty file (0 bytes): not a minirso checkpoint")
    m = re.fullmatch(rb"minirso-checkpoint (\d+)", data[:64].split(b"\n", 1)[0])
    if m is None:
        magic = f"{FORMAT} {FORMAT_VERSION}\n".encode("ascii")
        if len(data) < len(magic) and magic.startswith(data):
            raise CheckpointError(path, f"truncated: only {len(data)} bytes")
        hdf5 = any(data[i : i + 8] == _HDF5_SIGNATURE for i in (0, 512, 1024, 2048))
        raise CheckpointError(
            path,
            "not a minirso checkpoint ("
            + ("an HDF5 file without the minirso header)" if hdf5 else "not an HDF5 file)"),
        )
    if int(m.group(1)) != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"unknown format version {int(m.group(1))} (this minirso reads version "
            f"{FORMAT_VERSION}; a newer minirso wrote it?)",
        )
    if len(data) < HEADER_SIZE:
        raise CheckpointError(path, f"truncated: only {len(data)} bytes, less than the {HEADER_SIZE}-byte header")
    m = re.match(rb"minirso-checkpoint 1\nsize (\d{1,20})\nsha256 ([0-9a-f]{64})\n", data)
    if m is None or data[:HEADER_SIZE] != _header(int(m.group(1)), m.group(2).decode()):
        raise CheckpointError(path, f"damaged header (the first {HEADER_SIZE} bytes)")
    size = int(m.group(1))
    if len(data) < size:
        raise CheckpointError(path, f"truncated: the file has {len(data)} bytes, it was written with {size}")
    if not whole_file:
        return None
    if len(data) > size:
        return f"the file has {len(data)} bytes, it was written with {size}"
    if hashlib.sha256(memoryview(data)[HEADER_SIZE:]).hexdigest() != m.group(2).decode():
        return "the file's sha256 does not match its header"
    return None


@dataclasses.dataclass
class Node:
    """One verified group or dataset."""

    type: str  # "group" or "dataset"
    attrs: dict
    value: object = None  # a dataset's value as h5py read it (ndarray, or bytes for a string)


class Tree:
    """The verified content of a file, in memory: decoding never touches h5py again."""

    def __init__(self, nodes: dict):
        self.nodes = nodes  # "/model/conv1/weight" -> Node
        self.children = {p: [] for p, n in nodes.items() if n.type == "group"}  # group -> member names
        for p in nodes:
            if p != "/":
                self.children[p.rsplit("/", 1)[0] or "/"].append(p.rsplit("/", 1)[1])

    def __contains__(self, p):
        return p in self.nodes

    def value(self, p):
        return self.nodes[p].value


def _read_tree(data: bytes, path):
    """Open the HDF5 image; check format, version, manifest, and every object against the manifest.

    Returns the tree and the attributes minirso did not write, ``[(object path, name), ...]`` (added
    later, e.g. with h5py): only their names are read, never their values (h5py writes a str as a
    variable-length string, in the global heap that HDF5 does not checksum; see :func:`fixed_text`).
    """
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            _check_identity(f, path)
            manifest = _read_manifest(f, path)
            added = [("/manifest.json", k) for k in f["manifest.json"].attrs]  # minirso writes none there
            nodes = _check_objects(f, manifest, path, added)
            return Tree(nodes), added
    except CheckpointError:
        raise
    except FILE_ERRORS as e:
        raise CheckpointError(path, f"unreadable or truncated HDF5 data ({type(e).__name__}: {e})") from e


def _check_identity(f, path):
    fmt = _attr(f.attrs.get("format"))
    if fmt != FORMAT:
        raise CheckpointError(path, f"not a minirso checkpoint (root attribute format is {fmt!r})")
    version = _attr(f.attrs.get("format_version"))
    if version != FORMAT_VERSION:
        raise CheckpointError(path, f"unknown format version {version!r} (this minirso reads version {FORMAT_VERSION})")


def _read_manifest(f, path) -> dict:
    if "manifest.json" not in f:
        raise CheckpointError(path, "missing dataset /manifest.json")
    text = f["manifest.json"][()]
    if not isinstance(text, bytes) or digest(text) != _attr(f.attrs.get("manifest_sha256")):
        raise CheckpointError(path, "checksum mismatch in dataset /manifest.json")
    manifest = json.loads(text)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, "the manifest is not for this format version")
    return manifest["objects"]


def _check_objects(f, manifest: dict, path, added: list) -> dict:
    """Every object is in the manifest and vice versa, attributes equal, dataset checksums match.
    Attributes not in the manifest are appended to ``added`` as ``(object path, name)``."""
    found = _objects(f)
    missing = [p for p in manifest if p not in found]
    if missing:
        entry = manifest[missing[0]]
        what = entry.get("type", "object") if isinstance(entry, dict) else "object"
        raise CheckpointError(path, f"missing {what} {missing[0]} (listed in the manifest)")
    extra = [p for p in found if p not in manifest]
    if extra:
        raise CheckpointError(path, f"unexpected object {extra[0]} (not in the manifest)")
    return {p: _checked_node(p, found[p], entry, path, added) for p, entry in manifest.items()}


def _objects(f) -> dict:
    """Path -> h5py group or dataset, for everything in the file but the manifest itself."""
    found = {"/": f}

    def collect(name, obj):  # (returning a value would stop the visit)
        found["/" + name] = obj

    f.visititems(collect)
    found.pop("/manifest.json", None)
    return found


def _checked_node(p, obj, entry, path, added: list) -> Node:
    """Read one object, checking it against its manifest entry (attributes not in it go to ``added``)."""
    kind = "dataset" if isinstance(obj, h5py.Dataset) else "group"
    if kind != entry["type"]:
        raise CheckpointError(path, f"{p} is a {kind}, the manifest says {entry['type']}")
    expected = entry["attrs"]
    ours = set(expected) | ({"manifest_sha256"} if p == "/" else set())  # (the root's is checked with the manifest)
    names = list(obj.attrs)
    added += [(p, k) for k in names if k not in ours]
    attrs = {k: _attr(obj.attrs[k]) for k in names if k in expected}
    for k in expected:
        if k not in attrs:
            raise CheckpointError(path, f"attributes of {p} differ from the manifest (attribute {k!r} is missing)")
        if json.dumps(attrs[k]) != json.dumps(expected[k]):  # types count too: 1 is not "1"
            raise CheckpointError(path, f"attributes of {p} differ from the manifest (attribute {k!r} changed)")
    if kind == "group":
        return Node(kind, attrs)
    value = obj[()]
    if digest(value) != entry["sha256"]:
        raise CheckpointError(path, f"checksum mismatch in dataset {p}")
    return Node(kind, attrs, value)


def _added_problem(added) -> str:
    """The strict load's message for attributes minirso did not write: which, and how to accept them."""
    (p, name), more = added[0], len(added) - 1
    others = f" (and {more} more)" if more else ""
    return (
        f"attribute {name!r} of {p}{others} was not written by minirso (added after saving, e.g. with h5py), "
        "so the file is not byte for byte as saved; everything minirso wrote is intact: "
        'load(path, verify="data") or `minirso inspect --data-only` accepts added attributes'
    )
