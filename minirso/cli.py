"""The ``minirso`` command line (also ``python -m minirso``).

::

    minirso inspect run.h5                  versions, layers and parameter counts, optimizer state, history
    minirso inspect run.h5 --verify         checksums only: prints "OK run.h5" (exit 0) or the problem (exit 1)
    minirso inspect run.h5 --plot run.png   learning curves of the history's "eval" table (needs matplotlib)
    minirso inspect run.h5 --data-only      (with any of the above) accept attributes added after saving,
                                            e.g. with h5py: checkpoint.load(..., verify="data")
    minirso --version                       prints "minirso <version>"

Exit codes: 0 success; 1 the checkpoint cannot be used (ONE line on stderr: the
:class:`~minirso.checkpoint.CheckpointError` message, no traceback); 2 a usage error, or ``--plot``
without matplotlib (the message says how to install it: :data:`PLOT_INSTALL_HINT`).

The text ``minirso inspect`` prints is formatted here and only here (:func:`describe`); in Python,
``print(minirso.cli.describe(minirso.checkpoint.load("run.h5")))`` shows the same.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings

import numpy

from . import checkpoint

__all__ = ["main", "describe", "PLOT_INSTALL_HINT"]

# minirso is installed from a clone (README), so the plot extra is installed from there; plain matplotlib works too.
PLOT_INSTALL_HINT = 'pip install matplotlib (or, in the minirso repository, pip install -e ".[plot]")'


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on --help (0) and usage errors (2): return it instead
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # `minirso inspect run.h5 | head`: the reader left; stop quietly, as Unix tools do
        # (the Python docs' recipe, "Note on SIGPIPE": point stdout at devnull so the exit flush cannot fail again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


def _parser():
    parser = argparse.ArgumentParser(prog="minirso", description="minirso: gradient-free training tools")
    parser.add_argument("--version", action="version", version=f"minirso {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    p = sub.add_parser(
        "inspect",
        help="show what a checkpoint holds, verify it, or plot its learning curves",
        description="Show what a minirso checkpoint holds (an HDF5 file written by minirso.checkpoint.save).",
    )
    p.add_argument("path", help="the checkpoint file, e.g. run.h5")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--verify",
        action="store_true",
        help="only check format and every checksum: 'OK <path>' and exit 0, or the problem and exit 1",
    )
    mode.add_argument("--plot", metavar="PNG", help="also plot the history's eval table (accuracy, loss) to this file")
    p.add_argument(
        "--data-only",
        action="store_true",
        help="check only what minirso wrote (every dataset and its attributes), accepting attributes "
        "added after saving, e.g. a note added with h5py (checkpoint.load(..., verify='data'))",
    )
    p.set_defaults(run=_inspect)
    return parser


def _version() -> str:
    """The installed distribution's version; the package's ``__version__`` when it runs uninstalled (a bare clone)."""
    from importlib import metadata

    try:
        return metadata.version("minirso")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def _inspect(args) -> int:
    level = "data" if args.data_only else "all"
    try:
        if args.verify:
            checkpoint.verify(args.path, verify=level)
            print(f"OK {args.path}")
            return 0
        ckpt = checkpoint.load(args.path, verify=level)
    except checkpoint.CheckpointError as err:
        print(err, file=sys.stderr)
        return 1
    print(describe(ckpt))
    return _plot(ckpt, args.plot) if args.plot else 0


# ---- the text -----------------------------------------------------------------------------------
def describe(ckpt) -> str:
    """A checkpoint (what :func:`minirso.checkpoint.load` returns) as the text ``minirso inspect`` prints:
    file and versions, layers with parameter counts, optimizer, history (last and best accuracy), meta."""
    parts = [
        _describe_file(ckpt),
        _describe_model(ckpt.model),
        _describe_optimizer(ckpt.optimizer),
        _describe_history(ckpt.history),
        _describe_meta(ckpt.meta),
    ]
    return "\n\n".join(p for p in parts if p)


def _describe_file(ckpt) -> str:
    a = ckpt.attrs
    try:
        size = f" ({os.path.getsize(ckpt.path)} bytes)"
    except OSError:
        size = ""
    versions = (
        f"minirso {a.get('minirso_version')}, numpy {a.get('numpy_version')}, cupy {a.get('cupy_version')}, "
        f"h5py {a.get('h5py_version')} (HDF5 {a.get('hdf5_version')}), Python {a.get('python_version')}"
    )
    rows = [
        ("file", f"{ckpt.path}{size}"),
        ("format", f"{a.get('format')} version {a.get('format_version')}"),
        ("created", a.get("created")),
        ("versions", versions),
        ("backend", f"{a.get('backend')} (model seed {a.get('seed')})"),
    ]
    return "\n".join(f"{k:10s} {v}" for k, v in rows)


def _describe_model(model) -> str:
    """One row per layer (sub-layers of blocks indented) with its parameter count, and the total."""
    counts = {}
    for g in model.param_groups:  # a tensor counts for its layer and every block around it
        parts = g.name.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            counts[".".join(parts[:i])] = counts.get(".".join(parts[:i]), 0) + g.size
    lines = [f"model: {model.num_params} parameters", f"  {'layer':24s} {'type':16s} {'parameters':>10s}"]
    for path, layer, _ in model.named_layers():
        depth = path.count(".")
        name = "  " * depth + path.rsplit(".", 1)[-1]
        lines.append(f"  {name:24s} {type(layer).__name__:16s} {counts.get(path, 0):10d}")
    lines.append(f"  {'total':24s} {'':16s} {model.num_params:10d}")
    return "\n".join(lines)


def _describe_optimizer(state_dict) -> str:
    if state_dict is None:
        return "optimizer: none"
    lines = [f"optimizer: {state_dict['type']}", "  hyperparameters:"]
    lines += [f"    {k:22s} {_brief(v)}" for k, v in state_dict["hyperparameters"].items()]
    lines.append("  state:")
    for k, v in state_dict["state"].items():
        # RSO's own counter is the cycles completed; everything the user reads numbers cycles from 1
        note = "  (cycles completed)" if (state_dict["type"], k) == ("RSO", "cycle") else ""
        lines.append(f"    {k:22s} {_brief(v)}{note}")
    return "\n".join(lines)


def _describe_history(history) -> str:
    if history is None:
        return "history: none"
    lines = ["history:"]
    for name, value in history.items():
        if _is_table(value):
            lines += _describe_table(name, value)
        else:
            lines.append(f"  {name:22s} {_brief(value)}")
    return "\n".join(lines)


def _describe_table(name, rows) -> list:
    """Rows, the last cycle / step, and last and best of each accuracy column."""
    head = f"  {name:22s} table, {len(rows)} rows"
    for key in ("cycle", "step"):
        if rows and key in rows[-1]:
            head += f", last {key} {_brief(rows[-1][key])}"
    lines = [head]
    for key in rows[0] if rows else {}:
        if "accuracy" in key:
            values = _numbers([r.get(key) for r in rows])
            best = max((v for v in values if not math.isnan(v)), default=math.nan)
            lines.append(f"      {key:22s} last {_brief(values[-1])}  best {_brief(best)}")
    return lines


def _describe_meta(meta) -> str:
    if not meta:
        return "meta: none"
    return "meta:\n" + "\n".join(f"  {k:22s} {_shorten(repr(v))}" for k, v in meta.items())


def _is_table(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _numbers(cells) -> list:
    """Table cells as floats (None and non-numbers become NaN) for summaries and plots."""
    out = []
    for c in cells:
        try:
            out.append(float(c) if c is not None else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def _brief(v) -> str:
    """A short text for one value: scalars as they are, arrays as dtype, shape, min and max."""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, numpy.ndarray):
        return _brief_array(v)
    if _is_table(v):
        return f"table, {len(v)} rows; columns: {', '.join(map(str, v[0]))}"
    if isinstance(v, (list, tuple)):
        return f"{len(v)} values" + (f", last {_brief(v[-1])}" if v else "")
    if isinstance(v, dict):
        return f"{len(v)} entries: {', '.join(map(str, v))}"
    return _shorten(repr(v) if isinstance(v, str) else str(v))


def _brief_array(a) -> str:
    text = f"{a.dtype} array {a.shape}"
    if a.size and a.dtype.kind in "biuf":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN arrays
            lo, hi = numpy.nanmin(a), numpy.nanmax(a)
        text += f", min {_brief(lo.item())} max {_brief(hi.item())}"
    return text


def _shorten(text, limit=70) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- the plot -----------------------------------------------------------------------------------
def _eval_table(history):
    """``(name, rows)`` of the table to plot: "eval" if it is one, else the first with accuracy or loss."""
    history = history or {}
    candidates = [("eval", history["eval"])] if _is_table(history.get("eval")) else []
    candidates += [
        (k, v) for k, v in history.items() if _is_table(v) and any("accuracy" in c or "loss" in c for c in v[0])
    ]
    return candidates[0] if candidates else (None, None)


def _plot(ckpt, out) -> int:
    """Accuracy and loss columns of the eval table against its cycle or step column."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"minirso inspect --plot needs matplotlib: {PLOT_INSTALL_HINT}", file=sys.stderr)
        return 2
    name, rows = _eval_table(ckpt.history)
    if rows is None:
        print(f"{ckpt.path}: the history has no table with accuracy or loss columns to plot", file=sys.stderr)
        return 1
    xkey = next((k for k in ("cycle", "step") if k in rows[0]), None)
    xs = _numbers([r.get(xkey) for r in rows]) if xkey else list(range(len(rows)))
    panels = [(what, [k for k in rows[0] if what in k]) for what in ("accuracy", "loss")]
    panels = [p for p in panels if p[1]]
    if not panels:
        print(f"{ckpt.path}: history[{name!r}] has no accuracy or loss columns to plot", file=sys.stderr)
        return 1
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(6.4, 3.2 * len(panels)), squeeze=False)
    for ax, (what, keys) in zip(axes[:, 0], panels):
        for k in keys:
            ax.plot(xs, _numbers([r.get(k) for r in rows]), marker="o", markersize=3, label=k)
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[-1, 0].set_xlabel(xkey or "row")
    fig.suptitle(f"{os.path.basename(ckpt.path)}: history[{name!r}]")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")
    return 0
