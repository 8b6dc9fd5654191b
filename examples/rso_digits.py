"""RSO on real digits, step by step.  Run: python examples/rso_digits.py  (about 2 s on a laptop CPU)

RSO (Tripathi & Singh 2020) trains with no gradients at all: for each weight
w it draws Delta ~ N(0, sigma_layer), computes the mini-batch loss of w,
w + Delta and w - Delta, and keeps the best.  One *cycle* visits every weight
once, last layer first.  Before a layer is swept, its inputs are cached for
the whole training pool, so a trial only runs the layers from there on.

Data: the official MNIST test set bundled in data/mnist/, split 8,000 train /
2,000 held out (no network needed).  Two nets:

* ``--net small`` (default): digits averaged down to 7x7, then 49-16-10 with
  ReLU: 970 weights, a cycle takes well under a second;
* ``--net paper``: the paper's 6-conv MNIST net (12,016 weights, sec. 4.1).
  On a CPU the plain evaluator makes this slow (minutes per cycle); it is the
  net the GPU fast path is built for.
"""

import argparse
import time

import minirso
from minirso.data import bundled_mnist_split
from minirso.losses import accuracy
from minirso.models import rso_mnist
from minirso.nn import AvgPool2d, Dense, Flatten, ReLU, Sequential
from minirso.optim import RSO


def small_net(seed):
    return Sequential([AvgPool2d(4, name="down"), Flatten(name="flat"), Dense(49, 16, name="fc1"),
                       ReLU(name="relu1"), Dense(16, 10, name="fc2")], seed=seed)


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
    args = parser.parse_args()
    if args.backend:
        minirso.use_backend(args.backend)
    x_train, y_train, x_held, y_held = (minirso.asarray(a) for a in bundled_mnist_split())
    net = small_net(seed=3) if args.net == "small" else rso_mnist(seed=420)
    print(f"backend {minirso.backend_name()}; {args.net} net, {net.num_params} parameters; "
          f"{len(y_train)} training / {len(y_held)} held-out digits; batch {args.batch_size}")
    print(f"before training: held-out accuracy {held_out_accuracy(net, x_train, x_held, y_held):.4f}")

    def show(event, info):  # the optimizer's callback: one line per tensor swept
        if event == "unit_end":
            print(f"  cycle {info['cycle'] + 1} {info['name']:14s} {info['trials']:5d} trials: "
                  f"+{info['plus']} -{info['minus']} kept {info['rejected']}, mean loss {info['mean_loss']:.1f}, "
                  f"sigma {info['sigma']:.3f}, {info['wall_time']:.1f} s")

    opt = RSO(net, x_train, y_train, cycles=args.cycles, batch_size=args.batch_size, seed=args.seed, callback=show)
    t0 = time.perf_counter()
    for c in range(args.cycles):
        opt.run_cycle()
        acc = held_out_accuracy(net, x_train, x_held, y_held)
        print(f"cycle {c + 1}: held-out accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s so far)")


if __name__ == "__main__":
    main()
