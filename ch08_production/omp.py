"""Keep OpenMP worker threads from spin-waiting in a server process (book 8.5.3 常见性能问题).

PyTorch's CPU kernels run on an OpenMP thread pool (libgomp). Between parallel regions its workers
*spin* for a while instead of sleeping, which is free in a benchmark loop that does nothing else, and
ruinous in a server, where the event loop, the HTTP parser and the engine thread need those same cores
between two kernels: on this 2-core machine one engine step went from ~55 ms to ~1 s behind the server.
``OMP_WAIT_POLICY=PASSIVE`` makes idle workers sleep. libgomp reads it once, when torch loads it, so
the only reliable place to set it is the process environment at start: :func:`reexec_with_passive_omp`
re-executes the module with it set, unless the variable is already there (set
``OMP_WAIT_POLICY=ACTIVE`` to reproduce the "before" of the 8.5 walk-through).
"""

from __future__ import annotations

import os
import sys

ENV = "OMP_WAIT_POLICY"


def reexec_with_passive_omp(module: str) -> None:
    """Replace this process with ``python -m module <same args>`` under ``OMP_WAIT_POLICY=PASSIVE``."""
    if ENV in os.environ:
        return
    os.environ[ENV] = "PASSIVE"
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])
