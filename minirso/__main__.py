"""``python -m minirso inspect run.h5``: the command line of :mod:`minirso.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
