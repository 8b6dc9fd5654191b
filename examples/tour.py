"""A tour of minirso's core, top to bottom.  Run: python examples/tour.py  (about a second on a laptop CPU)

      python examples/tour.py --smoke --json out/tour.json   (CI: a batch of 16 instead of 256)

What you will see:
1. which array backend runs (NumPy, or CuPy on a CUDA machine);
2. the RSO paper's MNIST network and its ONE flat parameter buffer;
3. that every weight tensor is a view: writing the buffer changes the output;
4. activation caching: run the net from the cached input of any layer;
5. the aMC paper's signal norm: one lambda per parameter from one forward pass.

The images here are random noise on purpose: the point is the mechanics,
not accuracy (examples/rso_digits.py and train_mnist.py train on digits).
``--json PATH`` writes what was measured: the parameter count, the loss
before and after the write into the buffer, the largest difference between a
forward from a cached layer input and the full forward (0.0 on NumPy: the
same operations in the same order), and the mean lambda of every tensor.
``--smoke`` uses a batch of 16.
"""

import argparse
import time

import numpy as np

import minirso
from minirso import losses, models
from minirso.train import write_metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["numpy", "cupy"], help="default: CuPy if a GPU is usable, else NumPy")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", metavar="PATH", help="write what the tour measured here as JSON")
    parser.add_argument("--smoke", action="store_true", help="a batch of 16 (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.batch_size = min(args.batch_size, 16)
    if args.backend:
        minirso.use_backend(args.backend)
    t0 = time.perf_counter()
    xp = minirso.backend.xp()
    print(f"1. backend: {minirso.backend_name()}")

    # 2. The network of RSO sec. 4.1, built as the authors' code builds it.
    model = models.rso_mnist(seed=420)
    print(
        f"\n2. rso_mnist: {len(model.layers)} layers, {model.num_params} parameters in one "
        f"{model.params.dtype} buffer of shape {model.params.shape}"
    )
    print(model.summary())

    # 3. Views: conv1.weight IS model.params[0:144], reshaped.
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((args.batch_size, 1, 28, 28)).astype(np.float32))  # (N, 1, 28, 28)
    labels = xp.asarray(rng.integers(0, 10, args.batch_size))
    model.eval()
    model.reestimate_batchnorm(x)  # RSO has no gradient step to update running statistics
    before = float(losses.cross_entropy(model(x), labels))  # host sync
    conv1 = model.layers[0]
    model.params[0] += 0.5  # one write into the flat buffer ...
    after = float(losses.cross_entropy(model(x), labels))
    print(
        f"\n3. params[0] += 0.5 moved conv1.weight[0,0,0,0] to {float(conv1.weight[0, 0, 0, 0]):+.4f}; "
        f"loss {before:.5f} -> {after:.5f}"
    )
    model.params[0] -= 0.5

    # 4. Activation caching (RSO sec. 4.7): a trial of a weight in layer k starts at layer k.
    full = model(x)
    print("\n4. forward from cached inputs (max |difference| to the full forward, and time per pass):")
    max_diff = 0.0
    for k, layer in enumerate(model.layers):
        if not layer.param_specs():
            continue
        cache = model.layer_inputs(x, k, chunk_size=128)  # (N, ...) inputs of layer k
        minirso.backend.synchronize()
        t = time.perf_counter()
        out = model.forward(cache, start=k)
        minirso.backend.synchronize()
        ms = 1e3 * (time.perf_counter() - t)
        diff = float(abs(out - full).max())  # host sync
        max_diff = max(max_diff, diff)
        print(
            f"   start={k:2d} ({layer.name:4s}) cache {str(tuple(cache.shape)):18s} max diff {diff:.1e}  {ms:7.2f} ms"
        )

    # 5. Signal norm (aMC eqs. 17-18): lambda_j = <sum of squared inputs of neuron j>^(-1/2).
    with model.signal_stats():
        model(x)
    lam = model.signal_norm_lambda()  # (P,) aligned with model.params
    print("\n5. signal-norm lambda per tensor (biases and BatchNorm shifts are 1):")
    lambdas = {}
    for g in model.param_groups:
        lambdas[g.name] = float(lam[g.slice].mean())
        print(f"   {g.name:14s} lambda = {lambdas[g.name]:.4f}")
    if args.json:
        write_metrics(
            args.json,
            {
                "example": "tour",
                "smoke": args.smoke,
                "backend": minirso.backend_name(),
                "batch_size": args.batch_size,
                "num_params": model.num_params,
                "loss_before": before,
                "loss_after": after,
                "max_cached_forward_diff": max_diff,
                "lambda_mean": lambdas,
                "wall_time": time.perf_counter() - t0,
            },
        )


if __name__ == "__main__":
    main()
