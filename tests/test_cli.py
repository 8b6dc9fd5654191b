"""The command line: ``minirso inspect run.h5`` (main() in-process, and ``python -m minirso`` as a user runs it)."""

import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

import minirso
from minirso import checkpoint, cli, models
from minirso.optim import AMC, RSO, ModelLoss

EVAL = [
    {"cycle": 0, "test_accuracy": 0.5, "train_accuracy": 0.55, "train_loss": 2.0, "sigma": 0.1},
    {"cycle": 1, "test_accuracy": 0.75, "train_accuracy": 0.8, "train_loss": 1.5, "sigma": 0.05},
    {"cycle": 2, "test_accuracy": 0.625, "train_accuracy": 0.85, "train_loss": 1.25, "sigma": 0.01},
]


def data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (minirso.asarray(rng.random((n, 1, 28, 28), dtype=np.float32)), minirso.asarray(rng.integers(0, 10, n)))


@pytest.fixture(scope="module")
def amc_run(tmp_path_factory):
    """The paper's MNIST net (12,016 parameters) with an aMC state and a history."""
    model = models.rso_mnist(seed=3)
    x, y = data()
    opt = AMC(model.params, ModelLoss(model, x, y), sigma0=1e-2, epsilon=1e-2, n_s=2, seed=1)
    opt.run(3)
    path = tmp_path_factory.mktemp("cli") / "run.h5"
    checkpoint.save(path, model, opt, {"eval": EVAL, "loss": [3.0, 2.5, 2.25]}, meta={"cycle": 2})
    return path


def run_main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def layer_count(text, name):
    m = re.search(rf"^\s+{name}\s+(?:\w+\s+)?(\d+)$", text, re.M)  # name, type (none for the total), count
    return int(m.group(1)) if m else None


def test_inspect_prints_versions_layers_optimizer_and_history(amc_run, capsys):
    code, out, err = run_main(["inspect", str(amc_run)], capsys)
    assert code == 0 and err == ""
    assert str(amc_run) in out and "minirso-checkpoint version 1" in out and "created" in out
    assert re.search(r"numpy \S+, cupy \S+, h5py \S+", out)
    assert layer_count(out, "conv1") == 144 and layer_count(out, "conv2") == 2304
    assert layer_count(out, "bn1") == 32 and layer_count(out, "relu1") == 0 and layer_count(out, "fc") == 160
    assert layer_count(out, "total") == 12016 and "model: 12016 parameters" in out
    assert "optimizer: AMC" in out
    assert re.search(r"^\s+step_count\s+3$", out, re.M)
    assert re.search(r"^\s+mu\s+float32 array \(12016,\), min \S+ max \S+$", out, re.M)
    assert re.search(r"^\s+eval\s+table, 3 rows, last cycle 2$", out, re.M)
    assert re.search(r"^\s+test_accuracy\s+last 0.625\s+best 0.75$", out, re.M)
    assert re.search(r"^\s+train_accuracy\s+last 0.85\s+best 0.85$", out, re.M)
    assert re.search(r"^\s+loss\s+3 values, last 2.25$", out, re.M)


def test_describe_shows_what_was_written_by_hand(tmp_path, capsys):
    """The whole text for a checkpoint whose every value is known: the expected text is written out here by
    hand, and the file's own rows (size, creation time, versions) are read from the file with plain h5py."""
    path = tmp_path / "hand.h5"
    state = {
        "type": "AMC",
        "hyperparameters": {"sigma0": 0.01, "n_s": 2, "seed": 1},
        "state": {"step_count": 3, "sigma": 0.125, "mu": np.array([-1.5, 0.0, 2.25], np.float32), "losses": [3.0, 2.5]},
    }
    history = {
        "eval": [
            {"cycle": 0, "test_accuracy": 0.5, "train_loss": 2.0},
            {"cycle": 1, "test_accuracy": 0.75, "train_loss": 1.5},
            {"cycle": 2, "test_accuracy": 0.625, "train_loss": float("nan")},
        ],
        "loss": [3.0, 2.5, 2.25],
    }
    checkpoint.save(path, models.mlp([3, 2], seed=1), state, history, meta={"cycle": 2, "note": "by hand"})
    with h5py.File(path, "r") as f:
        a = {k: v.decode() if isinstance(v, bytes) else v for k, v in f.attrs.items()}
    size = path.stat().st_size
    expected = f"""\
file       {path} ({size} bytes)
format     minirso-checkpoint version 1
created    {a["created"]}
versions   minirso {a["minirso_version"]}, numpy {a["numpy_version"]}, cupy {a["cupy_version"]}, \
h5py {a["h5py_version"]} (HDF5 {a["hdf5_version"]}), Python {a["python_version"]}
backend    {a["backend"]} (model seed 1)

model: 8 parameters
  layer                    type             parameters
  fc1                      Dense                     8
  total                                              8

optimizer: AMC
  hyperparameters:
    sigma0                 0.01
    n_s                    2
    seed                   1
  state:
    step_count             3
    sigma                  0.125
    mu                     float32 array (3,), min -1.5 max 2.25
    losses                 2 values, last 2.5

history:
  eval                   table, 3 rows, last cycle 2
      test_accuracy          last 0.625  best 0.75
  loss                   3 values, last 2.25

meta:
  cycle                  2
  note                   'by hand'"""
    assert cli.describe(checkpoint.load(path)) == expected
    assert run_main(["inspect", str(path)], capsys) == (0, expected + "\n", "")


def test_inspect_rso_state_and_residual_layers(tmp_path, capsys):
    model = models.rso_mnist(channels=2)
    x, y = data()
    opt = RSO(model, x, y, cycles=1, batch_size=4)
    for _ in range(23):
        opt.step()
    checkpoint.save(tmp_path / "rso.h5", model, opt)
    code, out, _ = run_main(["inspect", str(tmp_path / "rso.h5")], capsys)
    assert code == 0 and "optimizer: RSO" in out
    for key, value in (("cycle", r"0  \(cycles completed\)"), ("unit", 1), ("pos", 3), ("trial", 23)):
        assert re.search(rf"^\s+{key}\s+{value}$", out, re.M), key
    assert re.search(r"^\s+accepted\s+\d+$", out, re.M) and not re.search(r"^\s+records\b", out, re.M)
    assert "history: none" in out

    resnet = models.rso_cifar(10)
    checkpoint.save(tmp_path / "res.h5", resnet)
    code, out, _ = run_main(["inspect", str(tmp_path / "res.h5")], capsys)
    assert code == 0 and "optimizer: none" in out
    block = sum(g.size for g in resnet.param_groups if g.name.startswith("res2."))
    assert re.search(rf"^\s+res2\s+Residual\s+{block}$", out, re.M)  # a block counts its sub-layers
    assert re.search(r"^\s{4}conv2\s+Conv2d\s+2304$", out, re.M)  # which are indented under it
    assert layer_count(out, "total") == 57104


def test_python_dash_m_minirso(amc_run):
    done = subprocess.run([sys.executable, "-m", "minirso", "inspect", str(amc_run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert layer_count(done.stdout, "conv2") == 2304 and layer_count(done.stdout, "total") == 12016
    assert "optimizer: AMC" in done.stdout


def test_verify_exit_codes(amc_run, tmp_path, capsys):
    assert run_main(["inspect", str(amc_run), "--verify"], capsys) == (0, f"OK {amc_run}\n", "")
    damaged = tmp_path / "damaged.h5"
    data_ = bytearray(amc_run.read_bytes())
    data_[len(data_) // 2] ^= 0x10
    damaged.write_bytes(bytes(data_))
    code, out, err = run_main(["inspect", str(damaged), "--verify"], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1 and str(damaged) in err


def _bad_file(tmp_path, amc_run, content):
    path = tmp_path / "bad.h5"
    if content == "truncate":
        path.write_bytes(amc_run.read_bytes()[:5000])
    elif content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("content", [None, b"", b"\x89HDF\r\n\x1a\n junk", "truncate"])
def test_unusable_file_is_one_line_on_stderr(amc_run, tmp_path, capsys, content):
    path = _bad_file(tmp_path, amc_run, content)
    for extra in ([], ["--verify"]):
        code, out, err = run_main(["inspect", str(path)] + extra, capsys)
        assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith(f"{path}: ")


@pytest.mark.parametrize("content", [None, "truncate"])
def test_unusable_file_from_the_shell(amc_run, tmp_path, content):
    path = _bad_file(tmp_path, amc_run, content)
    for extra in ([], ["--verify"]):
        done = subprocess.run(
            [sys.executable, "-m", "minirso", "inspect", str(path)] + extra, capture_output=True, text=True
        )
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"{path}: ") and "Traceback" not in done.stderr


def test_usage_errors(capsys):
    assert run_main([], capsys)[0] == 2
    assert run_main(["inspect"], capsys)[0] == 2
    assert run_main(["inspect", "x.h5", "--verify", "--plot", "p.png"], capsys)[0] == 2
    assert run_main(["--help"], capsys)[0] == 0


def test_plot(amc_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    code, out, err = run_main(["inspect", str(amc_run), "--plot", str(png)], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in out


def test_plot_without_matplotlib(amc_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = run_main(["inspect", str(amc_run), "--plot", str(tmp_path / "c.png")], capsys)
    assert code == 2 and err.count("\n") == 1 and "matplotlib" in err and cli.PLOT_INSTALL_HINT in err
    assert not (tmp_path / "c.png").exists()


def test_plot_without_an_eval_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    checkpoint.save(tmp_path / "h.h5", models.mlp([2, 2]), None, {"loss": [1.0, 0.5]})
    code, _, err = run_main(["inspect", str(tmp_path / "h.h5"), "--plot", str(tmp_path / "c.png")], capsys)
    assert code == 1 and "no table" in err


def test_inspect_into_a_closed_pipe_stops_quietly(amc_run):
    """``minirso inspect run.h5 | head`` as a user types it: no BrokenPipeError traceback when the reader leaves.
    The reader here (``true``) has left before Python starts writing, so every run meets the closed pipe."""
    done = subprocess.run(
        f"{sys.executable} -m minirso inspect {amc_run} | true", shell=True, capture_output=True, text=True
    )
    assert done.stderr == "", done.stderr
