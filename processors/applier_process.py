"""The applier process's entry point: ``python -m processors.applier_process FD PROJECTION``.

``ProcessApplier`` (processors/applier.py) starts this with one end of a socket pair as ``FD``;
the projection name is there only so ``ps`` shows which worker's applier a process is.  Kept
apart from processors/applier.py so that the classes pickled across the pipe live in a module
that both processes import under its own name (``-m`` runs a module as ``__main__``)."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from processors.applier import serve


def main(argv: list[str]) -> int:
    serve(Connection(int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
