"""aMC trains the aMC paper's MNIST net with no gradients: Fig. 1 and Fig. 7 (sec. II A and II F).

Run:  python examples/amc_mnist.py                           (full batch, signal norm on: ~2 minutes, 2 CPU cores)
      python examples/amc_mnist.py --batching progressive       (Fig. 7(b): batches of 500 that double)
      python examples/amc_mnist.py --batching minibatch         (Fig. 7(b): minibatches of 2,000)
      python examples/amc_mnist.py --signal-norm off --sigma0 2e-3 --epsilon 0 --n-s 0   (Fig. 1: plain Metropolis)
      python examples/amc_mnist.py --checkpoint runs/amc.h5     (Ctrl-C saves; add --resume to continue)
      python examples/amc_mnist.py --checkpoint runs/amc.h5 --resume --steps 8000   (continue to 8,000 steps)
      python examples/amc_mnist.py --smoke --json out/amc_mnist.json   (CI: a few seconds)

The net is the paper's Fig. 1 net: 784 inputs, two hidden layers of 16 tanh
neurons, 10 softmax outputs: 13,002 parameters, all started as N(0, sigma0^2).
The loss U is the mean-squared error between the 10 softmax outputs and the
one-hot label (the paper's choice; no cross-entropy).  aMC (sec. III A) moves
ALL 13,002 parameters at once by N(mu_i, (lambda_i sigma)^2) and keeps the move
if U does not increase; sigma shrinks by 0.95 after n_s = 20 rejections in a
row.  Fig. 7(a)'s aMC run, the defaults here: (sigma0, epsilon, n_s, signal
norm) = (1e-2, 0, 20, on) (the caption's values; the text names n_s and signal norm).

Batching (sec. II F): ``full`` evaluates U on the whole training set (one
forward pass per step: the previous U is reused); ``minibatch`` draws 2,000
rows per step (two passes per step: U(x) and U(x') on the same rows);
``progressive`` starts at 500 rows and doubles the batch whenever the
minibatch classification error falls below 10 %, resetting sigma to sigma0 and
mu to 0 each time.

Data: the full MNIST (60,000 / 10,000) when it is in ``--data-dir`` (or with
``--download``), else the official MNIST test set bundled with minirso, split
8,000 train / 2,000 held out (a one-line note says which).  The paper's runs
are 10^5 full-batch steps on 60,000 images (``--download --steps 100000``,
about 95 % test accuracy in Fig. 1 / Fig. 7); that is hours on a CPU.

What to expect (measured on the bundled 8,000 / 2,000 split, seed 0, NumPy, OPENBLAS_NUM_THREADS=1,
on a 2-core machine shared with other jobs; accuracies are exact for the seed, times are not):

    command                                steps   held-out accuracy   train U*   wall time
    (defaults: full batch, signal norm on) 4,000   0.819               0.0339     105 s
    --batching minibatch                   4,000   0.812               0.0362      47 s
    --batching progressive                 4,000   0.759               0.0407      20 s
    --signal-norm off                      4,000   0.837               0.0304      47 s

    * MSE on the first 2,000 training digits, from the last evaluation.

All four are still learning at 4,000 steps (accuracy 0.40 at step 500, 0.65 at
2,000 with the defaults); the paper's 95 % needs its 10^5 steps.  In 4,000
steps the progressive batch stays at 500 rows (the minibatch error never falls
below 10 %), so it is the cheapest and least accurate here.  Signal norm costs
time on this net: its statistics double the cost of a full-batch forward pass.
Busy cores: with other jobs running, OpenBLAS's own threads made the default
run take 295 s instead of 105 s; ``OPENBLAS_NUM_THREADS=1`` avoids that.

``--json PATH`` writes test_accuracy, final_loss (U of the last step: on its
minibatch when minibatching), train_loss, steps, wall_time, the batching mode,
the acceptance rate and sigma.  Ctrl-C (SIGTERM) stops the run after a
checkpoint: the script prints the command that continues, writes ``--json``
with ``"interrupted": true`` (the numbers of the last evaluation) and exits
with status 130 (143).  The checkpoint stores the run's arguments, and
``--resume`` rebuilds the run from them: a flag left out takes the stored value;
``--backend``, ``--data-dir``, ``--download``, ``--eval-every``, ``--json`` and
``--no-progress`` may be changed; a larger ``--steps`` extends the run (sigma and
mu go on from where they were: aMC has no schedule); any other flag that differs
from the stored run (a smaller ``--steps``, ``--batch-size``, ``--seed``, ...) is
an error naming it (exit status 2).  With ``--checkpoint``, ``<checkpoint>.metrics.jsonl``
gets a line per evaluation and per log interval while the run goes on.
"""

import argparse
import signal
import sys
import time

import minirso
from minirso import runargs
from minirso.data import load_mnist_or_bundled
from minirso.models import mlp
from minirso.optim import AMC, ModelLoss
from minirso.train import Trainer, write_metrics

# flags that do not change what is computed: on --resume they may differ from the stored run
FREE = ("backend", "data_dir", "download", "eval_every", "json", "no_progress")


def parse_args(argv=None):
    """The arguments; with --resume, every flag not typed comes from the checkpoint (``minirso.runargs``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--steps",
        type=int,
        help="aMC steps (default 4,000; --smoke 40; the paper: 10^5); with --resume, a larger number extends the run",
    )
    p.add_argument("--batching", choices=["full", "minibatch", "progressive"], default="full")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="minibatch rows (default 2000) or the progressive start (default 500)",
    )
    p.add_argument("--signal-norm", choices=["on", "off"], default="on")
    p.add_argument("--sigma0", type=float, default=1e-2, help="initial move scale, also the init std")
    p.add_argument("--epsilon", type=float, default=0.0, help="mu adaptation rate (eq. 10)")
    p.add_argument("--n-s", type=int, default=20, help="rejections in a row before sigma *= 0.95 (0: never)")
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
    p.add_argument("--eval-every", type=int, help="steps between test-set evaluations (default 500; --smoke 20)")
    p.add_argument("--checkpoint", metavar="PATH", help="HDF5 checkpoint, written every --eval-every steps")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run stored in --checkpoint (its arguments: only --steps (larger) and "
        "--backend, --data-dir, --download, --eval-every, --json, --no-progress may differ)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="PATH", help="write the final metrics here as JSON")
    p.add_argument("--smoke", action="store_true", help="a few seconds for CI: 1,000 / 500 digits, 40 steps")
    args = runargs.parse_resumable(p, argv, extend=("steps",), free=FREE)
    if args.resume and not args.checkpoint:
        p.error("--resume needs --checkpoint PATH")
    if args.steps is None:  # the checkpoint stores the resolved numbers
        args.steps = 40 if args.smoke else 4000
    if args.eval_every is None:
        args.eval_every = 20 if args.smoke else 500
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.backend:
        minirso.use_backend(args.backend)

    # 1. Data: images flattened to 784 inputs (the net is fully connected), moved to the backend.
    ds, note = load_mnist_or_bundled(args.data_dir, download=args.download)
    print(note)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if args.smoke:  # a small slice: the code path, not the result
        x_train, y_train, x_test, y_test = x_train[:1000], y_train[:1000], x_test[:500], y_test[:500]
    x_train = minirso.asarray(x_train.reshape(len(x_train), -1))  # (N, 784)
    x_test = minirso.asarray(x_test.reshape(len(x_test), -1))
    y_train, y_test = minirso.asarray(y_train), minirso.asarray(y_test)

    # 2. The Fig. 1 net, parameters x_i ~ N(0, sigma0^2) (sec. III A).
    net = mlp([784, 16, 16, 10], activation="tanh", output="softmax", init=("gaussian", args.sigma0), seed=args.seed)
    print(net.summary())

    # 3. U(x): MSE of the softmax outputs against one-hot labels, and the aMC chain that moves net.params.
    loss = ModelLoss(net, x_train, y_train, loss="mse")
    batch = {
        "full": {},
        "minibatch": {"batch_size": args.batch_size or min(2000, len(y_train))},
        "progressive": {"progressive": True, "batch_size": args.batch_size},
    }[args.batching]
    opt = AMC(
        net.params,
        loss,
        sigma0=args.sigma0,
        epsilon=args.epsilon,
        n_s=args.n_s or None,
        signal_norm=args.signal_norm == "on",
        seed=args.seed,
        **batch,
    )
    print(
        f"backend {minirso.backend_name()}; {len(y_train):,} training / {len(y_test):,} test digits; "
        f"aMC sigma0 {args.sigma0:g}, epsilon {args.epsilon:g}, n_s {args.n_s or 'inf'}, signal norm "
        f"{args.signal_norm}, batching {args.batching}"
        + (f" ({opt.batch} rows)" if opt.batch else "")
        + f"; {args.steps:,} steps",
        flush=True,
    )

    # 4. The Trainer runs the steps, evaluates held-out accuracy, and checkpoints (Ctrl-C saves and stops).
    train_eval = (x_train[:2000], y_train[:2000])
    trainer = Trainer(
        net,
        opt,
        steps=args.steps,
        eval_data=(x_test, y_test),
        train_eval_data=train_eval,
        eval_every=args.eval_every,
        checkpoint=args.checkpoint,
        checkpoint_every=args.eval_every,
        log_every=max(1, min(100, args.eval_every)),
        progress=not args.no_progress,
        meta={"example": "amc_mnist", "args": vars(args)},
        loss="mse",
    )
    if args.resume and trainer.restore(args.checkpoint):
        print(f"resumed from {args.checkpoint} at step {opt.step_count:,}")
    stopped = runargs.fit_until_stopped(trainer)  # Ctrl-C / SIGTERM: saved, then stopped
    for row in trainer.history["eval"]:
        print(
            f"  step {row['step']:7,d}: test accuracy {row['test_accuracy']:.4f}, test U {row['test_loss']:.4f}, "
            f"train U {row.get('train_loss', float('nan')):.4f}, acceptance {row['acceptance']:.3f}, "
            f"sigma {row['sigma']:.2e}"
        )
    # an interrupted run reports its last evaluation (none yet: None) instead of waiting for a new one
    final = (trainer.history["eval"][-1] if trainer.history["eval"] else {}) if stopped else trainer.evaluate()
    final = {k: final.get(k) for k in ("test_accuracy", "test_loss", "train_accuracy", "train_loss")}
    wall = time.perf_counter() - t0
    if not stopped:
        print(
            f"after {opt.step_count:,} steps: held-out accuracy {final['test_accuracy']:.4f}, training U "
            f"{opt.loss:.4f}, acceptance rate {opt.acceptance_rate:.3f}, sigma {opt.sigma:.2e}; {wall:.1f} s"
        )

    if args.json:
        result = {
            "example": "amc_mnist",
            "backend": minirso.backend_name(),
            "wall_time": wall,
            "steps": opt.step_count,
            "test_accuracy": final["test_accuracy"],
            "test_loss": final["test_loss"],
            "train_accuracy": final["train_accuracy"],
            "train_loss": final["train_loss"],
            "final_loss": opt.loss,
            "acceptance": opt.acceptance_rate,
            "sigma": opt.sigma,
            "batch": opt.batch,
            "batching": args.batching,
            "signal_norm": args.signal_norm == "on",
            "sigma0": args.sigma0,
            "epsilon": args.epsilon,
            "n_s": args.n_s,
            "seed": args.seed,
            "num_params": net.num_params,
            "train_samples": len(y_train),
            "test_samples": len(y_test),
            "data": ds.name,
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
