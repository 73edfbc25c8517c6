"""``python -m redo_lib ...``: the ``redo`` command (see :mod:`redo_lib.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
