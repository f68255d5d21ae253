"""The fast path: the log → the projection runtime, in large batches, without faust.

``reader.read_log`` fetches large batches with a manually assigned kafka-python consumer; a feeder
thread decodes them (``RecordDecoder``: typed decode, key check, unseal) while the runtime applies
the previous batch (its SQL drivers release the GIL).  The apply is the live worker's: the same
``ProjectionRuntime`` with the same positions, de-duplication, retries and dead letters.

Positions: every record advances its partition's stored offset, including poison records and
records a point-in-time filter leaves out (``Consumed(event=None)``), so a store built here
continues live from exactly where the build stopped.

Parallel builds (``workers > 1``): each worker process owns a subset of the partitions (a
person's events all live on one partition).  Where they write is the target's choice
(:class:`BuildTarget`): separate shard stores merged at the end (SQLite, one writer per file), or
the target itself under a per-worker alias of the projection name (PostgreSQL, ClickHouse), whose
positions are consolidated into the projection's own at the end.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from careledger.settings import Settings
from processors.domain.calendar import event_date
from processors.domain.model import Consumed
from processors.privacy import keystore_for
from processors.replay.reader import LogRecord, log_bounds, read_log
from processors.runtime.apply import ProjectionRuntime
from processors.runtime.contracts import Binding, Positions
from processors.runtime.decoding import RecordDecoder
from processors.runtime.heap import CollectorPause, settle_after_start
from processors.runtime.records import RawRecord
from processors.runtime.resident import ResidentWriter

log = logging.getLogger("careledger.replay")

DEFAULT_BATCH = 10_000
ALIAS_SEP = "~w"

Keep = Callable[[LogRecord, dict[str, Any]], bool]
"""Point-in-time filter: False leaves the event out (its position still advances)."""


class BuildTarget(Protocol):
    """Where a build writes (picklable: worker processes open it themselves)."""

    @property
    def projection(self) -> str: ...

    @property
    def private(self) -> bool:
        """Nothing but this build writes the store (a shard, a new shadow or snapshot)."""
        ...

    def open(self, settings: Settings, alias: str | None = None) -> Binding:
        """The target's store, migrated; positions kept under ``alias`` (default: the projection)."""
        ...

    def shards(self, count: int) -> Sequence[BuildTarget] | None:
        """``count`` empty stores to build in parallel and merge (None: write the target itself)."""
        ...

    def merge(self, settings: Settings, shards: Sequence[BuildTarget]) -> None:
        """Copy built shards into the target (which must still be empty), then remove them."""
        ...

    def drop_shards(self, shards: Sequence[BuildTarget]) -> None: ...

    def consolidate(self, settings: Settings, aliases: list[str]) -> None:
        """Make the workers' positions (kept under ``aliases``) the projection's own."""
        ...


@dataclass
class BuildStats:
    records: int = 0
    applied: int = 0
    poison: int = 0
    filtered: int = 0
    batches: int = 0
    seconds: float = 0.0
    by_version: dict[str, int] = field(default_factory=dict)
    workers: int = 1
    peak_rss_mb: float = 0.0  # the largest peak resident memory of a worker process (0: not measured)

    def add(self, other: BuildStats) -> None:
        self.records += other.records
        self.applied += other.applied
        self.poison += other.poison
        self.filtered += other.filtered
        self.batches += other.batches
        for k, v in other.by_version.items():
            self.by_version[k] = self.by_version.get(k, 0) + v
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------- filters
def until_date(day: str) -> Keep:
    """Only events whose business date (Asia/Shanghai) is on or before ``day`` (YYYY-MM-DD).  An
    event whose date cannot be computed (a year beyond 9999 once moved to Shanghai time) is left
    out rather than stopping the build; the live worker dead-letters it."""

    def keep(_rec: LogRecord, event: dict[str, Any]) -> bool:
        try:
            return event_date(event["occurred_at"]) <= day
        except (ValueError, OverflowError):
            log.warning("event %s: no business date for %r; left out", event.get("event_id"), event.get("occurred_at"))
            return False

    return keep


def until_time(epoch_ms: int) -> Keep:
    """Only records appended (Kafka timestamp) at or before ``epoch_ms``."""

    def keep(rec: LogRecord, _event: dict[str, Any]) -> bool:
        return rec.timestamp_ms <= epoch_ms

    return keep


def make_keep(spec: tuple[str, Any] | None) -> Keep | None:
    if spec is None:
        return None
    kind, value = spec
    if kind == "until_date":
        return until_date(value)
    if kind == "until_time":
        return until_time(int(value))
    raise ValueError(f"unknown filter {kind!r}")


# ----------------------------------------------------------------------------- one process
def _not_dead_lettered(raw: RawRecord, reasons: list[str]) -> None:
    """A replay does not dead-letter a poison record a second time (the live worker did)."""
    log.debug("poison at %d/%d left out: %s", raw.partition, raw.offset, "; ".join(reasons))


def runtime_for(settings: Settings, binding: Binding, *, private: bool = False) -> ProjectionRuntime[Any, Any, Any]:
    """The runtime of a build; ``private``: nothing else writes the store, so one that is empty
    now keeps its state resident (``processors/runtime/resident.py``)."""
    decoder = RecordDecoder(_not_dead_lettered, lambda create: keystore_for(settings, create))
    writer = binding.writer
    limit = settings.replay_resident_events
    if private and limit > 0 and binding.resident is not None and not writer.offsets():
        writer = ResidentWriter(writer, binding.resident(), limit)
    return ProjectionRuntime(binding.projection, writer, decoder)


def decode_records(decoder: RecordDecoder, records: list[LogRecord], keep: Keep | None,
                   stats: BuildStats) -> tuple[list[Consumed], dict[tuple[int, int], RawRecord]]:
    """Decode (as the live worker does), then leave out what ``keep`` refuses (position only)."""
    raws = [RawRecord(r.partition, r.offset, r.key, r.value, r.headers) for r in records]
    decoded = decoder.decode(raws)
    if keep is not None:
        for i, (rec, consumed) in enumerate(zip(records, decoded, strict=True)):
            if consumed.event is not None and not keep(rec, consumed.event):
                stats.filtered += 1
                decoded[i] = Consumed(consumed.partition, consumed.offset, None)
    stats.records += len(records)
    return decoded, {(r.partition, r.offset): r for r in raws}


def _batches(settings: Settings, starts: Positions, stops: Positions, batch_size: int,
             check_crcs: bool | None) -> Iterator[list[LogRecord]]:
    pending: list[LogRecord] = []
    for chunk in read_log(settings, starts, stops, max_records=batch_size, check_crcs=check_crcs):
        pending.extend(chunk)
        if len(pending) >= batch_size:
            yield pending
            pending = []
    if pending:
        yield pending


def replay_range(binding: Binding, settings: Settings, starts: Positions, stops: Positions, *,
                 batch_size: int = DEFAULT_BATCH, keep: Keep | None = None,
                 progress: Callable[[int], None] | None = None, check_crcs: bool | None = None,
                 private: bool = False) -> BuildStats:
    """Apply ``[starts[p], stops[p])`` of every partition through the runtime (one process):
    reading and decoding in a feeder thread, applying in this one.  ``private``: nothing else
    writes the store while this runs (see :func:`runtime_for`)."""
    runtime = runtime_for(settings, binding, private=private)
    stats = BuildStats()
    started = time.perf_counter()
    q: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop_flag = threading.Event()

    def feed() -> None:
        try:
            for raw in _batches(settings, starts, stops, batch_size, check_crcs):
                item = decode_records(runtime.decoder, raw, keep, stats)
                while not stop_flag.is_set():
                    try:
                        q.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop_flag.is_set():
                    return
            q.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the applying thread
            q.put(exc)

    feeder = threading.Thread(target=feed, name="replay-feed", daemon=True)
    feeder.start()
    try:
        resident = runtime.writer if isinstance(runtime.writer, ResidentWriter) else None
        with CollectorPause(resident is not None) as collector:  # processors/runtime/heap.py
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                records, raw_of = item
                stats.applied += runtime.apply_decoded(records, raw_of)
                stats.batches += 1
                if progress is not None:
                    progress(len(records))
                if resident is not None and not resident.resident:
                    collector.resume()  # the state was dropped: nothing large and long-lived any more
    finally:
        stop_flag.set()
        feeder.join(timeout=10)
    stats.poison = runtime.decoder.poison
    stats.seconds = time.perf_counter() - started
    return stats


def peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM`` (belongs to the process image, so a spawned
    worker does not inherit its parent's peak as ``ru_maxrss`` does across exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- parallel builds
def split_partitions(partitions: list[int], workers: int) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(max(1, min(workers, len(partitions) or 1)))]
    for i, p in enumerate(sorted(partitions)):
        groups[i % len(groups)].append(p)
    return [g for g in groups if g]


def _worker_main(settings: Settings, target: BuildTarget, alias: str | None, starts: Positions, stops: Positions,
                 batch_size: int, keep_spec: tuple[str, Any] | None, check_crcs: bool | None, progress_q: Any,
                 result_q: Any) -> None:
    try:
        binding = target.open(settings, alias)
        settle_after_start()  # a process of its own: the collector leaves the start-up heap alone
        try:
            stats = replay_range(binding, settings, starts, stops, batch_size=batch_size, keep=make_keep(keep_spec),
                                 progress=progress_q.put, check_crcs=check_crcs,
                                 # several workers under aliases share one store: not private to any of them
                                 private=target.private and alias is None)
        finally:
            binding.close()
        stats.peak_rss_mb = peak_rss_mb()
        result_q.put(("ok", alias, stats))
    except BaseException as exc:  # noqa: BLE001 - reported to the coordinator
        result_q.put(("error", alias, f"{type(exc).__name__}: {exc}"))


def parallel_build(settings: Settings, target: BuildTarget, starts: Positions, stops: Positions, *,
                   workers: int, batch_size: int = DEFAULT_BATCH, keep_spec: tuple[str, Any] | None = None,
                   progress: Callable[[int], None] | None = None, check_crcs: bool | None = None) -> BuildStats:
    """``workers`` processes, each owning some partitions, build ``target`` in parallel.

    Into SQLite, each worker builds a scratch shard that is merged into the target at the end
    (one writer per file); so does a single worker whose target is private (a new shadow or
    snapshot): a shard needs no WAL or fsync while it is built, and the merge builds the target's
    indexes by sorting (docs/performance.md)."""
    groups = split_partitions([p for p in stops if stops[p] > starts.get(p, 0)], workers)
    shards = target.shards(len(groups)) if len(groups) > 1 or (len(groups) == 1 and target.private) else None
    if shards is None and len(groups) <= 1:
        return _build_here(settings, target, starts, stops, batch_size, keep_spec, progress, check_crcs)
    if shards is not None:
        try:
            if len(shards) == 1:
                total = _build_here(settings, shards[0], starts, stops, batch_size, keep_spec, progress, check_crcs)
            else:
                jobs: list[tuple[BuildTarget, str | None, list[int]]] = [
                    (shard, None, group) for shard, group in zip(shards, groups, strict=True)]
                total = _run_workers(settings, jobs, starts, stops, batch_size, keep_spec, progress, check_crcs)
            merging = time.perf_counter()
            target.merge(settings, shards)
            log.info("merged %d shard(s) into %s in %.1fs", len(shards), target.projection,
                     time.perf_counter() - merging)
            total.seconds += time.perf_counter() - merging
            return total
        finally:
            target.drop_shards(shards)
    jobs = [(target, f"{target.projection}{ALIAS_SEP}{k}", group) for k, group in enumerate(groups)]
    total = _run_workers(settings, jobs, starts, stops, batch_size, keep_spec, progress, check_crcs)
    target.consolidate(settings, [alias for _t, alias, _g in jobs if alias is not None])
    return total


def _build_here(settings: Settings, target: BuildTarget, starts: Positions, stops: Positions, batch_size: int,
                keep_spec: tuple[str, Any] | None, progress: Callable[[int], None] | None,
                check_crcs: bool | None) -> BuildStats:
    """One build in this process (no worker to spawn)."""
    binding = target.open(settings)
    try:
        return replay_range(binding, settings, starts, stops, batch_size=batch_size, keep=make_keep(keep_spec),
                            progress=progress, check_crcs=check_crcs, private=target.private)
    finally:
        binding.close()


def _run_workers(settings: Settings, jobs: list[tuple[BuildTarget, str | None, list[int]]], starts: Positions,
                 stops: Positions, batch_size: int, keep_spec: tuple[str, Any] | None,
                 progress: Callable[[int], None] | None, check_crcs: bool | None) -> BuildStats:
    """One spawned process per job (target, alias, partitions); their stats summed."""
    ctx = mp.get_context("spawn")
    progress_q, result_q = ctx.Queue(), ctx.Queue()
    procs = []
    started = time.perf_counter()
    for k, (target, alias, group) in enumerate(jobs):
        proc = ctx.Process(
            target=_worker_main, name=f"replay-{target.projection}-{k}",
            args=(settings, target, alias, {p: starts.get(p, 0) for p in group}, {p: stops[p] for p in group},
                  batch_size, keep_spec, check_crcs, progress_q, result_q),
        )
        proc.start()
        procs.append(proc)
    total = BuildStats(workers=len(jobs))
    errors: list[str] = []
    done = 0
    try:
        while done < len(procs):
            try:
                n = progress_q.get(timeout=0.2)
                if progress is not None:
                    progress(n)
                continue
            except queue.Empty:
                pass
            while True:
                try:
                    status, alias, payload = result_q.get_nowait()
                except queue.Empty:
                    break
                done += 1
                if status == "ok":
                    total.add(payload)
                else:
                    errors.append(f"{alias}: {payload}")
            if done < len(procs) and not any(p.is_alive() for p in procs) and result_q.empty():
                errors.append("a replay worker exited without a result")
                break
        while True:  # the last progress ticks
            try:
                n = progress_q.get_nowait()
            except queue.Empty:
                break
            if progress is not None:
                progress(n)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    if errors:
        raise RuntimeError("parallel replay failed: " + "; ".join(errors))
    total.seconds = time.perf_counter() - started
    return total


# ----------------------------------------------------------------------------- positions
def next_positions(binding: Binding) -> Positions:
    """The next offset to apply per partition (absent: 0)."""
    return {p: o + 1 for p, o in binding.writer.offsets().items()}


def remaining(binding: Binding, ends: Positions, starts: Positions | None = None) -> int:
    nxt = next_positions(binding)
    return sum(max(0, end - nxt.get(p, (starts or {}).get(p, 0))) for p, end in ends.items())


__all__ = [
    "DEFAULT_BATCH",
    "BuildStats",
    "BuildTarget",
    "decode_records",
    "log_bounds",
    "make_keep",
    "next_positions",
    "parallel_build",
    "remaining",
    "replay_range",
    "runtime_for",
    "until_date",
    "until_time",
]
