"""Replace a file atomically, so that its path always holds a complete file, even if the writer is killed.

Nothing here knows what the file holds (no HDF5, no minirso): it is the file-system half of
:func:`minirso.checkpoint.save`, and any program that rewrites one file again and again could use it::

    with replacing("run.h5") as tmp:   # tmp: ".run.h5.tmp-<pid>-<random>" in the same folder
        write(tmp)                     # a crash here leaves run.h5 as it was (and tmp, cleaned up later)
        fsync_file(tmp)                # the bytes are on disk before the rename makes them the file
    # here tmp has been renamed onto run.h5 (os.replace: atomic) and the folder fsynced

Why each step (POSIX guarantees, see ``rename(2)`` and ``fsync(2)``):

* A rename within one file system is atomic: a reader sees the old file or the new one, never a
  mixture.  So the new content is written under a temporary name in the SAME folder and renamed last.
* ``fsync`` of the file before the rename: otherwise after a power cut the rename may be on disk but
  the data not.  ``fsync`` of the folder after it: the rename itself is an entry of the folder.
* A killed writer leaves its temporary behind.  The name carries the writer's process id, so the next
  save deletes the temporaries whose process is gone (:func:`remove_stale_temporaries`) and never those
  of a writer still running.
* :func:`keep_previous` hard-links the current file to a temporary name and renames that onto
  ``path + ".prev"``: at no instant is ``path`` missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil

__all__ = [
    "replacing",
    "temporary_name",
    "remove_stale_temporaries",
    "fsync_file",
    "fsync_directory",
    "previous_path",
    "keep_previous",
    "probe_writable",
    "remove_quietly",
]


def temporary_name(path) -> str:
    """``.<name>.tmp-<pid>-<random>`` next to ``path``: hidden, unique, and traceable to its writer."""
    d, name = os.path.split(os.fspath(path))
    return os.path.join(d, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def replacing(path):
    """Yield a fresh temporary name next to ``path``; when the block ends normally, rename it onto ``path``.

    If the block raises (KeyboardInterrupt too), the temporary is removed and ``path`` is untouched.
    Temporaries of earlier writers to ``path`` that were killed are removed first.  The caller fsyncs
    what it wrote (:func:`fsync_file`) before leaving the block; the folder is fsynced after the rename.
    """
    path = os.fspath(path)
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)  # the atomic step: before it readers see the old file, after it the new one
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_directory(path)


def remove_stale_temporaries(path):
    """Delete temporaries of earlier writes to ``path`` whose writing process is gone (killed mid-write)."""
    d, name = os.path.split(os.fspath(path))
    pattern = re.compile(rf"\.{re.escape(name)}\.tmp-(\d+)-[0-9a-f]+\Z")
    try:
        entries = os.listdir(d or ".")
    except OSError:
        return  # the write itself will report a missing folder
    for entry in entries:
        m = pattern.match(entry)
        if m and not _process_alive(int(m.group(1))):
            remove_quietly(os.path.join(d, entry))


def _process_alive(pid: int) -> bool:
    """Could process ``pid`` still be writing its temporary?  (Only this host's processes are known.)"""
    if pid == os.getpid() or os.name == "nt":  # another thread of ours; Windows: no safe probe, keep it
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_quietly(path):
    """Remove ``path`` if it exists; errors are ignored (cleaning up must not hide the real error)."""
    try:
        os.remove(path)
    except OSError:
        pass


def fsync_file(path):
    """Flush ``path``'s data to the disk (before a rename makes it the file)."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_directory(path):
    """fsync the folder holding ``path``: makes renames in it durable (POSIX; a no-op on Windows)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # an unreadable folder: the rename is atomic all the same, only less durable
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def previous_path(path: str | os.PathLike) -> str:
    """Where :func:`keep_previous` keeps the file that the next write replaces: ``path + ".prev"``."""
    return os.fspath(path) + ".prev"


def keep_previous(path):
    """Make the current file at ``path`` also :func:`previous_path`, keeping ``path`` in place.

    A hard link gives the same file a second name without copying; linking to a temporary name and
    renaming that over ``path.prev`` keeps every step atomic.  (Whether the current file deserves to
    be kept is the caller's decision.)
    """
    prev = previous_path(path)
    link = temporary_name(path)
    try:
        try:
            os.link(path, link)
        except OSError:  # a file system without hard links: copy
            shutil.copyfile(path, link)
            fsync_file(link)
        os.replace(link, prev)
    except BaseException:
        remove_quietly(link)
        raise
    fsync_directory(prev)


def probe_writable(path):
    """Create a file under a temporary name next to ``path`` and remove it again; raises the OSError if not.

    Permission bits say nothing for root, read-only mounts or full disks with quotas: only a real file
    tells.  The probe has the temporaries' name pattern, so a probe left by a kill is removed later.
    """
    probe = temporary_name(path)
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.remove(probe)
