"""aMC trains a plain tanh RNN on long pixel sequences: MNIST 0s versus 1s, the aMC paper's Fig. 5 (sec. II D).

Run:  python examples/amc_rnn_mnist01.py                  (7x7 images, 49-step sequences: ~1 minute, 2 CPU cores)
      python examples/amc_rnn_mnist01.py --side 28 --steps 20000 --download   (784-step sequences as the paper: GPU)
      python examples/amc_rnn_mnist01.py --checkpoint runs/rnn.h5   (Ctrl-C saves, prints how to continue, exits 130)
      python examples/amc_rnn_mnist01.py --checkpoint runs/rnn.h5 --resume [--steps 2000]   (continue [and extend])
      python examples/amc_rnn_mnist01.py --smoke --json out/rnn.json  (CI: a few seconds)

The task: tell MNIST 0s from 1s, reading the image ONE PIXEL AT A TIME.  Pixels
are binarised (white if > 127 of 255) and each is fed as a one-hot vector of
length 2, row by row: for the paper's 28x28 images a sequence of 784 steps.
The net (``minirso.models.amc_rnn_classifier``) is a 2-layer stack of plain
tanh RNNs with hidden state 64 (the first layer's states are the second's
inputs), the last hidden state into a linear 64 -> 2 classifier: 12,674
parameters.  The loss is the cross-entropy.  Over hundreds of steps the
gradient of such an RNN vanishes or explodes: the paper reports that gradient
descent and Adam (with clipping) do not train it, while aMC reaches 99.8 %.

aMC as in the paper and the authors' code: sigma0 = 1e-3, epsilon = 0 (no mu:
Metropolis with aMC's step-size schedule), n_s = 100, signal norm off; each
step draws a minibatch of 1,500 sequences and compares U(x) and U(x') on it.
The paper does not say how the weights start; Kaiming here (``--init``).

Defaults for a CPU: a forward pass over 1,500 sequences of 784 steps takes
about 0.5 s on 2 cores, two per aMC step, so by default the images are averaged
down to 7x7 (``--side 7``: 49-step sequences) before binarising; ``--side 14``
gives 196 steps (4 times longer sequences: each aMC step costs about 4 times more), ``--side 28`` the paper's
784.  Data: the 0s and 1s of the full MNIST when it is in ``--data-dir``
(12,665 train / 2,115 test), else those of the bundled MNIST test set split
(1,678 train / 437 held out; the minibatch then nearly covers them all).

What to expect (measured with the defaults on the bundled split, seed 0, NumPy, on a quiet 2-core
machine: 48 s; the same numbers came out of an earlier RNN forward, in 189 s on a busy machine):

    step         100     200     300     400     500     600     700     800     900     1,000
    held-out     0.822   0.803   0.854   0.918   0.883   0.897   0.883   0.874   0.897   0.899
    held-out U   0.465   0.418   0.385   0.322   0.325   0.313   0.302   0.292   0.276   0.260

The held-out loss falls steadily while the accuracy (437 sequences) is noisy
around 0.9; the paper's 99.8 % is for full 784-step sequences and a much
longer run.  Not measured here: ``--side 14`` and ``--side 28`` to convergence.
With OpenBLAS's default threads on busy cores a forward pass can be 10 to 30
times slower (small matrix products in a loop over time steps);
``OPENBLAS_NUM_THREADS=1`` avoids that.

``--json PATH`` writes test_accuracy, final_loss (the last minibatch's U), steps and wall_time.
"""

import argparse
import signal
import sys
import time

import numpy as np

import minirso
from minirso import runargs
from minirso.data import load_mnist_or_bundled
from minirso.models import amc_rnn_classifier
from minirso.optim import AMC, ModelLoss
from minirso.train import Trainer, write_metrics


def zeros_and_ones(images, labels, side):
    """uint8 images (N, 1, 28, 28) -> the 0s and 1s as one-hot pixel sequences (n, side*side, 2) float32.

    ``side`` < 28 averages ``28 // side`` x ``28 // side`` blocks first; then a pixel is white
    (one-hot [0, 1]) if it is above 127, black ([1, 0]) otherwise.  Labels stay 0 / 1.
    """
    keep = labels <= 1
    img = images[keep, 0].astype(np.float32)  # (n, 28, 28)
    if side != 28:
        f = 28 // side
        img = img.reshape(len(img), side, f, side, f).mean(axis=(2, 4))  # (n, side, side)
    white = (img > 127).reshape(len(img), side * side)  # (n, T) the binarised pixels, row by row
    seq = np.stack([~white, white], axis=-1).astype(np.float32)  # (n, T, 2) one-hot
    return seq, labels[keep]


# flags that do not change what is computed: on --resume they may differ from the stored run
FREE = ("backend", "data_dir", "download", "eval_every", "json", "no_progress")


def parse_args(argv=None):
    """The arguments; with --resume, every flag not typed comes from the checkpoint (``minirso.runargs``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--steps",
        type=int,
        help="aMC steps (default 1,000; --smoke 20); with --resume, a larger number extends the run",
    )
    p.add_argument(
        "--side",
        type=int,
        choices=[4, 7, 14, 28],
        default=7,
        help="images averaged down to side x side: sequences of side^2 steps (the paper: 28)",
    )
    p.add_argument("--batch-size", type=int, help="minibatch per step (default and the paper: 1,500; --smoke 100)")
    p.add_argument("--sigma0", type=float, default=1e-3)
    p.add_argument("--epsilon", type=float, default=0.0)
    p.add_argument("--n-s", type=int, default=100)
    p.add_argument("--signal-norm", choices=["on", "off"], default="off")
    p.add_argument("--hidden", type=int, default=64, help="hidden state size of both RNN layers")
    p.add_argument("--cell", choices=["rnn", "gru"], default="rnn", help="gru: the authors' code's variant")
    p.add_argument(
        "--init",
        choices=["kaiming", "gaussian"],
        default="kaiming",
        help="kaiming, or N(0, sigma0^2) as the paper's other nets",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["numpy", "cupy"])
    p.add_argument(
        "--data-dir",
        help="directory holding mnist/ (default: $MINIRSO_DATA, else the user cache folder ~/.cache/minirso)",
    )
    p.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="fetch the full MNIST if it is missing (default: no, use the bundled digits)",
    )
    p.add_argument("--eval-every", type=int, help="steps between held-out evaluations (default 100; --smoke 10)")
    p.add_argument("--checkpoint", metavar="PATH", help="HDF5 checkpoint, written every --eval-every steps")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run stored in --checkpoint (its arguments: only --steps (larger) and "
        "--backend, --data-dir, --download, --eval-every, --json, --no-progress may differ)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="PATH", help="write the final metrics here as JSON")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds for CI: 7x7 images (49 steps), 200 / 100 sequences, batch 100, 20 steps",
    )
    args = runargs.parse_resumable(p, argv, extend=("steps",), free=FREE)
    if args.resume and not args.checkpoint:
        p.error("--resume needs --checkpoint PATH")
    if args.smoke:
        args.side = 7
    # what was not given: the (smoke) defaults; the checkpoint stores the resolved numbers
    for name, normal, smoke in (("steps", 1000, 20), ("batch_size", 1500, 100), ("eval_every", 100, 10)):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else normal)
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.backend:
        minirso.use_backend(args.backend)

    # 1. Data: raw uint8 pixels (binarising needs them), only the 0s and 1s, as one-hot sequences.
    ds, note = load_mnist_or_bundled(args.data_dir, download=args.download, normalize=False)
    print(note)
    x_train, y_train = zeros_and_ones(ds.x_train, ds.y_train, args.side)
    x_test, y_test = zeros_and_ones(ds.x_test, ds.y_test, args.side)
    if args.smoke:
        x_train, y_train, x_test, y_test = x_train[:200], y_train[:200], x_test[:100], y_test[:100]
    batch = min(args.batch_size, len(y_train))
    x_train, y_train, x_test, y_test = (minirso.asarray(a) for a in (x_train, y_train, x_test, y_test))

    # 2. The 2-layer tanh RNN of Fig. 5 (hidden 64) and a linear read-out of its last state.
    init = "kaiming" if args.init == "kaiming" else ("gaussian", args.sigma0)
    net = amc_rnn_classifier(hidden_size=args.hidden, cell=args.cell, seed=args.seed, init=init)
    print(net.summary())

    # 3. U: mean cross-entropy on a fresh minibatch every step (drawn by aMC, with replacement).
    loss = ModelLoss(net, x_train, y_train, loss="cross_entropy_mean")
    opt = AMC(
        net.params,
        loss,
        sigma0=args.sigma0,
        epsilon=args.epsilon,
        n_s=args.n_s,
        signal_norm=args.signal_norm == "on",
        seed=args.seed,
        batch_size=batch,
    )
    print(
        f"backend {minirso.backend_name()}; {len(y_train):,} training / {len(y_test):,} held-out sequences "
        f"of {args.side * args.side} pixels; minibatch {batch}; aMC sigma0 {args.sigma0:g}, epsilon "
        f"{args.epsilon:g}, n_s {args.n_s}, signal norm {args.signal_norm}; {args.steps:,} steps",
        flush=True,
    )

    # 4. Train with the Trainer: progress bar, held-out accuracy every --eval-every steps, checkpoints.
    trainer = Trainer(
        net,
        opt,
        steps=args.steps,
        eval_data=(x_test, y_test),
        eval_every=args.eval_every,
        checkpoint=args.checkpoint,
        checkpoint_every=args.eval_every,
        log_every=max(1, min(10, args.eval_every)),
        progress=not args.no_progress,
        meta={"example": "amc_rnn_mnist01", "args": vars(args)},
        loss="cross_entropy_mean",
        eval_batch=500,
    )
    if args.resume and trainer.restore(args.checkpoint):
        print(f"resumed from {args.checkpoint} at step {opt.step_count:,}")
    stopped = runargs.fit_until_stopped(trainer)  # Ctrl-C / SIGTERM: saved, then stopped
    for row in trainer.history["eval"]:
        print(
            f"  step {row['step']:6,d}: held-out accuracy {row['test_accuracy']:.4f}, held-out U "
            f"{row['test_loss']:.4f}, acceptance {row['acceptance']:.3f}, sigma {row['sigma']:.2e}"
        )
    # an interrupted run reports its last evaluation (none yet: None) instead of waiting for a new one
    final = (trainer.history["eval"][-1] if trainer.history["eval"] else {}) if stopped else trainer.evaluate()
    final = {k: final.get(k) for k in ("test_accuracy", "test_loss")}
    wall = time.perf_counter() - t0
    if not stopped:
        print(
            f"after {opt.step_count:,} steps: held-out accuracy {final['test_accuracy']:.4f}, last minibatch U "
            f"{opt.loss:.4f}, acceptance rate {opt.acceptance_rate:.3f}; {wall:.1f} s"
        )

    if args.json:
        result = {
            "example": "amc_rnn_mnist01",
            "backend": minirso.backend_name(),
            "wall_time": wall,
            "steps": opt.step_count,
            "test_accuracy": final["test_accuracy"],
            "test_loss": final["test_loss"],
            "final_loss": opt.loss,
            "acceptance": opt.acceptance_rate,
            "sigma": opt.sigma,
            "sequence_length": args.side * args.side,
            "batch_size": batch,
            "cell": args.cell,
            "num_params": net.num_params,
            "train_samples": len(y_train),
            "test_samples": len(y_test),
            "data": ds.name,
            "seed": args.seed,
            "interrupted": stopped,
            "smoke": args.smoke,
        }
        if stopped:
            result.update(
                stop_signal=signal.Signals(trainer.stop_signal).name, resume=runargs.resume_command(args.checkpoint)
            )
        print(f"wrote {write_metrics(args.json, result)}")
    if stopped:  # the shell's "stopped by a signal" (130 for Ctrl-C, 143 for SIGTERM): the run is unfinished
        print(runargs.stop_message(trainer, args.checkpoint))
        return 128 + trainer.stop_signal
    return 0


if __name__ == "__main__":
    sys.exit(main())
