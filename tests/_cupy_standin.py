"""The CuPy stand-in (tests/standin/cupy) loaded under a private module name, for tests that run its kernel
classes on NumPy data whatever the backend.  Never as ``cupy``: on a GPU machine that name is the real CuPy, and
a second ``cupy`` would change what ``minirso.cupy_available()`` sees."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NAME = "_minirso_cupy_standin"


def load():
    """The stand-in package (its own counters and modes: ``load()._standin``)."""
    if NAME not in sys.modules:
        root = Path(__file__).parent / "standin" / "cupy"
        spec = importlib.util.spec_from_file_location(
            NAME, root / "__init__.py", submodule_search_locations=[str(root)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[NAME]
            raise
    return sys.modules[NAME]
