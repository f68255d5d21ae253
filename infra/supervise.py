"""Keep one long-running command alive: ``python -m infra.supervise NAME -- CMD...``.

Restarts the command when it exits abnormally (with backoff, so a crash loop does not spin) and
forwards SIGTERM/SIGINT to it, waiting for its graceful shutdown.  ``make up`` runs processors
and the API under it; ``make down`` stops the supervisor's process group.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python -m infra.supervise NAME -- CMD...", file=sys.stderr)
        return 2
    name = argv[0]
    cmd = argv[argv.index("--") + 1:]
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff = BACKOFF_START_S
    while True:
        started = time.monotonic()
        child = subprocess.Popen(cmd)
        code = child.wait()
        if stopping or code == 0:
            return code
        if time.monotonic() - started > HEALTHY_AFTER_S:
            backoff = BACKOFF_START_S
        print(f"[supervise] {name} exited with {code}; restarting in {backoff:.0f}s", file=sys.stderr, flush=True)
        time.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
