"""RNN forward of the aMC RNN experiment: minirso's model vs a loop of one matrix product per time step.

Net: ``models.amc_rnn_classifier()`` (2-layer tanh RNN, hidden 64, input 2 = a one-hot pixel, a
dense layer on the last hidden state).  Input: a batch of binarised pixel sequences (random pixels:
the speed does not depend on them).  Implementations, all on the same weights:

* minirso: ``model(x)`` on the active backend;
* loop (NumPy / CuPy, and torch): ``h = tanh([x_t, h] W_cat^T + b)`` per step and layer (one product);
* ``torch.nn.RNN`` (cuDNN's fused RNN on a GPU, ATen's on a CPU).

Issue 5 goal: minirso at least 5x faster than the per-step loop.  The loop's logits are checked
against minirso's.
"""

from __future__ import annotations

import numpy
import roofline
from common import median_time, row
from torch_ref import rnn_loop, rnn_weights, torch_rnn, torch_rnn_forward

from minirso import models, to_numpy
from minirso.backend import get_array_module


def sequences(n: int, t_len: int, seed: int = 0):
    """(n, t_len, 2) float32: each step one-hot encodes a random binary pixel."""
    rng = numpy.random.default_rng(seed)
    p = rng.random((n, t_len)) < 0.2
    return numpy.stack([~p, p], axis=-1).astype(numpy.float32)


def xp_loop(x, cells, fc):
    """The per-step loop on NumPy / CuPy arrays: the same code as :func:`torch_ref.rnn_loop`."""
    xp = get_array_module(x)
    seq = x
    for li, (wt, b) in enumerate(cells):
        n, t_len, _ = seq.shape
        h = xp.zeros((n, wt.shape[1]), dtype=x.dtype)
        last = li == len(cells) - 1
        out = None if last else xp.empty((n, t_len, wt.shape[1]), dtype=x.dtype)
        for t in range(t_len):
            h = xp.tanh(xp.concatenate([seq[:, t], h], axis=1) @ wt + b)
            if out is not None:
                out[:, t] = h
        seq = h if last else out
    return seq @ fc[0].T + fc[1]


def rnn_work(n: int, t_len: int, i: int = 2, h: int = 64, classes: int = 2) -> roofline.Work:
    """Two RNN layers (see :func:`roofline.rnn_layer_work`) and the dense layer on the last state."""
    return (
        roofline.rnn_layer_work(n, t_len, i, h)
        + roofline.rnn_layer_work(n, t_len, h, h)
        + roofline.Work(2.0 * n * h * classes, roofline.F32 * (n * h + n * classes))
    )


def run(ctx, peaks: dict, n: int | None = None, t_len: int | None = None) -> dict:
    torch = ctx.torch
    n = n or (1500 if ctx.gpu else ctx.pick(150, 1500, 1500))
    t_len = t_len or (784 if ctx.gpu else ctx.pick(196, 784, 784))
    repeats = ctx.pick(3, 5, 10)
    ctx.note(
        f"RNN: batch {n}, sequence {t_len}"
        + (" (CPU --quick preset; the experiment: 1,500 x 784)" if (n, t_len) != (1500, 784) else "")
        + f"; random binary pixels; median of {repeats} forwards"
    )
    model = models.amc_rnn_classifier()
    x_h = sequences(n, t_len)
    x, tx = ctx.xp.asarray(x_h), torch.as_tensor(x_h, device=ctx.tdev)
    cells_t, fc_t = rnn_weights(model, ctx.tdev)
    cells_x = [(ctx.xp.asarray(w.cpu().numpy()), ctx.xp.asarray(b.cpu().numpy())) for w, b in cells_t]
    fc_x = tuple(ctx.xp.asarray(a.cpu().numpy()) for a in fc_t)
    rnn, fc = torch_rnn(model, ctx.tdev)

    # same logits? Checked on the first 20 steps: the Kaiming-initialised recurrence is chaotic, so over
    # hundreds of steps float32 rounding differences grow to ~1e-2 (a float64 loop shows the same spread)
    xs, txs = x[:, :20], tx[:, :20]
    want = to_numpy(model(xs))
    for name, got in (
        ("numpy/cupy loop", to_numpy(xp_loop(xs, cells_x, fc_x))),
        ("torch loop", rnn_loop(txs, cells_t, fc_t).cpu().numpy()),
        ("torch.nn.RNN", torch_rnn_forward(rnn, fc, txs).cpu().numpy()),
    ):
        numpy.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg=f"{name} != minirso RNN")

    t = {
        "minirso": median_time(ctx, lambda: model(x), repeats),
        "xp_loop": median_time(ctx, lambda: xp_loop(x, cells_x, fc_x), repeats),
        "torch_loop": median_time(ctx, lambda: rnn_loop(tx, cells_t, fc_t), repeats),
        "torch_nn_rnn": median_time(ctx, lambda: torch_rnn_forward(rnn, fc, tx), repeats),
    }
    med = {k: v["median"] for k, v in t.items()}
    print("  rnn " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in med.items()), flush=True)
    w = rnn_work(n, t_len)
    pk = peaks["used"]
    fr = lambda s: roofline.fraction(w, s, pk)
    lib = "CuPy" if ctx.gpu else "NumPy"
    rows = [
        row(
            "RNN forward vs PyTorch per-step loop",
            "s/forward",
            plain=med["minirso"],
            torch=med["torch_loop"],
            goal=">= 5x vs a per-step loop",
            check=(">=", 5),
            work=w,
            frac_minirso=fr(med["minirso"]),
            frac_torch=fr(med["torch_loop"]),
        ),
        row(
            f"RNN forward vs {lib} per-step loop",
            "s/forward",
            plain=med["minirso"],
            torch=med["xp_loop"],
            goal=">= 5x vs a per-step loop",
            check=(">=", 5),
            cpu_check=False,
            work=w,
            frac_minirso=fr(med["minirso"]),
            frac_torch=fr(med["xp_loop"]),
            detail=f"'PyTorch' column holds the {lib} loop here",
        ),
        row(
            "RNN forward vs torch.nn.RNN",
            "s/forward",
            plain=med["minirso"],
            torch=med["torch_nn_rnn"],
            work=w,
            cpu_check=False,
            frac_minirso=fr(med["minirso"]),
            frac_torch=fr(med["torch_nn_rnn"]),
            detail="cuDNN RNN on a GPU",
        ),
    ]
    return {
        "rows": rows,
        "times": t,
        "flops": w.flops,
        "bytes": w.bytes,
        "config": {"batch": n, "sequence": t_len, "repeats": repeats, "data": "random binary pixels"},
    }
