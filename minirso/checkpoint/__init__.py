"""Checkpoints: a model, its optimizer's state, the training history and metadata in one HDF5 file.

::

    from minirso import checkpoint
    checkpoint.save("run.h5", model, optimizer, history, meta={"cycle": 3}, keep_previous=True)
    ck = checkpoint.load("run.h5", fallback=True)   # ck.model, ck.optimizer, ck.history, ck.meta, ck.attrs
    ck.model.predict(x)                              # the model comes back in eval mode, ready for inference
    checkpoint.load("run.h5", verify="data")         # also accept attributes added later, e.g. with h5py
    checkpoint.verify("run.h5")                      # every checksum, without building a model
    checkpoint.check_writable("runs/run.h5")         # before a long run: fail now, not at its first save

The file is plain HDF5 that h5py alone can read (layout: ``docs/checkpoint-format.md``).  What this
package adds are two promises, and the reason they need work is that HDF5 makes neither:

* **The path always holds a complete checkpoint, even if the process is killed mid-save**: the file is
  written under a temporary name, fsynced, read back, and renamed onto the path (``atomic.py``).
* **A damaged file never loads with changed values**: a header with the whole file's sha256, and a
  manifest with every dataset's sha256 (``integrity.py``).

Every problem raises ONE exception type, :class:`CheckpointError` (``errors.py``).  The modules, each
read top to bottom:

=============  ==================================================================================
api.py         save, load, verify, check_writable: the steps below, in order
mapping.py     where the model, the optimizer's state, the history and the metadata live in the file
codec.py       nested Python values as groups and datasets: one writer and one reader per kind
integrity.py   the header and the manifest: written with the file, checked before anything is decoded
atomic.py      replacing a file atomically (temporary names, fsync, stale temporaries, ``.prev``)
errors.py      CheckpointError, CheckpointWarning, and what a failed write tells the user
=============  ==================================================================================
"""

from .api import check_writable, load, previous_path, save, verify
from .errors import CheckpointError, CheckpointWarning
from .integrity import FORMAT, FORMAT_VERSION
from .mapping import Checkpoint

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "Checkpoint",
    "save",
    "load",
    "verify",
    "previous_path",
    "check_writable",
    "FORMAT",
    "FORMAT_VERSION",
]
