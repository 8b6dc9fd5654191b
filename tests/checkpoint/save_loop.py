"""Child process of the SIGKILL test in tests/checkpoint/test_atomic.py: saves checkpoints to one path forever.

    python tests/checkpoint/save_loop.py PATH

Save number i writes version ``i % 2`` of :func:`versions` with ``meta={"counter": i, "version": i % 2}``,
with ``keep_previous`` on for every other pair of saves, so both code paths get killed.  After the
first complete save it prints "ready" so the parent knows the path exists; then the parent kills it
with SIGKILL at a random moment and checks that the path still loads as one of the two versions.
"""

import sys

import numpy

import minirso
from minirso import checkpoint, models


def versions():
    """Two different ``(model, optimizer state_dict, history)``, rebuilt identically in any process."""
    out = []
    for v in range(2):
        model = models.rso_mnist(channels=4, seed=10 + v)
        rng = numpy.random.default_rng(v)
        _perturb(model, rng)
        state = {
            "type": "Fake",
            "hyperparameters": {"version": v, "sigma0": 0.5 + v},
            "state": {
                "step": 1000 + v,
                "sigma": 0.25 * (v + 1),
                "mu": rng.normal(size=model.num_params),
                "records": [{"cycle": c, "name": f"t{c}", "loss": float(rng.random())} for c in range(3 + v)],
            },
        }
        history = {
            "eval": [{"cycle": c, "test_accuracy": float(rng.random())} for c in range(4 + v)],
            "loss": rng.random(50 + v),
        }
        out.append((model, state, history))
    return out


def _perturb(model, rng):
    """Asymmetric random parameters and BatchNorm statistics, so that a mix-up of tensors shows."""
    model.params[...] = minirso.asarray(rng.normal(0.0, 0.5, model.num_params).astype(numpy.float32))
    for buf in model.buffers().values():
        buf[...] = minirso.asarray(rng.random(buf.shape).astype(numpy.float32) + 0.5)


def main(path):
    saved = versions()
    i = 0
    while True:
        model, state, history = saved[i % 2]
        checkpoint.save(
            path, model, state, history, meta={"counter": i, "version": i % 2}, keep_previous=(i // 2) % 2 == 1
        )
        if i == 0:
            print("ready", flush=True)
        i += 1


if __name__ == "__main__":
    main(sys.argv[1])
