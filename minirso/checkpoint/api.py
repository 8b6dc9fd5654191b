"""save, load, verify, check_writable: the public functions, each a few steps of the modules beside it.

``save`` = the run's parts (``mapping.py``, ``codec.py``) written through the integrity layer's Writer
(``integrity.py``: manifest, then header) into a temporary that replaces the path atomically
(``atomic.py``).  ``load`` = the bytes, checked by the integrity layer, decoded by ``mapping.py``.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from . import atomic, integrity
from .errors import FILE_ERRORS, CheckpointError, CheckpointWarning, write_error
from .mapping import Checkpoint, decode, optimizer_state, root_attributes, write_run

if TYPE_CHECKING:
    from ..nn.sequential import Sequential
    from ..optim.base import TrainableOptimizer

__all__ = ["save", "load", "verify", "check_writable", "previous_path", "load_bytes"]


# ================================================================================================
# save
# ================================================================================================
def save(
    path: str | os.PathLike,
    model: Sequential,
    optimizer: TrainableOptimizer | dict | None = None,
    history: dict | None = None,
    *,
    meta: dict | None = None,
    keep_previous: bool = False,
) -> None:
    """Write a checkpoint of ``model`` (and optionally optimizer state, history and metadata) to ``path``.

    ``optimizer``: an :class:`~minirso.optim.Optimizer`, or a ``state_dict()`` it made, or None.
    ``history``: a dict of 1-D number sequences / arrays and *tables* (lists of flat dicts of
    int / float / bool / str / None), e.g. ``{"eval": [{"cycle": 0, "test_accuracy": 0.71}, ...]}``.
    ``meta``: a JSON-able dict (run configuration, position).  ``keep_previous``: the checkpoint at
    ``path`` (if it verifies) becomes :func:`previous_path` (``path + ".prev"``).

    Values that cannot be stored exactly raise TypeError and leave ``path`` untouched.  A file that
    cannot be written (missing, read-only or full folder, ...) raises :class:`CheckpointError` naming
    the folder, the cause and the fix, and also leaves ``path`` untouched; :func:`check_writable` finds
    most of these before a long run starts.  The folder must exist (:func:`check_writable` can create it).
    """
    path = os.fspath(path)
    state = optimizer_state(optimizer)
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"history must be a dict or None, got {type(history).__name__}")
    try:
        with atomic.replacing(path) as tmp:
            with integrity.writing(tmp, root_attributes(model)) as w:
                write_run(w, model, state, history, meta)
            atomic.fsync_file(tmp)  # the data must be on disk before the rename makes it the checkpoint
            verify(tmp)  # a file that does not read back never replaces one that does
            if keep_previous and _worth_keeping(path):
                atomic.keep_previous(path)
    except OSError as e:  # h5py's and the OS's write errors (a raw OSError names the temporary)
        raise write_error(path, e) from e


def _worth_keeping(path) -> bool:
    """Does the checkpoint at ``path`` exist and verify?  A damaged one is not kept as ``.prev``: it would
    push out the good previous checkpoint that :func:`load` falls back to."""
    if not os.path.exists(path):
        return False
    try:
        verify(path)
    except CheckpointError as err:
        warnings.warn(f"{err}; it is replaced and not kept as {previous_path(path)}", CheckpointWarning, stacklevel=3)
        return False
    return True


def check_writable(path: str | os.PathLike, *, create_folders: bool = False) -> str:
    """Raise :class:`CheckpointError` now if :func:`save` could not write a checkpoint at ``path``.

    For the start of a long run, so that a bad ``--checkpoint`` fails in a second instead of after the
    first cycle.  ``create_folders=True`` first creates the missing folders of ``path`` (what the
    trainer's saves do).  The test is real: a probe file is created in the folder and removed again
    (permission bits say nothing for root, read-only mounts or full disks with quotas).  ``path`` may
    exist (a save replaces it) but must not be a folder.  Returns the absolute folder.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.basename(path) or os.path.isdir(path):
        raise CheckpointError(
            path, f"is a folder, not a file name: give the checkpoint a file name, e.g. {os.path.join(path, 'run.h5')}"
        )
    if create_folders:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise write_error(path, e, creating=True) from e
    try:
        atomic.probe_writable(path)
    except OSError as e:
        raise write_error(path, e) from e
    return folder


previous_path = atomic.previous_path  # path + ".prev": where save(keep_previous=True) keeps the file it replaces


# ================================================================================================
# load and verify
# ================================================================================================
def load(path: str | os.PathLike, *, fallback: bool = False, verify: str = "all") -> Checkpoint:
    """Read a checkpoint written by :func:`save`, checking every checksum; see :class:`Checkpoint`.

    Any problem with the file raises :class:`CheckpointError` (a missing file too, with "no such
    file").  ``fallback=True``: if ``path`` fails, load :func:`previous_path` instead, with a
    :class:`CheckpointWarning` naming both files and the reason; if that fails too, the error names both.

    ``verify="all"`` (the default): the file must be byte for byte what :func:`save` wrote.
    ``verify="data"``: everything minirso wrote must be intact (every dataset's sha256, every attribute
    it wrote, the set of groups and datasets), but attributes added later (e.g. a note added with h5py)
    are accepted and ignored, and so is the whole-file sha256 that any such edit changes.
    """
    integrity.check_level(verify)
    try:
        return load_bytes(integrity.read_bytes(path), path, verify=verify)
    except CheckpointError as first:
        if not fallback:
            raise
        prev = previous_path(path)
        try:
            ckpt = load_bytes(integrity.read_bytes(prev), prev, verify=verify)
        except CheckpointError as second:
            raise CheckpointError(
                path, f"{first.problem}; the previous checkpoint {prev} failed too: {second.problem}"
            ) from first
        warnings.warn(f"{first}; loaded the previous checkpoint {prev} instead", CheckpointWarning, stacklevel=2)
        return ckpt


def load_bytes(data: bytes, path: str | os.PathLike, *, check_header: bool = True, verify: str = "all") -> Checkpoint:
    """:func:`load` of a file's bytes already in memory; ``path`` names it in errors.

    ``check_header=False`` skips the header (the whole-file size and sha256) and relies on the
    manifest alone: the tests use it to check that layer on its own against damaged files.
    """
    integrity.check_level(verify)
    tree = integrity.verified_tree(data, path, check_header, verify)
    try:
        return decode(tree, path)
    except CheckpointError:
        raise
    except FILE_ERRORS as e:
        raise CheckpointError(path, f"malformed checkpoint ({type(e).__name__}: {e})") from e


def verify(path: str | os.PathLike, *, verify: str = "all") -> dict:
    """Check format, version, header and every checksum without building a model.

    Returns a summary ``{"path", "format_version", "created", "size", "datasets", "groups"}``;
    raises :class:`CheckpointError`.  ``verify``: "all" or "data", as for :func:`load`.
    """
    integrity.check_level(verify)
    data = integrity.read_bytes(path)
    tree = integrity.verified_tree(data, path, verify=verify)
    kinds = [n.type for n in tree.nodes.values()]
    return {
        "path": os.fspath(path),
        "format_version": integrity.FORMAT_VERSION,
        "created": tree.nodes["/"].attrs.get("created"),
        "size": len(data),
        "datasets": kinds.count("dataset"),
        "groups": kinds.count("group"),
    }
