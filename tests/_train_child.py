"""A training script for tests/test_train.py: RSO on a tiny model, stopped by a real SIGTERM.

``python tests/_train_child.py CHECKPOINT OUT.npy [--slow]``: resume from CHECKPOINT if it exists,
train to the end (checkpoints every 100 trials) and save the final params to OUT.npy; exit 0.
On SIGTERM / SIGINT the trainer saves and returns, and the script exits with 128 + the signal number
(143 for SIGTERM), the shell's convention.  ``--slow`` prints "ready" after 30 trials and then sleeps
2 ms per trial, so the parent can signal it mid-run.
"""

import sys
import time

import numpy as np

import minirso
from minirso import models
from minirso.optim import RSO
from minirso.train import Trainer


def main(path, out, slow):
    r = np.random.default_rng(3)
    x = r.normal(size=(64, 1, 8, 8)).astype(np.float32)
    x[:, :, :4] += 0.7
    y = r.integers(0, 10, size=64)
    x, y = minirso.asarray(x), minirso.asarray(y)
    model = models.rso_mnist(seed=5, channels=2)
    opt = None

    def pace(event, info):
        if slow and event == "trial":
            if opt.trial == 30:
                print("ready", flush=True)
            time.sleep(0.002)

    opt = RSO(model, x, y, cycles=2, batch_size=16, seed=11, callback=pace)
    trainer = Trainer(model, opt, eval_data=(x[:40], y[:40]), bn_data=x[:32], checkpoint=path,
                      checkpoint_every_trials=100, progress=False)
    trainer.restore()
    trainer.fit()
    if trainer.interrupted:
        print(f"interrupted at trial {opt.trial}", flush=True)
        return 128 + trainer.stop_signal
    np.save(out, minirso.to_numpy(model.params))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], "--slow" in sys.argv[3:]))
