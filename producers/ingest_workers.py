"""A large JSON Lines file ingested by worker processes that each check, seal and publish a share.

Why: kafka-python's ``send`` costs about as much CPU per event as the check of the line, and one
Python process runs one of them at a time (one GIL).  With one process sending, ingest reached
half of the raw producer on two cores (docs/performance.md); with every worker sending its own
share, the sends run in parallel too.

How the result stays the one of a single process, step by step:

1. The ingest process reads the file in chunks and routes every line by its **Kafka key**
   (:func:`route_key`: the pseudonymised person - ``id_number`` is pseudonymised here for the
   route only - or the employer of a ``job.posted``) to the worker that owns the key's partition.
   All events of one person go through one worker and one producer, in input order; Kafka keeps
   the order of one producer's sends to a partition, so a person's events keep their order.  A
   partition is written by one producer only, so its batches are as full as one sender's (with
   every worker writing every partition the broker spent 11.4 µs of CPU per event, 8.3 µs with
   this routing: docs/performance.md).
2. A repeated ``event_id`` is routed to the worker that got its first occurrence, which keeps the
   first valid one and drops the rest, as one process does.
3. A worker checks its lines (:func:`producers.line_check.check_line`), refuses erased persons,
   drops repeats, seals and sends (:meth:`producers.pipeline.IngestRun.admit`, its own
   :class:`~producers.publisher.EventPublisher`), and answers each line with a verdict: accepted,
   duplicate, blank, or the reasons it was rejected.
4. The ingest process takes the answers chunk by chunk in input order and counts them; it
   dead-letters and reports rejected lines itself (it still holds their bytes), so the report
   and the dead-letter topic are in input order too.
5. At the end every worker flushes its producer and says which sends failed; any failure fails
   the run (exit 1), as one process's flush would.

Workers are started with ``spawn`` (the ingest process already runs a Kafka client's I/O thread;
forking a process with threads can deadlock the child) and receive the HMAC secret through their
start arguments (a pipe between our own processes, never a file or the command line).  At most
``CHUNKS_IN_FLIGHT_PER_WORKER`` chunks per worker are in flight: memory stays bounded.

One case the routing cannot keep exact: an ``event_id`` whose first occurrence was *rejected*
and whose later, valid occurrence names another person is sent by the first one's worker, so
its order relative to that person's other events is not guaranteed.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from careledger.settings import Settings
from producers.line_check import Numbered, check_line, rejected_record, without_bom
from producers.partitioner import MAX_CACHED_KEYS, key_hash
from producers.pipeline import IngestRun, Verdict
from producers.pseudonym import InvalidIdNumber, Pseudonymiser
from producers.publisher import EventPublisher, PublishError
from producers.state_errors import StateWriteError, state_write_error
from schemas import enums
from schemas.input_rules import InputRules
from schemas.validation import InvalidJson, parse_json_line

CHUNKS_IN_FLIGHT_PER_WORKER = 4
WORKER_POLL_S = 1.0  # how often a waiting ingest process checks that its workers still live

#: a worker's answer for one line: a verdict, None for a blank line, or the reasons of a rejection
Answer = Verdict | list[str] | None


class WorkerFailed(RuntimeError):
    """A worker process failed (its traceback is in the message) or died."""


# ---- step 1: routing -------------------------------------------------------------------------
class _RouteFields(msgspec.Struct):
    """The few envelope fields a route needs; the rest of the line is skipped unparsed."""

    event_id: Any = None
    type: Any = None
    person_id: Any = None
    id_number: Any = None
    payload: msgspec.Raw = msgspec.Raw(b"null")


class _Employer(msgspec.Struct):
    employer: Any = None


_ROUTE = msgspec.json.Decoder(_RouteFields)
_EMPLOYER = msgspec.json.Decoder(_Employer)


def _fields(line: bytes) -> _RouteFields | None:
    """The route's fields, from a light decode; the full parser decides when that one cannot
    (it must agree with the check, which uses the full parser); None for a line that is no object."""
    try:
        return _ROUTE.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass
    try:
        obj = parse_json_line(line.decode("utf-8"))
    except (UnicodeDecodeError, InvalidJson):
        return None
    if not isinstance(obj, dict):
        return None
    payload = obj.get("payload")
    employer = payload.get("employer") if isinstance(payload, dict) else None
    return _RouteFields(obj.get("event_id"), obj.get("type"), obj.get("person_id"), obj.get("id_number"),
                        msgspec.Raw(msgspec.json.encode({"employer": employer})))


def route_key(line: bytes, pseudonymiser: Pseudonymiser) -> tuple[str | None, str | None]:
    """(the Kafka key, the event_id) of a line, as far as they can be told; None where not: such
    a line is rejected by its check, so any worker may take it."""
    fields = _fields(line)
    if fields is None:
        return None, None
    event_id = fields.event_id if isinstance(fields.event_id, str) else None
    if fields.type in enums.PERSONLESS_TYPES:
        try:
            employer = _EMPLOYER.decode(fields.payload).employer
        except msgspec.DecodeError:
            return None, event_id
        return (employer if isinstance(employer, str) else None), event_id
    if isinstance(fields.id_number, str):
        try:
            return pseudonymiser.person_id(fields.id_number), event_id
        except InvalidIdNumber:
            return None, event_id
    return (fields.person_id if isinstance(fields.person_id, str) else None), event_id


class Router:
    """Step 1 and 2: which worker takes a line.  Worker ``w`` owns the partitions ``p`` with
    ``p % workers == w``, for the partition kafka-python's default partitioner gives the key."""

    def __init__(self, pseudonymiser: Pseudonymiser, workers: int, partitions: int) -> None:
        self._pseudonymiser = pseudonymiser
        self._workers = workers
        self._partitions = partitions
        self._owner: dict[str, int] = {}  # key -> worker (murmur2 is pure Python: once per key)
        self._first: dict[str, int] = {}  # event_id -> the worker that got its first occurrence

    def route(self, number: int, line: bytes | None) -> int:
        if line is None:
            return number % self._workers  # an over-long line: rejected, by any worker
        key, event_id = route_key(without_bom(number, line), self._pseudonymiser)
        worker = self._worker(key) if key is not None else number % self._workers
        if event_id is None:
            return worker
        return self._first.setdefault(event_id, worker)

    def _worker(self, key: str) -> int:
        worker = self._owner.get(key)
        if worker is None:
            if len(self._owner) >= MAX_CACHED_KEYS:
                self._owner.clear()
            partition = key_hash(key.encode("utf-8", "surrogatepass")) % self._partitions
            worker = self._owner[key] = partition % self._workers
        return worker


# ---- step 3 and 5: the worker ----------------------------------------------------------------
@dataclass(frozen=True)
class WorkerArgs:
    """What a worker process starts from (pickled once, through its start pipe)."""

    settings: Settings
    secret: bytes
    limit: int
    rules: InputRules
    publish: bool  # False: a dry run, check only


def _serve(index: int, args: WorkerArgs, inbox: Any, outbox: Any) -> None:
    """A worker's life: answer chunks until told to stop, then flush and say what failed."""
    try:
        publisher = EventPublisher(args.settings) if args.publish else None
        sealer = publisher.sealer if publisher is not None else None
        # no report and no rejects here: the ingest process rejects, with the line's bytes (step 4)
        run = IngestRun(Pseudonymiser(args.secret, sealer), publisher, None, "", args.rules)
        while (task := inbox.get()) is not None:
            seq, lines = task
            outbox.put(("answers", index, seq, [_answer(run, args, line) for line in lines]))
        failures: list[str] = []
        if publisher is not None:
            try:
                publisher.close()
            except PublishError as exc:
                failures = exc.failures
        outbox.put(("done", index, failures))
    except BaseException as exc:  # noqa: BLE001 - reported to the ingest process, which fails the run
        outbox.put(("failed", index, state_write_error(exc), traceback.format_exc()))


def _answer(run: IngestRun, args: WorkerArgs, numbered: Numbered) -> Answer:
    number, line, consumed = numbered
    outcome = check_line(number, line, consumed, run.pseudonymiser, args.limit, args.rules)
    if outcome is None or isinstance(outcome, list):
        return outcome
    return run.admit(outcome)


# ---- step 4: the ingest process's side -----------------------------------------------------------
class WorkerPool:
    """``workers`` processes; send them chunks, take the answers back in input order."""

    def __init__(self, args: WorkerArgs, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._outbox: Any = context.Queue()
        self._inboxes: list[Any] = [context.Queue() for _ in range(workers)]
        self._processes = [context.Process(target=_serve, args=(i, args, inbox, self._outbox), daemon=True,
                                           name=f"careledger-ingest-{i}")
                           for i, inbox in enumerate(self._inboxes)]
        for process in self._processes:
            process.start()
        self.workers = workers
        self._answers: dict[tuple[int, int], list[Answer]] = {}
        self._done: dict[int, list[str]] = {}

    def submit(self, seq: int, routed: list[list[Numbered]]) -> None:
        for worker, lines in enumerate(routed):
            if lines:
                self._inboxes[worker].put((seq, lines))

    def answers(self, seq: int, worker: int) -> list[Answer]:
        while (seq, worker) not in self._answers:
            self._receive()
        return self._answers.pop((seq, worker))

    def finish(self) -> list[str]:
        """Stop the workers after their flush; the sends that failed, from all of them."""
        for inbox in self._inboxes:
            inbox.put(None)
        while len(self._done) < self.workers:
            self._receive()
        for process in self._processes:
            process.join()
        return [failure for index in sorted(self._done) for failure in self._done[index]]

    def stop(self) -> None:
        """After a failure or an interruption: end the workers without waiting for their work."""
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(timeout=10)

    def _receive(self) -> None:
        try:
            message = self._outbox.get(timeout=WORKER_POLL_S)
        except queue.Empty:
            for index, process in enumerate(self._processes):
                if not process.is_alive() and index not in self._done:
                    raise WorkerFailed(f"ingest worker {index} died (exit code {process.exitcode})") from None
            return
        kind, index, *rest = message
        if kind == "answers":
            seq, answers = rest
            self._answers[(seq, index)] = answers
        elif kind == "done":
            self._done[index] = rest[0]
        else:
            reason, text = rest
            if reason is not None:
                raise StateWriteError(reason)
            raise WorkerFailed(f"ingest worker {index} failed:\n{text}")


def ingest_in_workers(chunks: Iterable[list[Numbered]], run: IngestRun, args: WorkerArgs, workers: int,
                      done: Callable[[list[Numbered]], None] = lambda chunk: None) -> list[str]:
    """Steps 1-5 over ``chunks``; ``run`` counts, dead-letters and reports in input order and
    ``done`` hears of every finished chunk (progress).  Returns the sends that failed."""
    publisher = run.publisher
    partitions = publisher.event_partitions() if publisher is not None else args.settings.event_partitions
    router = Router(run.pseudonymiser, workers, partitions)
    pool = WorkerPool(args, workers)
    try:
        pending: deque[tuple[int, list[Numbered], list[int]]] = deque()
        window = workers * CHUNKS_IN_FLIGHT_PER_WORKER
        for seq, chunk in enumerate(chunks):
            routes = [router.route(number, line) for number, line, _ in chunk]
            routed: list[list[Numbered]] = [[] for _ in range(workers)]
            for numbered, worker in zip(chunk, routes, strict=True):
                routed[worker].append(numbered)
            pool.submit(seq, routed)
            pending.append((seq, chunk, routes))
            if len(pending) >= window:
                _settle(pool, run, *pending.popleft(), done)
        while pending:
            _settle(pool, run, *pending.popleft(), done)
        return pool.finish()
    except BaseException:
        pool.stop()
        raise


def _settle(pool: WorkerPool, run: IngestRun, seq: int, chunk: list[Numbered], routes: list[int],
            done: Callable[[list[Numbered]], None]) -> None:
    answers = {worker: iter(pool.answers(seq, worker)) for worker in sorted(set(routes))}
    for (number, line, consumed), worker in zip(chunk, routes, strict=True):
        answer = next(answers[worker])
        if answer is not None:
            run.settle(number, answer, _rejected(number, line, consumed))
    done(chunk)


def _rejected(number: int, line: bytes | None, consumed: int) -> Callable[[], object]:
    return lambda: rejected_record(number, line, consumed)

