"""A user's training script for tests/train/test_resume.py: RSO on a tiny model, stopped by a real signal.

``python tests/train/train_child.py CHECKPOINT OUT.npy [--slow] [--configs N]``: resume from CHECKPOINT if it
exists, train to the end (checkpoints every 100 trials; the trainer's metrics log beside it) and save the
final params to OUT.npy; print "all done" and exit 0.  ``--configs N`` loops over N configurations (RSO
seeds 11, 12, ...) the way a sweep script does, printing "config i" before each; configuration i uses
CHECKPOINT and OUT with "-i" before the extension.  The script has no signal handling of its own: on
SIGINT the trainer saves and raises KeyboardInterrupt, on SIGTERM SystemExit(143), and the script stops
there.  ``--slow`` prints "ready" after 30 trials and then sleeps 2 ms per trial, so the parent can
signal it mid-run.
"""

import os
import sys
import time

import numpy as np

import minirso
from minirso import models
from minirso.optim import RSO
from minirso.train import Trainer


def train(path, out, seed, slow):
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

    opt = RSO(model, x, y, cycles=2, batch_size=16, seed=seed, callback=pace)
    trainer = Trainer(
        model,
        opt,
        eval_data=(x[:40], y[:40]),
        bn_data=x[:32],
        checkpoint=path,
        checkpoint_every_trials=100,
        progress=False,
    )
    trainer.restore()
    trainer.fit()
    np.save(out, minirso.to_numpy(model.params))


def numbered(path, i):
    stem, ext = os.path.splitext(path)
    return f"{stem}-{i}{ext}"


def main(argv):
    path, out, slow = argv[0], argv[1], "--slow" in argv[2:]
    configs = int(argv[argv.index("--configs") + 1]) if "--configs" in argv else None
    if configs is None:
        train(path, out, 11, slow)
    else:
        for i in range(configs):
            print(f"config {i}", flush=True)
            train(numbered(path, i), numbered(out, i), 11 + i, slow)
    print("all done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
