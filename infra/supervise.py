"""Keep one long-running command alive: ``python -m infra.supervise NAME -- CMD...``.

Restarts the command when it exits abnormally, waiting the project's backoff between restarts
(``careledger.backoff.Backoff``: a crash loop does not spin, and services that crashed together do
not come back in the same instant), and forwards SIGTERM/SIGINT to it, waiting for its graceful
shutdown.  ``make up`` runs processors and the API under it; ``make down`` stops the supervisor's
process group - the child is in it, so it is found even if the supervisor itself was SIGKILLed.
The service's lock (``infra.process.spawn``) is handed on to every child, so a second start of
the service refuses while either of them lives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from careledger.backoff import Backoff
from infra.process import LOCK_FD_ENV

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


def _inherited_lock() -> tuple[int, ...]:
    """The lock descriptor ``spawn`` gave us, if it is still open (children inherit it)."""
    try:
        fd = int(os.environ.get(LOCK_FD_ENV, ""))
        os.fstat(fd)
    except (ValueError, OSError):
        return ()
    return (fd,)


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python -m infra.supervise NAME -- CMD...", file=sys.stderr)
        return 2
    name = argv[0]
    cmd = argv[argv.index("--") + 1:]
    stopping = False
    child: subprocess.Popen[bytes] | None = None
    keep_fds = _inherited_lock()

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff = Backoff(BACKOFF_START_S, BACKOFF_MAX_S)
    failures = 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(cmd, pass_fds=keep_fds)
        code = child.wait()
        if stopping or code == 0:
            return code
        failures = 1 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
        delay = backoff.delay(failures)
        print(f"[supervise] {name} exited with {code}; restarting in {delay:.0f}s", file=sys.stderr, flush=True)
        time.sleep(delay)
        if stopping:  # asked to stop while waiting: do not start it again
            return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
