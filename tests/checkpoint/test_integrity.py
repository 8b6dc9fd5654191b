"""minirso.checkpoint.integrity: a damaged file raises CheckpointError naming the file and the problem, and NEVER
loads with a changed value (truncation and bit-flip sweeps, for the whole-file header and for the per-dataset
manifest on its own); attributes added after saving load with verify="data".

Long variants are marked slow (``--runslow``).
"""

import hashlib
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest

from minirso import checkpoint, models
from minirso.checkpoint import CheckpointError
from minirso.checkpoint.api import load_bytes
from minirso.optim import RSO

from .helpers import HISTORY, assert_same_checkpoint, images, perturb, problem_of, saved


def test_verify_returns_a_summary(tmp_path):
    path = saved(tmp_path / "v.h5", models.rso_mnist(channels=2), None, HISTORY)
    info = checkpoint.verify(path)
    assert info["format_version"] == 1 and info["size"] == path.stat().st_size
    # 19 parameter tensors + 12 BatchNorm statistics + architecture + meta + 7 history datasets
    assert info["datasets"] == 19 + 12 + 1 + 1 + 7
    assert info["groups"] == 1 + 1 + 13 + 2  # /, /model, a group per layer with tensors, /history, /history/eval


# ---- damaged and foreign files ------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small complete checkpoint (model with BatchNorm, RSO state with records, history, meta):
    (bytes, reference)."""
    rng = np.random.default_rng(5)
    model = models.rso_mnist(channels=2, seed=2)
    x, y = images(rng, 16)
    opt = RSO(model, x, y, cycles=2, batch_size=8, seed=5)
    for _ in range(22):
        opt.step()
    perturb(model, rng)
    path = tmp_path_factory.mktemp("small") / "small.h5"
    checkpoint.save(path, model, opt, HISTORY, meta={"cycle": 1, "config": {"batch": 8}})
    return path.read_bytes(), checkpoint.load(path)


def test_missing_file(tmp_path):
    assert "no such file" in problem_of(tmp_path / "nope.h5")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty file"),
        (np.random.default_rng(1).bytes(4096), "not a minirso checkpoint (not an HDF5 file)"),
        (b"hello\n", "not a minirso checkpoint"),
        (b"minirso-chec", "truncated"),
    ],
)
def test_not_a_checkpoint(tmp_path, content, problem):
    path = tmp_path / "f.h5"
    path.write_bytes(content)
    assert problem in problem_of(path)


def test_hdf5_but_not_a_minirso_checkpoint(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.ones(3)
    assert "not a minirso checkpoint (an HDF5 file" in problem_of(path)
    with h5py.File(path, "w", userblock_size=512) as f:
        f["weights"] = np.ones(3)
    assert "not a minirso checkpoint" in problem_of(path)


def test_unknown_format_version(tmp_path, small):
    data, _ = small
    path = tmp_path / "v2.h5"
    path.write_bytes(data.replace(b"minirso-checkpoint 1\n", b"minirso-checkpoint 2\n", 1))  # a newer writer
    assert "unknown format version 2" in problem_of(path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 2
    assert "unknown format version 2" in problem_of(path)


def test_checksum_mismatch_names_the_dataset(tmp_path, small):
    data, _ = small
    path = tmp_path / "edited.h5"
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:  # an in-place edit of one weight
        f["model/conv1/weight"][0, 0, 0, 0] += 1.0
    problem = problem_of(path)
    assert "checksum mismatch in dataset /model/conv1/weight" in problem
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f["optimizer/state/cycle"][()] = 1
    assert "checksum mismatch in dataset /optimizer/state/cycle" in problem_of(path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:  # attributes are covered too (through the manifest)
        f["history/eval"].attrs["rows"] = 2
    assert "attributes of /history/eval differ" in problem_of(path)


def test_missing_dataset(tmp_path, small):
    data, _ = small
    path = tmp_path / "cut.h5"
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        del f["model/bn1/running_mean"]
    assert "missing dataset /model/bn1/running_mean" in problem_of(path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f["model/extra"] = np.zeros(2)
    assert "unexpected object /model/extra" in problem_of(path)


def test_error_is_one_picklable_type(tmp_path):
    err = CheckpointError(tmp_path / "x.h5", "bad\nthing")
    assert str(err) == f"{tmp_path / 'x.h5'}: bad thing"
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.path == err.path


def _outcome(data, ref, check_header=True):
    """'error' or 'same' for damaged bytes; anything else (a changed value, another exception) fails."""
    try:
        ck = load_bytes(data, "damaged.h5", check_header=check_header)
    except CheckpointError:
        return "error"
    assert_same_checkpoint(ck, ref)
    return "same"


def _truncation_sweep(small, lengths):
    data, ref = small
    counts = {"error": 0, "same": 0}
    for n in lengths:
        assert _outcome(data[:n], ref) == "error"  # a shorter file always fails the header
        counts[_outcome(data[:n], ref, check_header=False)] += 1  # the manifest alone: fails or is complete
    return counts


def test_truncation_sweep(small):
    data, _ = small
    n = len(data)
    lengths = sorted(set(np.linspace(0, n - 1, 300).astype(int).tolist()) | set(range(n - 40, n)) | {511, 512, 513})
    counts = _truncation_sweep(small, lengths)
    assert counts["error"] >= len(lengths) - 40  # (the manifest alone cannot see cuts in trailing free space)


@pytest.mark.slow
def test_truncation_sweep_every_length(small):
    data, _ = small
    counts = _truncation_sweep(small, range(0, len(data), 7))
    print(f"\n{len(range(0, len(data), 7))} truncations of {len(data)} bytes: {counts}")


def _flip_sweep(small, count, seed):
    data, ref = small
    rng = np.random.default_rng(seed)
    outcomes = {(True, "error"): 0, (True, "same"): 0, (False, "error"): 0, (False, "same"): 0}
    for bit in rng.integers(0, len(data) * 8, count):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        for header in (True, False):
            outcomes[header, _outcome(bytes(damaged), ref, check_header=header)] += 1
    return outcomes


def test_bit_flip_sweep(small):
    outcomes = _flip_sweep(small, 1000, seed=0)
    # with the header every flip is caught; without it, flips in unused bytes may load, identically
    assert outcomes[True, "same"] == 0 and outcomes[True, "error"] == 1000
    assert outcomes[False, "error"] > 850


@pytest.mark.slow
def test_bit_flip_sweep_long(small):
    outcomes = _flip_sweep(small, 10000, seed=1)
    print(f"\n10000 single-bit flips: {outcomes}")
    assert outcomes[True, "same"] == 0


def test_no_variable_length_data(small, tmp_path):
    """Variable-length strings live in HDF5's global heap, which has no checksum: libhdf5 can hang on a
    damaged one (the bit-flip sweep found it).  All text is fixed-length."""
    path = tmp_path / "s.h5"
    path.write_bytes(small[0])
    with h5py.File(path, "r") as f:
        objects = [f]
        f.visititems(lambda name, obj: objects.append(obj))
        for obj in objects:
            types = [obj.attrs.get_id(k).dtype for k in obj.attrs]
            types += [obj.dtype] if isinstance(obj, h5py.Dataset) else []
            for dt in types:
                info = h5py.check_string_dtype(dt)
                assert dt != np.dtype(object) and (info is None or info.length is not None), (obj.name, dt)


# ---- attributes added after saving (issue 16): load(..., verify="data") --------------------------
_ANNOTATE = """import sys, h5py
with h5py.File(sys.argv[1], "a") as f:  # what a user types: h5py writes a str as a variable-length string
    f.attrs["note"] = "my run"
    f["model/conv1/weight"].attrs["units"] = "none"
"""


def _annotated(tmp_path, small):
    """The small checkpoint, with two attributes added by h5py in another process (the user's steps)."""
    path = tmp_path / "run.h5"
    path.write_bytes(small[0])
    subprocess.run([sys.executable, "-c", _ANNOTATE, str(path)], check=True, timeout=60)
    return path


def _problem_with(path, **kwargs):
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, **kwargs)
    return info.value.problem


def test_an_attribute_added_with_h5py_loads_with_verify_data_and_the_strict_error_says_so(tmp_path, small):
    path = _annotated(tmp_path, small)
    problem = _problem_with(path)  # the default stays strict: the file is not byte for byte as saved
    assert "attribute 'note' of / (and 1 more) was not written by minirso" in problem
    assert 'verify="data"' in problem and "--data-only" in problem
    with pytest.raises(CheckpointError, match="attribute 'note'"):
        checkpoint.verify(path)
    ck = checkpoint.load(path, verify="data")
    assert_same_checkpoint(ck, small[1])  # the values saved, bit for bit; the user's note is not in ck.attrs
    (tmp_path / "saved.h5").write_bytes(small[0])
    info, saved = checkpoint.verify(path, verify="data"), checkpoint.verify(tmp_path / "saved.h5")
    assert (info["datasets"], info["groups"]) == (saved["datasets"], saved["groups"])
    cli = [sys.executable, "-m", "minirso", "inspect", str(path)]
    strict = subprocess.run(cli + ["--verify"], capture_output=True, text=True, timeout=120)
    assert strict.returncode == 1 and "--data-only" in strict.stderr
    ok = subprocess.run(cli + ["--verify", "--data-only"], capture_output=True, text=True, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, f"OK {path}\n"), ok.stderr
    with pytest.raises(ValueError, match="'all'.*'data'"):
        checkpoint.load(path, verify="none")


def test_damage_to_what_minirso_wrote_is_detected_in_every_mode(tmp_path, small):
    edits = [  # (h5py edit of an annotated file, the problem it must raise)
        (
            lambda f: f["model/conv1/weight"].__setitem__((0, 0, 0, 0), 2.0),
            "checksum mismatch in dataset /model/conv1/weight",
        ),
        (
            lambda f: f["history/eval"].attrs.__setitem__("rows", 2),
            "attributes of /history/eval differ from the manifest (attribute 'rows' changed)",
        ),
        (lambda f: f.attrs.__setitem__("created", "2020-01-01T00:00:00+00:00"), "(attribute 'created' changed)"),
        (lambda f: f["model/bn1"].attrs.__delitem__("type"), "(attribute 'type' is missing)"),
        (lambda f: f.__setitem__("model/extra", np.zeros(2)), "unexpected object /model/extra"),
    ]
    for edit, expected in edits:
        path = _annotated(tmp_path, small)
        with h5py.File(path, "r+") as f:
            edit(f)
        for level in ("all", "data"):
            assert expected in _problem_with(path, verify=level), (expected, level)


def test_bit_flips_in_an_annotated_file_never_load_a_changed_value_with_verify_data(tmp_path, small):
    data = _annotated(tmp_path, small).read_bytes()
    rng = np.random.default_rng(2)
    counts = {"error": 0, "same": 0}
    for bit in rng.integers(512 * 8, len(data) * 8, 300):  # past the header (whose damage always fails)
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            ck = load_bytes(bytes(damaged), "damaged.h5", verify="data")
        except CheckpointError:
            counts["error"] += 1
            continue
        assert_same_checkpoint(ck, small[1])
        counts["same"] += 1
    assert counts["error"] > 200, counts  # most bytes are minirso's; flips in unused bytes or the note may load


def test_the_header_holds_the_size_and_the_sha256_of_the_rest(small):
    """What docs/checkpoint-format.md tells a user to check by hand: ``tail -c +513 run.h5 | sha256sum``."""
    data = small[0]
    lines = data[:512].rstrip(b"\0").decode("ascii").splitlines()
    sha256 = hashlib.sha256(data[512:]).hexdigest()
    assert lines[:3] == ["minirso-checkpoint 1", f"size {len(data)}", f"sha256 {sha256}"]
