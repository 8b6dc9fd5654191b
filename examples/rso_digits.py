"""RSO on real digits, step by step.  Run: python examples/rso_digits.py  (about 1 s on a laptop CPU)

      python examples/rso_digits.py --smoke --json out/digits.json   (CI: 1 cycle on 1,000 digits)

RSO (Tripathi & Singh 2020) trains with no gradients at all: for each weight
w it draws Delta ~ N(0, sigma_layer), computes the mini-batch loss of w,
w + Delta and w - Delta, and keeps the best.  One *cycle* visits every weight
once, last layer first.  Before a layer is swept, its inputs are cached for
the whole training pool, so a trial only runs the layers from there on.

Data: the official MNIST test set bundled with the package (minirso/data/bundled/), split 8,000 train /
2,000 held out (no network needed).  Two nets:

* ``--net small`` (default): digits averaged down to 7x7, then 49-16-10 with
  ReLU: 970 weights, a cycle takes well under a second;
* ``--net paper``: the paper's 6-conv MNIST net (12,016 weights, sec. 4.1).
  On a CPU the plain evaluator makes this slow (minutes per cycle); it is the
  net the GPU fast path is built for.

What to expect with the defaults (small net, 3 cycles at batch 256, seed 1,
NumPy, 2 CPU cores): held-out accuracy 0.12 before training and 0.73 after
the third cycle, about a second of training.  ``--json PATH`` writes the
final metrics (``test_accuracy``, ``test_accuracy_before``, ...).
``--smoke`` runs one cycle at batch 64 on the first 1,000 training and 500
held-out digits in a fraction of a second (``--net paper --smoke``: the
paper net at 4 channels, 844 parameters, a few seconds).
"""

import argparse
import time

import minirso
from minirso.data import bundled_mnist_split
from minirso.losses import accuracy
from minirso.models import rso_mnist
from minirso.nn import AvgPool2d, Dense, Flatten, ReLU, Sequential
from minirso.optim import RSO
from minirso.train import write_metrics


def small_net(seed):
    return Sequential(
        [
            AvgPool2d(4, name="down"),
            Flatten(name="flat"),
            Dense(49, 16, name="fc1"),
            ReLU(name="relu1"),
            Dense(16, 10, name="fc2"),
        ],
        seed=seed,
    )


def held_out_accuracy(net, x_train, x_held, y_held):
    """BatchNorm running statistics from 2,000 training images first (the authors' reset), then eval mode."""
    net.reestimate_batchnorm(x_train[:2000])
    net.eval()
    acc = accuracy(net(x_held), y_held)
    net.train()
    return acc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=["small", "paper"], default="small")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=["numpy", "cupy"])
    parser.add_argument("--json", metavar="PATH", help="write the final metrics here as JSON")
    parser.add_argument("--smoke", action="store_true", help="one cycle on 1,000 digits in a second or so (CI)")
    args = parser.parse_args()
    if args.backend:
        minirso.use_backend(args.backend)
    x_train, y_train, x_held, y_held = bundled_mnist_split()
    if args.smoke:  # the whole code path on a subset; the paper net narrowed to 4 channels (844 parameters)
        args.cycles, args.batch_size = 1, min(args.batch_size, 64)
        x_train, y_train, x_held, y_held = x_train[:1000], y_train[:1000], x_held[:500], y_held[:500]
    x_train, y_train, x_held, y_held = (minirso.asarray(a) for a in (x_train, y_train, x_held, y_held))
    net = small_net(seed=3) if args.net == "small" else rso_mnist(seed=420, channels=4 if args.smoke else 16)
    print(
        f"backend {minirso.backend_name()}; {args.net} net, {net.num_params} parameters; "
        f"{len(y_train)} training / {len(y_held)} held-out digits; batch {args.batch_size}"
    )
    before = held_out_accuracy(net, x_train, x_held, y_held)
    print(f"before training: held-out accuracy {before:.4f}")

    def show(event, info):  # the optimizer's callback: one line per tensor swept
        if event == "unit_end":
            print(
                f"  cycle {info['cycle'] + 1} {info['name']:14s} {info['trials']:5d} trials: "
                f"+{info['plus']} -{info['minus']} kept {info['rejected']}, mean loss {info['mean_loss']:.1f}, "
                f"sigma {info['sigma']:.3f}, {info['wall_time']:.1f} s"
            )

    opt = RSO(net, x_train, y_train, cycles=args.cycles, batch_size=args.batch_size, seed=args.seed, callback=show)
    t0 = time.perf_counter()
    acc = before
    for c in range(args.cycles):
        opt.run_cycle()
        acc = held_out_accuracy(net, x_train, x_held, y_held)
        print(f"cycle {c + 1}: held-out accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s so far)")
    if args.json:
        write_metrics(
            args.json,
            {
                "example": "rso_digits",
                "smoke": args.smoke,
                "backend": minirso.backend_name(),
                "net": args.net,
                "num_params": net.num_params,
                "cycles": args.cycles,
                "batch_size": args.batch_size,
                "trials": opt.trial,
                "test_accuracy_before": before,
                "test_accuracy": acc,
                "final_loss": opt.records[-1]["mean_loss"],
                "train_samples": int(len(y_train)),
                "test_samples": int(len(y_held)),
                "wall_time": time.perf_counter() - t0,
            },
        )


if __name__ == "__main__":
    main()
