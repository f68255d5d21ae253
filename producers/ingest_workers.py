"""Line checks of a large JSON Lines file in worker processes, while the ingest process publishes.

Why: parsing, validating and pseudonymising a line costs more CPU than kafka-python's send of it,
and one Python process cannot do both at once (one GIL).  Workers get chunks of lines and return
:func:`producers.line_check.check_line`'s outcomes - compact tuples, not event objects, so little
crosses the process boundary; the ingest process takes them in input order (erased persons,
de-duplication, sealing, sends), so the result is the same as checking in one process.

Workers are started with ``spawn`` (the ingest process already runs the Kafka client's I/O
thread, and forking a process with threads can deadlock the child) and receive the HMAC secret
through their start arguments (a pipe between our own processes, never a file or the command
line).  At most ``window`` chunks are in flight: memory stays bounded on a file of any size.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from producers.line_check import LineOutcome, Numbered, check_line
from producers.pipeline import NO_RULES
from producers.pseudonym import Pseudonymiser
from schemas.input_rules import InputRules

CHUNKS_IN_FLIGHT_PER_WORKER = 4

_pseudonymiser: Pseudonymiser | None = None
_limit: int = 0
_rules: InputRules = NO_RULES


def _start(secret: bytes, limit: int, rules: InputRules) -> None:
    global _pseudonymiser, _limit, _rules  # noqa: PLW0603 - one per worker process, set once at its start
    _pseudonymiser = Pseudonymiser(secret)  # no sealer: the key store stays with the ingest process
    _limit = limit
    _rules = rules


def _check_chunk(lines: list[Numbered]) -> list[LineOutcome]:
    assert _pseudonymiser is not None, "worker not started"
    return [check_line(number, line, consumed, _pseudonymiser, _limit, _rules) for number, line, consumed in lines]


def check_in_workers(chunks: Iterable[list[Numbered]], pseudonymiser: Pseudonymiser, workers: int,
                     limit: int, rules: InputRules = NO_RULES) -> Iterator[tuple[list[Numbered], list[LineOutcome]]]:
    """Yield each chunk with its outcomes, in input order, checked by ``workers`` processes."""
    window = max(2, workers * CHUNKS_IN_FLIGHT_PER_WORKER)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start,
                             initargs=(pseudonymiser.secret, limit, rules)) as pool:
        pending: deque[tuple[list[Numbered], Future[list[LineOutcome]]]] = deque()
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(_check_chunk, chunk)))
                if len(pending) >= window:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        except BaseException:  # the run failed or was interrupted: drop the queued work
            pool.shutdown(wait=True, cancel_futures=True)
            raise
