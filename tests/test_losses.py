"""Tests for minirso.losses: cross_entropy, mse, one_hot, accuracy.

Oracles: PyTorch (float32 and float64), and hand-computed values.  Inputs are made
on the active backend (``xp`` fixture) so the file also runs under MINIRSO_BACKEND=cupy.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minirso
from minirso.losses import accuracy, cross_entropy, mse, one_hot


def _np(a):
    return minirso.to_numpy(a)


def _logits_labels(rng, n=7, c=5, scale=3.0):
    logits = (scale * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, size=n).astype(np.int64)
    return logits, labels


# ---- cross_entropy ------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch(xp, rng, reduction):
    logits, labels = _logits_labels(rng)
    got = cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction=reduction)
    want = TF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction=reduction).item()
    got = _np(got)
    assert got.shape == ()  # a scalar array
    assert got.dtype == np.float32  # the default precision
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


def test_cross_entropy_sum_is_n_times_mean(xp, rng):
    logits, labels = _logits_labels(rng, n=11)
    # torch oracle for both, then the relation between them (RSO's summed loss = N * mean)
    want_sum = TF.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(labels), reduction="sum").item()
    got_sum = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction="sum", dtype=np.float64)))
    got_mean = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction="mean", dtype=np.float64)))
    assert got_sum == pytest.approx(want_sum, rel=1e-12)
    assert got_mean == pytest.approx(want_sum / 11, rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_float64_matches_float64_torch(xp, rng, reduction):
    # float64 logits that float32 cannot represent: a float32 computation would be off by ~1e-7
    n, c = 200, 10
    logits = 4.0 * rng.standard_normal((n, c))  # float64
    labels = rng.integers(0, c, size=n)
    want = TF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction=reduction).item()
    got = _np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction=reduction, dtype=np.float64))
    assert got.dtype == np.float64
    assert float(got) == pytest.approx(want, rel=1e-12, abs=1e-12)
    # and the default float32 mode is measurably less precise on the same data (so the above can fail)
    got32 = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction=reduction)))
    assert got32 == pytest.approx(want, rel=1e-5)
    assert abs(got32 - want) > 1e-12 * abs(want)


def test_cross_entropy_float64_from_float32_logits(xp, rng):
    # float32 inputs (the authors' activations) promoted to float64 for the loss, as in their code
    logits, labels = _logits_labels(rng, n=300, c=10)
    want = TF.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(labels), reduction="sum").item()
    got = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction="sum", dtype=np.float64)))
    assert got == pytest.approx(want, rel=1e-12)


def test_cross_entropy_hand_example(xp):
    # softmax([0, ln 3]) = [1/4, 3/4]  ->  -log(3/4) for label 1, -log(1/4) for label 0
    logits = xp.asarray(np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], dtype=np.float32))
    one = float(_np(cross_entropy(logits[:1], xp.asarray(np.array([1])))))
    assert one == pytest.approx(-math.log(3 / 4), rel=1e-6)
    both = float(_np(cross_entropy(logits, xp.asarray(np.array([1, 0])), reduction="sum")))
    assert both == pytest.approx(-math.log(3 / 4) - math.log(1 / 4), rel=1e-6)
    mean = float(_np(cross_entropy(logits, xp.asarray(np.array([1, 0])), reduction="mean")))
    assert mean == pytest.approx((-math.log(3 / 4) - math.log(1 / 4)) / 2, rel=1e-6)


def test_cross_entropy_uniform_logits_is_log_c(xp):
    c = 7
    logits = xp.asarray(np.full((3, c), 2.5, dtype=np.float32))
    got = float(_np(cross_entropy(logits, xp.asarray(np.array([0, 3, 6])))))
    assert got == pytest.approx(math.log(c), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_huge_logits(xp, dtype):
    # row 0: label has the largest logit by 1e4 -> loss log(1 + e^-1e4 + e^-2e4) = 0 (to double precision)
    # row 1: label 2 is 5 below the max -> loss = 5 + log(1 + e^-5 + e^-1e4) = 5 + log1p(e^-5)
    # row 2: label 0 is 2e4 below the max -> loss = 2e4 + log(1 + e^-2e4 + ...) = 2e4
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 5.0], [-1e4, 1e4, 0.0]], dtype=np.float32)
    labels = np.array([0, 2, 0])
    per_row = [0.0, 5.0 + math.log1p(math.exp(-5.0)), 2e4]
    for i in range(3):
        got = float(_np(cross_entropy(xp.asarray(logits[i : i + 1]), xp.asarray(labels[i : i + 1]), dtype=dtype)))
        assert math.isfinite(got)
        assert got == pytest.approx(per_row[i], rel=1e-6, abs=1e-6)
    total = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction="sum", dtype=dtype)))
    assert total == pytest.approx(sum(per_row), rel=1e-6)


def test_cross_entropy_stable_at_1e4_scale_against_torch(xp, rng):
    logits = (1e4 * rng.standard_normal((50, 10))).astype(np.float32)
    labels = rng.integers(0, 10, size=50)
    got = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction="sum", dtype=np.float64)))
    want = TF.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(labels), reduction="sum").item()
    assert math.isfinite(got)
    assert got == pytest.approx(want, rel=1e-12)
    got32 = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels), reduction="sum")))
    assert math.isfinite(got32)
    assert got32 == pytest.approx(want, rel=1e-5)


def test_cross_entropy_extreme_float32_logits_finite(xp):
    # 1e30 in float32: exp(1e30) overflows, a naive log(sum(exp)) gives inf / nan
    logits = xp.asarray(np.array([[1e30, -1e30, 0.0]], dtype=np.float32))
    assert float(_np(cross_entropy(logits, xp.asarray(np.array([0]))))) == 0.0
    got = float(_np(cross_entropy(logits, xp.asarray(np.array([2])))))
    assert math.isfinite(got) and got == pytest.approx(1e30, rel=1e-6)


def test_cross_entropy_accepts_unsigned_and_int32_labels(xp, rng):
    logits, labels = _logits_labels(rng)
    want = TF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    for dt in (np.uint8, np.int32):
        got = float(_np(cross_entropy(xp.asarray(logits), xp.asarray(labels.astype(dt)))))
        assert got == pytest.approx(want, rel=1e-5)


# ---- mse ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(xp, rng, reduction):
    pred = rng.standard_normal((6, 10)).astype(np.float32)
    target = rng.standard_normal((6, 10)).astype(np.float32)
    want = torch.nn.MSELoss(reduction=reduction)(torch.from_numpy(pred), torch.from_numpy(target)).item()
    got = float(_np(mse(xp.asarray(pred), xp.asarray(target), reduction=reduction)))
    assert got == pytest.approx(want, rel=1e-5)


def test_mse_hand_example(xp):
    # differences 1, -2, 0, 3 -> squares 1, 4, 0, 9: sum 14, mean over ALL 4 elements 3.5
    pred = xp.asarray(np.array([[1.0, 0.0], [2.0, 3.0]], dtype=np.float32))
    target = xp.asarray(np.array([[0.0, 2.0], [2.0, 0.0]], dtype=np.float32))
    assert float(_np(mse(pred, target))) == pytest.approx(3.5)
    assert float(_np(mse(pred, target, reduction="sum"))) == pytest.approx(14.0)


def test_mse_softmax_against_one_hot_like_amc_fig1(xp, rng):
    # the aMC paper's Fig. 1 loss: softmax probabilities vs one-hot targets, PyTorch MSELoss
    logits, labels = _logits_labels(rng, n=9, c=10)
    probs = torch.softmax(torch.from_numpy(logits), dim=1)
    want = TF.mse_loss(probs, TF.one_hot(torch.from_numpy(labels), 10).float()).item()
    got = float(_np(mse(xp.asarray(probs.numpy()), one_hot(xp.asarray(labels), 10))))
    assert got == pytest.approx(want, rel=1e-5)


# ---- one_hot ------------------------------------------------------------------------------------


def test_one_hot_hand_example(xp):
    got = one_hot(xp.asarray(np.array([2, 0, 3, 2])), 4)
    assert minirso.get_array_module(got) is xp
    got = _np(got)
    want = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_one_hot_dtype_and_torch(xp, rng):
    labels = rng.integers(0, 6, size=20)
    got = _np(one_hot(xp.asarray(labels), 6, dtype=np.float64))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, TF.one_hot(torch.from_numpy(labels), 6).numpy())


# ---- accuracy -----------------------------------------------------------------------------------


def test_accuracy_hand_example_with_ties(xp):
    logits = np.array(
        [
            [1.0, 2.0, 0.0],  # argmax 1, label 1: right
            [3.0, 1.0, 3.0],  # tie 0/2 -> first index 0, label 0: right
            [0.0, 0.0, 0.0],  # all tied -> 0, label 2: wrong
            [5.0, 1.0, 2.0],  # argmax 0, label 2: wrong
            [0.0, 4.0, 4.0],  # tie 1/2 -> 1, label 2: wrong
        ],
        dtype=np.float32,
    )
    labels = np.array([1, 0, 2, 2, 2])
    got = accuracy(xp.asarray(logits), xp.asarray(labels))
    assert type(got) is float
    assert got == pytest.approx(2 / 5)
    # PyTorch's argmax agrees on the tie rule
    want = (torch.from_numpy(logits).argmax(dim=1).numpy() == labels).mean()
    assert got == pytest.approx(float(want))


def test_accuracy_all_and_none(xp):
    logits = xp.asarray(np.eye(4, dtype=np.float32))
    assert accuracy(logits, xp.asarray(np.arange(4))) == 1.0
    assert accuracy(logits, xp.asarray(np.array([1, 2, 3, 0]))) == 0.0


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [cross_entropy, accuracy], ids=["cross_entropy", "accuracy"])
def test_bad_logits_shape_raises(xp, fn):
    with pytest.raises(ValueError, match=r"logits of shape \(N, classes\)"):
        fn(xp.asarray(np.zeros(5, dtype=np.float32)), xp.asarray(np.zeros(5, dtype=np.int64)))
    with pytest.raises(ValueError, match=r"logits of shape \(N, classes\)"):
        fn(xp.asarray(np.zeros((2, 3, 4), dtype=np.float32)), xp.asarray(np.zeros(2, dtype=np.int64)))


@pytest.mark.parametrize("fn", [cross_entropy, accuracy], ids=["cross_entropy", "accuracy"])
def test_bad_labels_shape_raises(xp, fn):
    logits = xp.asarray(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"integer labels of shape \(3,\)"):
        fn(logits, xp.asarray(np.zeros((3, 1), dtype=np.int64)))  # column vector
    with pytest.raises(ValueError, match=r"integer labels of shape \(3,\)"):
        fn(logits, xp.asarray(np.zeros(4, dtype=np.int64)))  # wrong length
    with pytest.raises(ValueError, match=r"integer labels of shape \(3,\)"):
        fn(logits, xp.asarray(np.zeros((3, 4), dtype=np.float32)))  # one-hot instead of indices


@pytest.mark.parametrize("fn", [cross_entropy, accuracy], ids=["cross_entropy", "accuracy"])
def test_non_integer_labels_raise(xp, fn):
    logits = xp.asarray(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="integer labels") as err:
        fn(logits, xp.asarray(np.array([0.0, 1.0, 2.0])))
    assert "float64" in str(err.value)  # names the offending dtype
    with pytest.raises(ValueError, match="integer labels"):
        fn(logits, xp.asarray(np.array([True, False, True])))


def test_labels_without_shape_raise(xp):
    with pytest.raises(ValueError, match="labels"):
        cross_entropy(xp.asarray(np.zeros((2, 3), dtype=np.float32)), [0, 1])


@pytest.mark.parametrize("bad", ["avg", "none", "MEAN", None])
def test_unknown_reduction_raises(xp, bad):
    logits = xp.asarray(np.zeros((2, 3), dtype=np.float32))
    labels = xp.asarray(np.array([0, 1]))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        cross_entropy(logits, labels, reduction=bad)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        mse(logits, logits, reduction=bad)


def test_mse_shape_mismatch_raises(xp):
    a = xp.asarray(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"differ in shape"):
        mse(a, xp.asarray(np.zeros((4, 1), dtype=np.float32)))  # would broadcast silently without the check
    with pytest.raises(ValueError, match=r"differ in shape"):
        mse(a, xp.asarray(np.zeros(3, dtype=np.float32)))


def test_out_of_range_labels_are_rejected_on_host():
    logits = np.zeros((3, 4), dtype=np.float32)
    for bad in ([0, 4, 1], [-1, 0, 1]):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
            cross_entropy(logits, np.array(bad))
        with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
            accuracy(logits, np.array(bad))


# ---- labels checked once, where they enter, on every backend -----------------------------------


def test_check_labels_names_the_bad_values(xp):
    from minirso.losses import check_labels

    check_labels(xp.asarray(np.array([0, 9, 3, 9], np.int64)), 10, "here")  # in range: silent
    with pytest.raises(
        ValueError,
        match=r"here: labels must be class indices in \[0, 10\).*2 out of range "
        r"\(values -1, 12\)",
    ):
        check_labels(xp.asarray(np.array([1, 12, -1, 4], np.int64)), 10, "here")
    with pytest.raises(ValueError, match="integer array"):
        check_labels(xp.asarray(np.array([0.0, 1.0])), 10, "here")


def _bad_label_data(xp, n=12, offset=0):
    r = np.random.default_rng(2)
    x = xp.asarray(r.standard_normal((n, 6)).astype(np.float32))
    y = r.integers(0, 4, n).astype(np.int64)
    y[5] = 4 + offset  # one label past the last class (CuPy would wrap it to another class silently)
    return x, xp.asarray(y)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "cross_entropy_mean"])
def test_model_loss_rejects_out_of_range_labels(xp, loss):
    """An out-of-range label is an error at ModelLoss(...), with MSE too (one_hot gives it an all-zero row)."""
    from minirso import models
    from minirso.optim import ModelLoss

    net = models.mlp([6, 5, 4], output="softmax", seed=1)
    x, y = _bad_label_data(xp, offset=1000)
    with pytest.raises(ValueError, match=r"ModelLoss: labels must be class indices in \[0, 4\).*1004"):
        ModelLoss(net, x, y, loss)
    ModelLoss(net, x, y % 4, loss)  # the same data in range: accepted


def test_optimizers_reject_out_of_range_labels(xp):
    """RSO and ChainsLoss check their labels once, at construction, against the model's outputs."""
    from minirso import models
    from minirso.optim import RSO, ChainsLoss

    net = models.mlp([6, 5, 4], seed=1)
    x, y = _bad_label_data(xp)
    with pytest.raises(ValueError, match=r"RSO: labels must be class indices in \[0, 4\)"):
        RSO(net, x, y, cycles=1, batch_size=4)
    with pytest.raises(ValueError, match=r"ChainsLoss: labels must be class indices in \[0, 4\)"):
        ChainsLoss(net, x, y, "mse")
    with pytest.raises(ValueError, match=r"RSO: labels .*12 out of range \(values -7, -5, -4, -3\)"):
        RSO(net, x, y - 7, cycles=1, batch_size=4)


def test_dataset_rejects_out_of_range_labels():
    from minirso.data import Dataset

    x = np.zeros((3, 1, 2, 2), np.float32)
    Dataset(x, np.array([0, 1, 2]), x, np.array([2, 1, 0]), name="t", source="test", classes=("a", "b", "c"))
    with pytest.raises(ValueError, match=r"Dataset 't' y_test: labels must be class indices in \[0, 3\).*values 3"):
        Dataset(x, np.array([0, 1, 2]), x, np.array([3, 1, 0]), name="t", source="test", classes=("a", "b", "c"))
