"""The one exception every checkpoint problem raises, its warning, and the messages for failed writes.

Every problem with a file (missing, not a checkpoint, unknown version, truncated, a checksum, an
architecture that does not fit the weights) and every failure to write one (a folder that is missing,
read-only or full) raises ONE exception type, :class:`CheckpointError`, so that one ``except`` covers
them all.  Its message names the file and the problem; whatever h5py, json or the OS raised is its
``__cause__``.
"""

from __future__ import annotations

import errno
import os

__all__ = ["CheckpointError", "CheckpointWarning", "FILE_ERRORS", "write_error"]

# Everything that reading a damaged file can raise; turned into CheckpointError.  (MemoryError: a
# damaged size field can ask for an absurd allocation.)
FILE_ERRORS = (OSError, LookupError, ValueError, TypeError, RuntimeError, ArithmeticError, MemoryError)


class CheckpointError(Exception):
    """A checkpoint file cannot be used (missing, not a checkpoint, unknown version, damaged, or not
    fitting its own architecture) or cannot be written (the problem names the folder, the cause and the
    fix).  ``str(err)`` is ONE line, ``"<path>: <problem>"``; ``err.path`` and
    ``err.problem`` hold the parts."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever libhdf5 put in its message
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # picklable (multiprocessing) although __init__ takes two arguments
        return type(self), (self.path, self.problem)


class CheckpointWarning(UserWarning):
    """``load(..., fallback=True)`` used the previous checkpoint, or ``save`` did not keep a damaged one."""


_FIXES = {  # errno -> what the user can do about it
    errno.ENOENT: "the folder does not exist: create it, or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a part of the path is a file, not a folder: choose another path",  # (from creating folders)
    errno.EISDIR: "the path is a folder: give the checkpoint a file name, e.g. run.h5",
    errno.EACCES: "no permission to write there: fix the folder's permissions or choose another path",
    errno.EPERM: "the operation is not permitted there: fix the folder's permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose a path on a writable one",
    errno.ENOSPC: "the disk is full: free some space or choose a path on another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose a path on another disk",
}


def write_error(path, e: OSError, creating: bool = False) -> CheckpointError:
    """The CheckpointError for a failed write (``creating``: of the folder): the folder, the cause, the fix.

    The folder is named rather than the file: an OSError from h5py or the OS names the temporary
    (``.run.h5.tmp-...``), which the user never asked for.
    """
    folder = os.path.dirname(os.path.abspath(path))
    cause = f"{os.strerror(e.errno)} (errno {e.errno})" if e.errno else f"{type(e).__name__}: {e}"
    fix = _FIXES.get(e.errno, "choose a checkpoint path in a folder you can write to")
    if e.errno == errno.ENOENT and (creating or os.path.isdir(folder)):  # e.g. under /proc: no new entries
        fix = "no new files or folders can be made there: choose another path"
    what = "create the folder" if creating else "write a checkpoint in the folder"
    return CheckpointError(path, f"cannot {what} {folder}: {cause}; {fix}")
