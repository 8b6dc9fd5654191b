"""minirso.checkpoint.atomic (through save): the path always holds a loadable checkpoint, even when the writer is
SIGKILLed mid-save; ``.prev`` and the fallback to it; stale temporaries; writing where it cannot.

Long variants are marked slow (``--runslow``).
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minirso import checkpoint, models
from minirso.checkpoint import CheckpointError, atomic

from .helpers import assert_same_model, same, temporaries
from .save_loop import versions


# ---- the module on its own: any file, no minirso ---------------------------------------------------
def test_replacing_renames_only_a_complete_write_and_removes_the_temporary_of_a_failed_one(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    with atomic.replacing(path) as tmp:
        assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(f".notes.txt.tmp-{os.getpid()}-")
        Path(tmp).write_text("new")
        atomic.fsync_file(tmp)
        assert path.read_text() == "old"  # nothing is visible before the block ends
    assert path.read_text() == "new" and temporaries(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic.replacing(path) as tmp:
            Path(tmp).write_text("half")
            raise KeyboardInterrupt
    assert path.read_text() == "new" and temporaries(tmp_path) == []


def test_keep_previous_links_the_current_file_to_prev(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("first")
    atomic.keep_previous(path)
    prev = Path(atomic.previous_path(path))
    assert prev.read_text() == "first" and path.read_text() == "first" and temporaries(tmp_path) == []
    with atomic.replacing(path) as tmp:
        Path(tmp).write_text("second")
    assert (path.read_text(), prev.read_text()) == ("second", "first")


# ---- keeping the previous checkpoint, falling back to it ------------------------------------------
def test_keep_previous_and_fallback(tmp_path, rng):
    a, b = models.mlp([3, 2], seed=1), models.mlp([3, 2], seed=2)
    path = tmp_path / "run.h5"
    prev = Path(checkpoint.previous_path(path))
    assert str(prev) == str(path) + ".prev"
    checkpoint.save(path, a, meta={"v": "a"}, keep_previous=True)
    assert not prev.exists()  # nothing to keep yet
    checkpoint.save(path, b, meta={"v": "b"}, keep_previous=True)
    assert checkpoint.load(path).meta == {"v": "b"} and checkpoint.load(prev).meta == {"v": "a"}
    checkpoint.save(path, a, meta={"v": "c"})  # keep_previous=False leaves .prev alone
    assert checkpoint.load(prev).meta == {"v": "a"}

    data = bytearray(path.read_bytes())
    data[-100] ^= 4
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    with pytest.warns(checkpoint.CheckpointWarning) as record:
        ck = checkpoint.load(path, fallback=True)
    assert ck.meta == {"v": "a"} and ck.path == str(prev)
    message = str(record[0].message)
    assert str(path) in message and str(prev) in message and "sha256" in message

    prev.write_bytes(b"junk")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, fallback=True)
    assert str(path) in str(info.value) and str(prev) in str(info.value) and "failed too" in str(info.value)
    path.unlink()
    prev.unlink()
    assert "no such file" in str(pytest.raises(CheckpointError, checkpoint.load, path, fallback=True).value)


def test_a_damaged_checkpoint_is_not_kept_as_previous(tmp_path):
    path = tmp_path / "run.h5"
    checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 1}, keep_previous=True)
    checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 2}, keep_previous=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(checkpoint.CheckpointWarning, match="not kept"):
        checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 3}, keep_previous=True)
    assert checkpoint.load(path).meta == {"v": 3}
    assert checkpoint.load(checkpoint.previous_path(path)).meta == {"v": 1}  # the good one survives


def test_stale_temporaries_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "run.h5"
    dead = 2**31 - 1  # beyond any pid_max: no such process
    stale = [f".run.h5.tmp-{dead}-0badcafe", f".run.h5.tmp-{dead}-1234abcd"]
    keep = [
        f".run.h5.tmp-{os.getpid()}-00000000",  # a live writer (this process)
        f".other.h5.tmp-{dead}-0badcafe",  # another target's
        "run.h5.tmp-1-0badcafe",
    ]  # not the pattern
    for name in stale + keep:
        (tmp_path / name).write_bytes(b"partial")
    checkpoint.save(path, models.mlp([2, 2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["run.h5"])
    checkpoint.load(path)


# ---- SIGKILL at random moments ---------------------------------------------------------------------
def _kill_loop(tmp_path, kills, seed):
    """Start the saving child, SIGKILL it after a random delay, check the path; ``kills`` times."""
    rng = np.random.default_rng(seed)
    known = versions()
    path = tmp_path / "loop.h5"
    script = Path(__file__).with_name("save_loop.py")
    counters, mid_save = [], 0
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready", "the saving child did not start"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        mid_save += bool(temporaries(tmp_path))
        for p in (path, Path(checkpoint.previous_path(path))):
            if p == path or p.exists():
                ck = checkpoint.load(p)  # never fails
                model, state, history = known[ck.meta["version"]]
                assert_same_model(ck.model, model)
                assert same(ck.optimizer, state) and same(ck.history, history)
                counters.append(ck.meta["counter"])
    checkpoint.save(path, known[0][0])  # the next save removes the killed saves' temporaries
    assert temporaries(tmp_path) == []
    return counters, mid_save


def test_sigkill_during_saves_never_leaves_a_bad_file(tmp_path):
    counters, mid_save = _kill_loop(tmp_path, kills=20, seed=0)
    assert max(counters) > 0


@pytest.mark.slow
def test_sigkill_during_saves_long(tmp_path):
    counters, mid_save = _kill_loop(tmp_path, kills=200, seed=1)
    print(
        f"\n200 kills: every load succeeded and matched its version; {mid_save} kills left a temporary "
        f"(killed mid-save); counters up to {max(counters)}"
    )


# ---- writing where it cannot ------------------------------------------------------------------------
def _unwritable(tmp_path):
    """A checkpoint path under a regular FILE: unwritable for root too (a chmod'ed folder is not)."""
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile" / "run.h5"


def test_save_where_it_cannot_write_raises_checkpoint_error_naming_path_folder_cause_and_fix(tmp_path):
    """Issue 16.7: a raw h5py OSError (naming only the temporary) became a CheckpointError."""
    path = _unwritable(tmp_path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.save(path, models.mlp([3, 2], seed=1))
    err = info.value
    assert err.path == str(path) and str(err).startswith(f"{path}: ")
    assert f"folder {tmp_path / 'afile'}" in err.problem and "Not a directory" in err.problem
    assert "choose another path" in err.problem and ".tmp-" not in str(err)
    assert isinstance(err.__cause__, OSError) and "\n" not in str(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_check_writable_fails_before_any_work_and_creates_folders_on_request(tmp_path):
    bad = _unwritable(tmp_path)
    for create in (False, True):
        with pytest.raises(CheckpointError, match=r"afile.*Not a directory|afile.*File exists") as info:
            checkpoint.check_writable(bad, create_folders=create)
        assert info.value.path == str(bad) and "a part of the path is a file" in info.value.problem
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.check_writable(tmp_path / "runs" / "run.h5")
    with pytest.raises(CheckpointError, match="is a folder"):
        checkpoint.check_writable(tmp_path)
    good = tmp_path / "runs" / "a" / "run.h5"
    assert checkpoint.check_writable(good, create_folders=True) == str(good.parent)
    assert list(good.parent.iterdir()) == []  # the probe is gone
    checkpoint.save(good, models.mlp([3, 2], seed=1))  # what it promised
    assert checkpoint.check_writable(good) == str(good.parent)  # an existing checkpoint is fine: saves replace it


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        for attempt in (lambda p: checkpoint.check_writable(p), lambda p: checkpoint.save(p, models.mlp([2, 2]))):
            with pytest.raises(CheckpointError, match="Permission denied.*permissions"):
                attempt(folder / "run.h5")
    finally:
        folder.chmod(0o700)


def test_a_failure_late_in_save_is_a_checkpoint_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    """A full disk at the final rename (or anywhere else): CheckpointError, the old checkpoint intact."""
    path = tmp_path / "run.h5"
    checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 1})
    before = path.read_bytes()

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(CheckpointError, match=r"run\.h5: cannot write .*No space left on device.*disk is full"):
        checkpoint.save(path, models.mlp([3, 2], seed=2), meta={"v": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before and temporaries(tmp_path) == []
    with pytest.raises(TypeError):  # values that cannot be stored stay a TypeError, as documented
        checkpoint.save(path, models.mlp([3, 2], seed=2), meta={"v": object()})
