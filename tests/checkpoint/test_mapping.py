"""minirso.checkpoint.mapping: the model, the optimizer's state, the history and meta round-trip bit for bit,
the file's layout is what plain h5py reads (docs/checkpoint-format.md), and a loaded model is ready for inference."""

import json
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from minirso import checkpoint, models
from minirso.optim import AMC, RSO, ModelLoss

from .helpers import HISTORY, assert_same_model, host, images, perturb, problem_of, same, saved


# ---- round trips ----------------------------------------------------------------------------------
def test_round_trip_rso_mnist_with_amc_state_and_exact_resume(tmp_path, rng):
    model = models.rso_mnist(seed=3)
    perturb(model, rng)
    x, y = images(rng, 16)
    model.reestimate_batchnorm(x)  # running statistics from data, not the defaults
    opt = AMC(model.params, ModelLoss(model, x, y), sigma0=1e-2, epsilon=1e-2, n_s=3, seed=7)
    opt.run(4)
    path = tmp_path / "run.h5"
    checkpoint.save(path, model, opt, HISTORY, meta={"config": {"lr": 0.1, "tag": "t"}, "cycle": 2})

    ck = checkpoint.load(path)
    assert isinstance(ck, checkpoint.Checkpoint) and ck.path == str(path)
    assert_same_model(ck.model, model)
    assert ck.model.seed == 3
    assert same(ck.optimizer, opt.state_dict())
    assert same(ck.history, HISTORY)
    assert ck.meta == {"config": {"lr": 0.1, "tag": "t"}, "cycle": 2}

    assert not ck.model.training  # loaded for inference; the run trained in training mode (batch statistics)
    ck.model.train()
    fresh = AMC(ck.model.params, ModelLoss(ck.model, x, y), sigma0=1e-2, epsilon=1e-2, n_s=3, seed=7)
    fresh.load_state_dict(ck.optimizer)
    assert same(fresh.state_dict(), opt.state_dict())
    opt.run(3)
    fresh.run(3)  # the resumed run continues on the same trajectory, bit for bit
    assert same(host(ck.model.params), host(model.params))


def test_round_trip_rso_state_and_exact_resume(tmp_path, rng):
    model = models.rso_mnist(channels=2, seed=1)
    x, y = images(rng, 16)
    opt = RSO(model, x, y, cycles=2, batch_size=8, seed=5)
    for _ in range(25):  # past the end of the first tensor (fc, 20 weights): records is not empty
        opt.step()
    assert opt.records
    path = tmp_path / "rso.h5"
    checkpoint.save(path, model, opt, {"eval": [{"cycle": 0, "test_accuracy": 0.1}]})

    ck = checkpoint.load(path)
    assert_same_model(ck.model, model)
    assert same(ck.optimizer, opt.state_dict())
    fresh = RSO(ck.model, x, y, cycles=2, batch_size=8, seed=5)
    fresh.load_state_dict(ck.optimizer)
    assert same(fresh.state_dict(), opt.state_dict())
    for _ in range(6):
        opt.step()
        fresh.step()
    assert same(host(ck.model.params), host(model.params))
    assert "records" not in ck.optimizer["state"] and fresh.records == [] and len(opt.records) == 1  # a log, not state


def test_a_state_dict_saves_like_its_optimizer(tmp_path, rng):
    model = models.mlp([4, 3, 2], seed=2)
    opt = AMC(model.params, lambda p: float((p**2).sum()), sigma0=0.1, seed=1)
    opt.run(3)
    checkpoint.save(tmp_path / "a.h5", model, opt)
    checkpoint.save(tmp_path / "b.h5", model, opt.state_dict())
    a, b = checkpoint.load(tmp_path / "a.h5"), checkpoint.load(tmp_path / "b.h5")
    assert same(a.optimizer, b.optimizer) and same(a.optimizer, opt.state_dict())
    assert a.history is None and a.meta == {}
    none = checkpoint.load(saved(tmp_path / "c.h5", model))
    assert none.optimizer is None and none.history is None


@pytest.mark.parametrize(
    "build, nested",
    [
        (lambda: models.rso_cifar(10, seed=4), "/model/res2/conv2/weight"),
        (lambda: models.amc_rnn_classifier(seed=5), "/model/rnn1/weight_hh"),
    ],
)
def test_round_trip_residual_and_recurrent_models(tmp_path, rng, build, nested):
    model = build()
    perturb(model, rng)
    path = saved(tmp_path / "m.h5", model)
    ck = checkpoint.load(path)
    assert_same_model(ck.model, model)
    with h5py.File(path, "r") as f:  # nested layers are nested groups, tensors in their natural shapes
        name = nested[len("/model/") :].replace("/", ".")
        g = next(g for g in model.param_groups if g.name == name)
        assert f[nested].shape == g.shape
        assert np.array_equal(f[nested][()], host(model.params[g.slice]).reshape(g.shape))


# ---- the file, read without minirso ------------------------------------------------------------------
def test_plain_h5py_reads_weights_architecture_and_attributes(tmp_path, rng):
    model = models.rso_mnist(seed=3)
    perturb(model, rng)
    path = saved(tmp_path / "run.h5", model, None, HISTORY)
    with h5py.File(path, "r") as f:
        w = f["/model/conv1/weight"]
        assert w.shape == (16, 1, 3, 3) and w.dtype == np.float32
        assert np.array_equal(w[()], host(model.params[:144]).reshape(16, 1, 3, 3))
        assert np.array_equal(f["/model/bn1/running_mean"][()], host(model.buffers()["bn1.running_mean"]))
        assert json.loads(f["/model/architecture.json"][()]) == model.architecture()
        assert f["/history/eval/test_accuracy"][()].tolist() == [0.5, 0.625, 0.75]
        a = {k: v.decode() if isinstance(v, bytes) else v for k, v in f.attrs.items()}  # text is fixed-length UTF-8
        assert a["format"] == "minirso-checkpoint" and a["format_version"] == 1 and a["seed"] == 3
        for k in ("minirso_version", "numpy_version", "cupy_version", "h5py_version", "created", "backend"):
            assert isinstance(a[k], str) and a[k], k
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", a["created"])
    assert open(path, "rb").read(21) == b"minirso-checkpoint 1\n"  # the text header in the user block


def test_architecture_that_does_not_fit_the_weights(tmp_path, monkeypatch):
    model = models.rso_mnist(channels=4)
    narrower = models.rso_mnist(channels=2).architecture()
    monkeypatch.setattr(model, "architecture", lambda: narrower)  # a consistent file with a wrong architecture
    problem = problem_of(saved(tmp_path / "a.h5", model))
    assert "architecture mismatch" in problem and "/model/conv1/weight" in problem and "(2, 1, 3, 3)" in problem

    wrong_count = dict(models.rso_mnist(channels=4).architecture(), num_params=999)
    monkeypatch.setattr(model, "architecture", lambda: wrong_count)
    problem = problem_of(saved(tmp_path / "b.h5", model))
    assert "architecture mismatch" in problem and "999 parameters" in problem

    fewer = models.mlp([2, 2]).architecture()
    monkeypatch.setattr(model, "architecture", lambda: fewer)
    problem = problem_of(saved(tmp_path / "c.h5", model))
    assert "architecture mismatch" in problem


# ---- loading for inference ------------------------------------------------------------------------
_TRAIN = """
import sys, numpy as np, minirso
from minirso import models
from minirso.optim import RSO
from minirso.train import Trainer
r = np.random.default_rng(3)
x = r.normal(size=(64, 1, 8, 8)).astype(np.float32)
x[:32, :, :4] += 1.0  # two learnable classes
y = (np.arange(64) < 32).astype(np.int64)
np.savez(sys.argv[2], x=x, y=y)
model = models.rso_mnist(seed=5, channels=2, num_classes=2)
opt = RSO(model, minirso.asarray(x), minirso.asarray(y), cycles=1, batch_size=16, seed=11)
trainer = Trainer(model, opt, eval_data=(x, y), bn_data=x[:32], checkpoint=sys.argv[1], progress=False)
print(trainer.fit()["eval"][-1]["test_accuracy"])
"""

_PREDICT = """
import json, sys, numpy as np, minirso
from minirso import checkpoint
data = np.load(sys.argv[2])
x, y = minirso.asarray(data["x"]), data["y"]
model = checkpoint.load(sys.argv[1]).model
batch = minirso.to_numpy(model(x).argmax(axis=1))  # the user's steps: the whole set, then one image at a time
one = [int(model(x[i : i + 1]).argmax()) for i in range(len(y))]
p1, pn = minirso.to_numpy(model.predict(x, batch_size=1)), minirso.to_numpy(model.predict(x))
print(json.dumps({"training": model.training, "agree": float(np.mean(batch == np.array(one))),
                  "same": bool((p1 == pn).all()), "accuracy": float(np.mean(pn == y))}))
"""


def test_a_loaded_model_predicts_each_image_as_in_its_batch_and_as_the_trainer_measured(tmp_path):
    """Issue 16.5, the user's steps: train with the Trainer (one process), load the checkpoint and predict
    (another).  The loaded model is in eval mode: one image at a time agrees with the batch, and
    predict's accuracy is the one the trainer measured before saving (eval mode, re-estimated statistics)."""
    path, data = str(tmp_path / "run.h5"), str(tmp_path / "data.npz")

    def run(code):
        return subprocess.run([sys.executable, "-c", code, path, data], capture_output=True, text=True, timeout=120)

    trained = run(_TRAIN)
    assert trained.returncode == 0, trained.stderr
    measured = float(trained.stdout)
    loaded = run(_PREDICT)
    assert loaded.returncode == 0, loaded.stderr
    out = json.loads(loaded.stdout)
    assert out["training"] is False and out["agree"] == 1.0 and out["same"]
    assert out["accuracy"] == measured and measured > 0.5  # the trainer's number, and better than chance
