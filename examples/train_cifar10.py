"""RSO trains CIFAR-10 convnets with no gradients: the RSO paper's Table 3 (sec. 4.4).

Run:  python examples/train_cifar10.py --depth 10                  (the paper's Depth-10 run: 500 cycles; a GPU job)
      python examples/train_cifar10.py --depth 3 --batch-size 256 --cycles 3   (a CPU try: ~10 min a cycle, estimated)
      python examples/train_cifar10.py --checkpoint runs/c10.h5     (Ctrl-C saves; add --resume to continue)
      python examples/train_cifar10.py --checkpoint runs/c10.h5 --resume --cycles 600   (continue, extended)
      python examples/train_cifar10.py --smoke --json out/c10.json  (CI: a few seconds, no data needed)

RSO (Tripathi & Singh 2020, Algorithm 1) visits every weight in turn, last layer
first: it draws Delta ~ N(0, sigma_layer), computes the loss of w, w + Delta
and w - Delta on a fresh batch of 5,000 training images, and keeps the best.
One cycle visits every weight (and BatchNorm gamma and beta) once.  The nets
(``minirso.models.rso_cifar``; conv 3x3 without bias -> [2x2 average pool] ->
BatchNorm, ReLU starting the next layer, global max pooling, a dense layer):

    --depth 3    conv(32) [pool] conv(32)                            10,528 parameters   paper: 56.30 %
    --depth 5    conv(16) conv(16) [pool] conv(32) [pool] conv(32)   17,072 parameters   paper: 68.48 %
    --depth 10   conv(16), then residual blocks <16> [pool]          57,104 parameters   paper: 81.80 %
                 <32> [pool] <32> <32> (the authors' ``--layers 9``)

The defaults are the paper's and its authors' code's (``recipe="authors"``, see
``minirso.optim.RSO``): 500 cycles, batches of 5,000, sigma = the layer's Kaiming
std sqrt(2 / fan_in) (0.167 for BatchNorm), annealed linearly by the code's
factor 0.1 + 0.9 (E - c) / E, weight decay 1e-4 (w *= 1 - wd in float64 before
each trial, BatchNorm gamma and beta included), cross-entropy summed over the
batch in float64, seeds 420 (init) and 72 (sampling), global max pooling and
BatchNorm epsilon 1e-3 (MXNet's), running statistics re-estimated from the
first 2,000 training images before each layer-input cache and each test.
Inputs: pixels / 255 minus the per-channel training mean, no augmentation.

Cost.  This is a GPU job.  On 2 CPU cores (NumPy, OPENBLAS_NUM_THREADS=1)
one trial of a conv2 weight of the Depth-3 net at batch 5,000 takes 1.6 s with
the incremental evaluator (5.2 s with ``--evaluator plain``), so one cycle takes
more than 4 hours and 500 cycles are out of reach; at ``--batch-size 256`` a
conv2 trial takes 42 ms (conv2's 9,216 trials: 6.4 minutes; conv1's 864 trials,
each a pass through the whole net, come on top).  Measured on random images
in CIFAR's shape: CIFAR-10 itself could not be downloaded on the machine this
example was written on, so NO accuracy has been measured here; the numbers
above are the paper's.  ``--evaluator incremental`` (the default) computes
the same losses as ``plain``, faster where it can (plain convolutions;
residual blocks fall back to the plain path).

Data: ``<data dir>/cifar-10/`` (``--data-dir``, ``$MINIRSO_DATA`` or the user
cache folder ``~/.cache/minirso``), downloaded (163 MiB) when missing.  Without it and
without a network the example prints why and exits with status 1.  ``--smoke``
never downloads: it uses 64 CIFAR-10 images if they are there, else 64 random
images in CIFAR's shape (3, 32, 32) with random labels, and a Depth-3 net at 4
channels instead of 32 (308 parameters), for one cycle at batch 8: the whole
code path (RSO, the Trainer, BatchNorm re-estimation, checkpoints) in seconds.

Ctrl-C (SIGTERM) stops the run after a checkpoint: the script prints the command that continues
(``--resume``), writes ``--json`` with ``"interrupted": true`` and exits with status 130 (143).  The
checkpoint stores the run's arguments and ``--resume`` rebuilds the run from them: a flag left out takes
the stored value; ``--backend``, ``--data-dir``, ``--download``, ``--checkpoint-every-trials``, ``--json``
and ``--no-progress`` may be changed; a larger ``--cycles`` extends the run (sigma then anneals linearly
over the new number of cycles: ``minirso.optim.RSO``, "Extending a run"); any other flag that differs
from the stored run is an error naming it (exit status 2).  With
``--checkpoint``, ``<checkpoint>.metrics.jsonl`` gets a line per finished tensor and evaluation.
"""

import argparse
import signal
import sys
import time

import numpy as np

import minirso
from minirso import runargs
from minirso.data import DataError, load_cifar10
from minirso.models import rso_cifar
from minirso.nn import AvgPool2d, BatchNorm2d, Conv2d, Dense, GlobalMaxPool2d, ReLU, Sequential
from minirso.optim import RSO
from minirso.train import Trainer, write_metrics


def smoke_net(seed):
    """Depth-3's layout (conv [pool] BN, ReLU conv BN, pool, dense) at 4 channels: 308 parameters."""
    return Sequential(
        [
            Conv2d(3, 4, 3, padding=1, bias=False, name="conv1"),
            AvgPool2d(2, name="pool1"),
            BatchNorm2d(4, eps=1e-3, name="bn1"),
            ReLU(name="relu1"),
            Conv2d(4, 4, 3, padding=1, bias=False, name="conv2"),
            BatchNorm2d(4, eps=1e-3, name="bn2"),
            GlobalMaxPool2d(name="gmp"),
            Dense(4, 10, bias=False, name="fc"),
        ],
        seed=seed,
    )


def load_data(args):
    """(x_train, y_train, x_test, y_test) as NumPy arrays, or exit with the loader's message."""
    if not args.smoke:
        try:
            ds = load_cifar10(args.data_dir, download=args.download)
        except DataError as e:
            sys.exit(f"train_cifar10: {e}")  # prints the message, exit status 1
        print(f"data: {ds.source}")
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test
    try:
        ds = load_cifar10(args.data_dir, download=False)
        print(f"smoke: 64 training / 64 test images of {ds.source}")
        return ds.x_train[:64], ds.y_train[:64], ds.x_test[:64], ds.y_test[:64]
    except DataError:
        print("smoke: CIFAR-10 is not here; using 64 random images (3, 32, 32) with random labels as a stand-in")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)  # (128, 3, 32, 32) noise, mean 0
        y = rng.integers(0, 10, 128).astype(np.int64)
        return x[:64], y[:64], x[64:], y[64:]


# flags that do not change what is computed: on --resume they may differ from the stored run
FREE = ("backend", "data_dir", "download", "checkpoint_every_trials", "json", "no_progress")


def parse_args(argv=None):
    """The arguments; with --resume, every flag not typed comes from the checkpoint (``minirso.runargs``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, choices=[3, 5, 10], default=10, help="Table 3's Depth-3 / 5 / 10 net")
    p.add_argument(
        "--cycles",
        type=int,
        help="RSO cycles (default and the paper: 500; --smoke 1); with --resume, a larger number extends the run",
    )
    p.add_argument("--batch-size", type=int, help="images per trial (default and the paper: 5,000; --smoke 8)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="the authors' code: 1e-4")
    p.add_argument("--n-train", type=int, help="use only the first N training images (default: all 50,000)")
    p.add_argument("--evaluator", choices=["plain", "incremental"], default="incremental")
    p.add_argument("--seed", type=int, default=72, help="sampling seed (the authors': 72)")
    p.add_argument("--init-seed", type=int, default=420, help="initialisation seed (the authors': 420)")
    p.add_argument("--backend", choices=["numpy", "cupy"])
    p.add_argument(
        "--data-dir",
        help="directory holding cifar-10/ (default: $MINIRSO_DATA, else the user cache folder ~/.cache/minirso)",
    )
    p.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download CIFAR-10 if it is missing (default: yes)",
    )
    p.add_argument("--checkpoint", metavar="PATH", help="HDF5 checkpoint, written after every cycle")
    p.add_argument(
        "--checkpoint-every-trials", type=int, metavar="N", help="also checkpoint every N trials inside a cycle"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run stored in --checkpoint (its arguments: only --cycles (larger) and --backend, "
        "--data-dir, --download, --checkpoint-every-trials, --json, --no-progress may differ)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", metavar="PATH", help="write the final metrics here as JSON")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="seconds, for CI: 64 images (random if CIFAR-10 is absent), a 308-parameter net, 1 cycle",
    )
    args = runargs.parse_resumable(p, argv, extend=("cycles",), free=FREE)
    if args.resume and not args.checkpoint:
        p.error("--resume needs --checkpoint PATH")
    # what was not given: the (smoke) defaults; the checkpoint stores the resolved numbers
    if args.cycles is None:
        args.cycles = 1 if args.smoke else 500
    if args.batch_size is None:
        args.batch_size = 8 if args.smoke else 5000
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.backend:
        minirso.use_backend(args.backend)

    # 1. Data: float32 NCHW, per-channel mean removed (the loader); the whole training pool on the backend.
    x_train, y_train, x_test, y_test = load_data(args)
    if args.n_train:
        x_train, y_train = x_train[: args.n_train], y_train[: args.n_train]
    x_train, y_train, x_test, y_test = (minirso.asarray(a) for a in (x_train, y_train, x_test, y_test))
    batch = min(args.batch_size, len(y_train))

    # 2. The net of Table 3 (Kaiming init, seed 420), or the tiny smoke net.
    net = smoke_net(args.init_seed) if args.smoke else rso_cifar(args.depth, seed=args.init_seed, bn_eps=1e-3)
    print(net.summary())

    # 3. RSO: one weight at a time, a new batch of `batch` images per weight, 3 losses, keep the best.
    opt = RSO(
        net,
        x_train,
        y_train,
        cycles=args.cycles,
        batch_size=batch,
        weight_decay=args.weight_decay,
        seed=args.seed,
        recipe="authors",
        evaluator=args.evaluator,
    )
    print(
        f"backend {minirso.backend_name()}; {'smoke net' if args.smoke else f'Depth-{args.depth}'}, "
        f"{net.num_params:,} parameters; {len(y_train):,} training / {len(y_test):,} test images; "
        f"{args.cycles} cycle(s) of {opt.total_trials_per_cycle:,} trials, batch {batch}",
        flush=True,
    )

    # 4. The Trainer: bars per cycle and per tensor, test accuracy after each cycle (BatchNorm statistics
    #    re-estimated from 2,000 training images first), a checkpoint after each cycle.
    trainer = Trainer(
        net,
        opt,
        eval_data=(x_test, y_test),
        bn_data=x_train[:2000],
        eval_every=1,
        checkpoint=args.checkpoint,
        checkpoint_every=1,
        checkpoint_every_trials=args.checkpoint_every_trials,
        progress=not args.no_progress,
        meta={"example": "train_cifar10", "args": vars(args)},
        loss="cross_entropy_mean",
    )
    if args.resume and trainer.restore(args.checkpoint):
        print(f"resumed from {args.checkpoint} at {trainer.where()}")
    stopped = runargs.fit_until_stopped(trainer)  # Ctrl-C / SIGTERM: saved, then stopped
    for row in trainer.history["eval"]:
        print(
            f"  cycle {row['cycle']:3d}: test accuracy {row['test_accuracy']:.4f}, test loss "
            f"{row['test_loss']:.4f}, acceptance {row['acceptance']:.3f}, {row['wall_time']:.0f} s"
        )
    # an interrupted run reports its last evaluation (none yet: None) instead of waiting for a new one
    final = (trainer.history["eval"][-1] if trainer.history["eval"] else {}) if stopped else trainer.evaluate()
    final = {k: final.get(k) for k in ("test_accuracy", "test_loss")}
    wall = time.perf_counter() - t0
    if not stopped:
        print(
            f"after {opt.cycle} cycles ({opt.trial:,} trials): test accuracy {final['test_accuracy']:.4f}; {wall:.1f} s"
        )

    if args.json:
        result = {
            "example": "train_cifar10",
            "backend": minirso.backend_name(),
            "wall_time": wall,
            "cycles": opt.cycle,
            "trials": opt.trial,
            "test_accuracy": final["test_accuracy"],
            "test_loss": final["test_loss"],
            "depth": None if args.smoke else args.depth,
            "num_params": net.num_params,
            "batch_size": batch,
            "train_samples": len(y_train),
            "test_samples": len(y_test),
            "evaluator": args.evaluator,
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
