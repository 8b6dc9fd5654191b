"""The README's promises, checked as a user would meet them.

* Every ```python block of README.md runs as written, each in its own fresh
  interpreter (a subprocess with ``sys.executable``) from an empty temporary
  folder, the way a reader pastes it into a file and runs it: it must exit 0.
  The blocks are sized for a reader (minutes of training on a CPU); the test
  shrinks them with the exact string replacements in :data:`SUBSTITUTIONS`, each
  with the reason, and fails if one of them no longer matches the README, so a
  README edit cannot leave a block untested.  :data:`CHECKS` appends a few
  assertions to some blocks about what their comments promise (shapes,
  counts, files written).  The data directory is pinned to an empty folder
  (``MINIRSO_DATA``), so the blocks use the bundled MNIST split on every
  machine, as on a fresh clone.
* Bash blocks (```bash: the install and pytest commands) and untagged blocks
  (lists of files) are NOT run: installing is the CI's set-up step (``.ci/run``)
  and the suite is what runs this file.  The examples listed in the README must
  exist and take ``--smoke`` and ``--json`` (``tests/test_examples.py`` runs
  most of them; ``rso_digits.py`` and ``tour.py`` run here).
* ``minirso --version``, the LICENSE the pyproject names, ``import minirso``
  reaching ``minirso.train`` / ``minirso.checkpoint`` / ``minirso.cli``, and the
  one piece of install advice for ``--plot``.

About 15 s on 2 CPU cores with NumPy.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIMEOUT_S = 180  # per subprocess: the shrunk blocks take seconds; this only stops a hang

# (exact README text, replacement, why).  Applied to the whole README once each; every one must match exactly once.
SUBSTITUTIONS = [
    # "Training a model": 7 cycles of 3,128 weights at batch 256 take ~6.5 min.  Two channels (about 250 weights),
    # one cycle at batch 32 on 500 digits run the same code path (data, trainer, evaluations, checkpoints) in seconds.
    (
        "model = models.rso_mnist(seed=420, channels=8)   # the CPU preset",
        "model = models.rso_mnist(seed=420, channels=2)   # the CPU preset",
    ),
    ("opt = RSO(model, x, y, cycles=7, batch_size=256,", "opt = RSO(model, x[:500], y[:500], cycles=1, batch_size=32,"),
    # "Training without gradients": 500 digits instead of 8,000 (RSO caches every training image's layer inputs,
    # aMC and the chains run a forward pass over all of them per step) ...
    (
        "x_train, y_train = minirso.asarray(ds.x_train), minirso.asarray(ds.y_train)",
        "x_train, y_train = minirso.asarray(ds.x_train[:500]), minirso.asarray(ds.y_train[:500])",
    ),
    # ... the RSO cycle (~1 min) on a 2-channel net at batch 32 ...
    (
        "model = models.rso_mnist(seed=420, channels=8)   # 3,128 parameters",
        "model = models.rso_mnist(seed=420, channels=2)   # 3,128 parameters",
    ),
    (
        'cycles=7, batch_size=256, evaluator="incremental", seed=72, callback=show)',
        'cycles=7, batch_size=32, evaluator="incremental", seed=72, callback=show)',
    ),
    # ... and 100 aMC steps instead of 2,000 (~15 s), 5 chain steps instead of 100 (~11 s).  The printing callback
    # stays: step 0 prints.
    ("opt.run(2_000, callback=", "opt.run(100, callback="),
    ("chains.run(100)", "chains.run(5)"),
]

# (text that identifies the block, code appended to it): what the block's comments promise.
CHECKS = [
    (
        "trainer.fit()",
        """
import os
assert history is trainer.history and 0 <= history["eval"][-1]["test_accuracy"] <= 1
assert os.path.isfile("runs/mnist.h5"), "the trainer left no checkpoint at runs/mnist.h5"
""",
    ),
    (
        "print(model.summary())",
        """
assert model.params.shape == (12016,) and str(model.params.dtype) == "float32" and model.num_params == 12016
assert model.param_groups[0].slice == slice(0, 144) and model.param_groups[0].shape == (16, 1, 3, 3)
assert logits.shape == (8, 10) and lam.shape == model.params.shape
""",
    ),
    (
        "chains = AMCChains(",
        """
assert net.num_params == 13002 and x_flat.shape == (500, 784)
assert opt.step_count == 100 and math.isfinite(opt.loss)
assert chains.loss.shape == (32,) and chains.step_count == 5
""",
    ),
]


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def python_blocks(text: str) -> list:
    """The bodies of the ```python fenced blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```\s*$", text, flags=re.S | re.M)


def shrunk_blocks() -> list:
    text = readme_text()
    for old, new in SUBSTITUTIONS:
        n = text.count(old)
        assert n == 1, (
            f"README.md: the test's substitution {old!r} matches {n} times (needs exactly 1): the README "
            f"changed under tests/test_readme.py; update SUBSTITUTIONS there"
        )
        text = text.replace(old, new)
    blocks = python_blocks(text)
    for marker, _ in CHECKS:
        n = sum(marker in b for b in blocks)
        assert n == 1, f"README.md: {n} python blocks contain {marker!r} (tests/test_readme.py CHECKS needs 1)"
    return [b + "".join(code for marker, code in CHECKS if marker in b) for b in blocks]


def child_env(tmp_path) -> dict:
    """The environment of a user's shell, with the data directory pinned to an empty folder.

    PYTHONPATH entries are made absolute (the CuPy stand-in lane passes ``tests/standin``, relative to the
    repository) because the blocks run from a temporary folder; the repository itself is appended so
    ``import minirso`` is this checkout even where it is not installed.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", MINIRSO_DATA=str(tmp_path / "no-data"))
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths + [str(ROOT)])
    return env


def run_python(args, tmp_path, cwd):
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_readme_has_the_python_blocks_this_file_knows():
    blocks = python_blocks(readme_text())
    assert len(blocks) == 3, f"README.md has {len(blocks)} python blocks; tests/test_readme.py expects 3"
    assert len(shrunk_blocks()) == len(blocks)  # every substitution and check matched


def test_the_unshrunk_sizes_the_readme_states():
    """What the substitutions change is stated in the README: check those statements here instead."""
    from minirso import models

    assert "channels=8)   # 3,128 parameters" in readme_text()
    assert models.rso_mnist(seed=420, channels=8).num_params == 3128


@pytest.mark.parametrize("index", range(3))
def test_readme_python_block_runs(index, tmp_path):
    block = shrunk_blocks()[index]
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text("import math\n" + block, encoding="utf-8")  # math: for CHECKS only
    work = tmp_path / "work"
    work.mkdir()
    proc = run_python([script], tmp_path, cwd=work)
    assert proc.returncode == 0, (
        f"README python block {index} (shrunk) exited {proc.returncode}\n--- code\n{block}"
        f"\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    )


# ---- the examples list ------------------------------------------------------------------------------


def listed_examples() -> list:
    return sorted(set(re.findall(r"^(examples/\w+\.py) ", readme_text(), flags=re.M)))


def test_every_listed_example_exists_and_takes_smoke_and_json():
    names = listed_examples()
    assert len(names) >= 9, names
    on_disk = sorted(f"examples/{p.name}" for p in (ROOT / "examples").glob("*.py"))
    assert names == on_disk, f"README lists {names}, examples/ has {on_disk}"
    for name in names:
        source = (ROOT / name).read_text(encoding="utf-8")
        for flag in ('"--smoke"', '"--json"'):
            promised = f"{name} has no {flag} option (the README promises it)"
            assert re.search(rf"add_argument\(\s*{flag}", source), promised


def run_example(name, tmp_path):
    out = tmp_path / "out" / f"{name}.json"
    proc = run_python([ROOT / "examples" / f"{name}.py", "--smoke", "--json", out], tmp_path, cwd=ROOT)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())
    assert result["example"] == name and result["smoke"] is True and result["backend"] in ("numpy", "cupy")
    assert math.isfinite(result["wall_time"]) and result["wall_time"] > 0
    return result


def test_rso_digits_smoke_json(tmp_path):
    r = run_example("rso_digits", tmp_path)
    # the small net: 49*16 + 16 + 16*10 + 10 weights, one cycle visits each once
    assert (r["net"], r["num_params"], r["cycles"], r["trials"]) == ("small", 970, 1, 970)
    assert (r["train_samples"], r["test_samples"], r["batch_size"]) == (1000, 500, 64)
    assert 0 <= r["test_accuracy_before"] <= 1 and 0 <= r["test_accuracy"] <= 1
    assert r["test_accuracy"] > r["test_accuracy_before"] + 0.05  # one cycle learns something (0.12 -> ~0.3)


def test_tour_smoke_json(tmp_path):
    r = run_example("tour", tmp_path)
    assert (r["num_params"], r["batch_size"]) == (12016, 16)
    assert r["loss_before"] != r["loss_after"]  # the write into the flat buffer reached the output
    assert r["max_cached_forward_diff"] < 1e-4  # a forward from a cached layer input is the full forward
    assert r["lambda_mean"]["bn1.beta"] == 1.0 and r["lambda_mean"]["conv1.weight"] > 0


# ---- version, licence, package ----------------------------------------------------------------------


def pyproject_project() -> dict:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10: the two fields this file reads
        version = re.search(r'^version = "([^"]+)"', text, flags=re.M).group(1)
        licence = re.search(r'^license = \{ text = "([^"]+)" \}', text, flags=re.M).group(1)
        return {"version": version, "license": {"text": licence}}
    return tomllib.loads(text)["project"]


def test_version_command(tmp_path):
    """``minirso --version`` (the console script when installed, and ``python -m minirso``) prints the version."""
    expected = f"minirso {pyproject_project()['version']}"
    commands = [[sys.executable, "-m", "minirso", "--version"]]
    script = pathlib.Path(sys.executable).parent / "minirso"
    if script.is_file():  # the console script pip installed next to this interpreter
        commands.append([str(script), "--version"])
    for cmd in commands:
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == expected, (cmd, proc.stdout, proc.stderr)
    import minirso

    assert minirso.__version__ == pyproject_project()["version"]


def test_license_file_matches_pyproject():
    licence = pyproject_project()["license"]["text"]
    path = ROOT / "LICENSE"
    assert path.is_file(), "pyproject.toml names a licence but there is no LICENSE file"
    text = path.read_text(encoding="utf-8")
    assert licence == "MIT" and text.startswith("MIT License\n"), (licence, text[:40])
    assert "Copyright (c) 2026 minirso developers" in text and "WITHOUT WARRANTY OF ANY KIND" in text


def test_import_minirso_reaches_train_checkpoint_and_cli(tmp_path):
    """What a user types: ``import minirso`` and then the submodules as attributes (no ``import minirso.x``).
    They load on first use, so ``import minirso`` alone does not import h5py or tqdm."""
    code = (
        "import sys, minirso\n"
        "assert 'h5py' not in sys.modules and 'tqdm' not in sys.modules, 'import minirso loaded h5py / tqdm'\n"
        "assert {'train', 'checkpoint', 'cli'} <= set(dir(minirso))\n"
        "print(minirso.train.Trainer.__name__, minirso.checkpoint.CheckpointError.__name__,\n"
        "      minirso.cli.main.__name__, issubclass(minirso.checkpoint.CheckpointError, Exception))\n"
        "try:\n"
        "    minirso.no_such_thing\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    proc = run_python(["-c", code], tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "Trainer CheckpointError main True",
        "module 'minirso' has no attribute 'no_such_thing'",
    ]


def test_plot_install_advice_is_one_and_the_same():
    """``minirso inspect --plot`` without matplotlib prints :data:`minirso.cli.PLOT_INSTALL_HINT`; the README gives
    the same advice, and no other install command for the plot extra."""
    from minirso.cli import PLOT_INSTALL_HINT

    flat = " ".join(readme_text().split())
    assert PLOT_INSTALL_HINT in flat
    assert "minirso[plot]" not in flat and flat.count("[plot]") == 1
