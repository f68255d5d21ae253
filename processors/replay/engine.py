"""The fast path: log → decode (+ upcast) → ``store.apply_batch`` in large batches.

No faust, no consumer group, no per-event agent: ``reader.read_log`` fetches large batches,
``decode_consumed`` validates and upcasts (old versions come out current), and every
``batch_size`` records go to the store's bulk, effectively-once ``apply_batch``.  Reading and
decoding run in a feeder thread while the store writes (the SQL drivers release the GIL).

Positions: every record advances its partition's stored offset, including poison records and
records a point-in-time filter leaves out (``Consumed(event=None)``), so a store built here
continues live from exactly where the build stopped.

Parallel builds (``workers > 1``): each worker process owns a subset of the partitions and writes
the same target store under its own projection alias (``<projection>~w<k>``) - separate offsets
rows, separate aggregate-cache writer tokens and (PostgreSQL) separate advisory locks, which is
safe because a person's events all live on one partition.  When every worker is done the
projection's own offsets are written (positions-only records) and the alias rows removed.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from careledger.settings import Settings
from processors.domain.calendar import event_date
from processors.domain.model import Consumed
from processors.replay.reader import LogRecord, log_bounds, read_log
from processors.runner import is_transient
from schemas.validation import PoisonRecord, decode_consumed

log = logging.getLogger("careledger.replay")

DEFAULT_BATCH = 10_000
ALIAS_SEP = "~w"

Keep = Callable[[LogRecord, dict[str, Any]], bool]
"""Point-in-time filter: False leaves the event out (its position still advances)."""


@dataclass
class BuildStats:
    records: int = 0
    applied: int = 0
    poison: int = 0
    filtered: int = 0
    batches: int = 0
    seconds: float = 0.0
    by_version: dict[str, int] = field(default_factory=dict)
    bulk: bool = False  # written by the bulk loader (one transaction) rather than batch by batch

    def add(self, other: BuildStats) -> None:
        self.records += other.records
        self.applied += other.applied
        self.poison += other.poison
        self.filtered += other.filtered
        self.batches += other.batches
        for k, v in other.by_version.items():
            self.by_version[k] = self.by_version.get(k, 0) + v
        self.bulk = self.bulk or other.bulk

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------- filters
def until_date(day: str) -> Keep:
    """Only events whose business date (Asia/Shanghai) is on or before ``day`` (YYYY-MM-DD)."""

    def keep(_rec: LogRecord, event: dict[str, Any]) -> bool:
        return event_date(event["occurred_at"]) <= day

    return keep


def until_time(epoch_ms: int) -> Keep:
    """Only records appended (Kafka timestamp) at or before ``epoch_ms``."""

    def keep(rec: LogRecord, _event: dict[str, Any]) -> bool:
        return rec.timestamp_ms <= epoch_ms

    return keep


# ----------------------------------------------------------------------------- decode / apply
def decode_records(records: list[LogRecord], keep: Keep | None, stats: BuildStats,
                   settings: Settings | None = None) -> list[Consumed]:
    """Decode + upcast (``decode_consumed``), unseal as the live runner does, then filter."""
    events: list[dict[str, Any] | None] = []
    append = events.append
    for rec in records:
        try:
            append(decode_consumed(rec.value))
        except PoisonRecord:
            stats.poison += 1
            append(None)
    events = _unseal(events, stats, settings)
    out: list[Consumed] = []
    for rec, event in zip(records, events, strict=True):
        if event is not None and keep is not None and not keep(rec, event):
            stats.filtered += 1
            event = None
        out.append(Consumed(rec.partition, rec.offset, event))
    stats.records += len(records)
    return out


_KEYSTORES: dict[str, Any] = {}


def _keystore(settings: Settings | None, sealed: bool) -> Any:
    """The key store of ``settings`` (the live worker uses its process's settings the same way)."""
    from processors.privacy import default_keystore

    url = getattr(settings, "keystore_db_url", None) if settings is not None else None
    if url is None:
        return default_keystore(create=sealed)
    found = _KEYSTORES.get(url)
    if found is None:
        if not sealed and url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
            return None  # no key was ever made and nobody forgotten: nothing to unseal or erase
        from producers.keystore import KeyStore

        found = _KEYSTORES[url] = KeyStore.from_settings(settings)
    return found


def _unseal(events: list[dict[str, Any] | None], stats: BuildStats,
            settings: Settings | None) -> list[dict[str, Any] | None]:
    """Sealed fields restored, forgotten persons erased: exactly what ``BatchRunner.decode`` does
    (``processors.privacy``), so a replay never resurrects a forgotten person."""
    try:
        from processors.privacy import unseal_batch
    except ImportError:  # a tree without the privacy layer: nothing is sealed
        return events
    sealed = any(e is not None and "sealed" in e for e in events)
    keystore = _keystore(settings, sealed)
    if keystore is None:
        return events
    failed: set[int] = set()
    result = unseal_batch(events, keystore, on_error=lambda i, _exc: failed.add(i))
    stats.poison += len(failed)
    return list(result)


def _with_retry(fn: Callable[[], int], max_backoff_s: float = 30.0) -> int:
    delay = 0.5
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("store unavailable (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)


def apply_safely(store: Any, records: list[Consumed]) -> int:
    """``apply_batch`` with the live runner's policy: retry transient failures; bisect a
    deterministic one down to the event, which is then skipped (its position still advances).
    It was dead-lettered by the live worker already, so replay only logs it."""
    try:
        return _with_retry(lambda: store.apply_batch(records))
    except Exception as exc:  # noqa: BLE001 - deterministic: find the event
        if is_transient(exc):
            raise
        if len(records) == 1:
            rec = records[0]
            log.error("skipping event at %s/%s: %r", rec.partition, rec.offset, exc)
            return _with_retry(lambda: store.apply_batch([Consumed(rec.partition, rec.offset, None)]))
        mid = len(records) // 2
        return apply_safely(store, records[:mid]) + apply_safely(store, records[mid:])


def _batches(settings: Settings, starts: dict[int, int], stops: dict[int, int], batch_size: int,
             check_crcs: bool | None) -> Iterator[list[LogRecord]]:
    pending: list[LogRecord] = []
    for chunk in read_log(settings, starts, stops, max_records=batch_size, check_crcs=check_crcs):
        pending.extend(chunk)
        if len(pending) >= batch_size:
            yield pending
            pending = []
    if pending:
        yield pending


def replay_range(store: Any, settings: Settings, starts: dict[int, int], stops: dict[int, int], *,
                 batch_size: int = DEFAULT_BATCH, keep: Keep | None = None,
                 progress: Callable[[int], None] | None = None,
                 check_crcs: bool | None = None, bulk: bool = True) -> BuildStats:
    """Apply ``[starts[p], stops[p])`` of every partition to ``store`` (single process).

    When the store holds nothing of these partitions yet and offers a bulk loader (SQL stores:
    ``projections/sql/bulk.py``), the whole range is written in one transaction without per-batch
    reads; if that fails (a poison event the projector rejects, a lost connection) it is rolled
    back and the range is applied batch by batch, with the live runner's retry and bisect policy."""
    parts = sorted(p for p in stops if stops[p] > starts.get(p, 0))
    make_loader = getattr(store, "bulk_loader", None) if bulk else None
    loader = make_loader(parts) if make_loader is not None and parts else None
    if loader is None:
        return _replay(lambda batch: apply_safely(store, batch), lambda: None, settings, starts, stops,
                       batch_size, keep, progress, check_crcs)
    reported = 0

    def counted(n: int) -> None:
        nonlocal reported
        reported += n
        if progress is not None:
            progress(n)

    try:
        stats = _replay(loader.add, loader.finish, settings, starts, stops, batch_size, keep, counted, check_crcs)
    except Exception as exc:  # noqa: BLE001 - rolled back: nothing was written
        loader.abort()
        log.warning("bulk build failed (%r); applying the range batch by batch instead", exc)
        if progress is not None and reported:
            progress(-reported)
        return replay_range(store, settings, starts, stops, batch_size=batch_size, keep=keep, progress=progress,
                            check_crcs=check_crcs, bulk=False)
    stats.bulk = True
    return stats


def _replay(apply: Callable[[list[Consumed]], int], finish: Callable[[], None], settings: Settings,
            starts: dict[int, int], stops: dict[int, int], batch_size: int, keep: Keep | None,
            progress: Callable[[int], None] | None, check_crcs: bool | None) -> BuildStats:
    """Read and decode in a feeder thread while ``apply`` writes each batch; ``finish`` at the end."""
    stats = BuildStats()
    started = time.perf_counter()
    q: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop_flag = threading.Event()

    def feed() -> None:
        try:
            for raw in _batches(settings, starts, stops, batch_size, check_crcs):
                decoded = decode_records(raw, keep, stats, settings)
                while not stop_flag.is_set():
                    try:
                        q.put(decoded, timeout=0.5)
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
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            stats.applied += apply(item)
            stats.batches += 1
            if progress is not None:
                progress(len(item))
        finish()
    finally:
        stop_flag.set()
        feeder.join(timeout=10)
    stats.seconds = time.perf_counter() - started
    return stats


# ----------------------------------------------------------------------------- parallel builds
def split_partitions(partitions: list[int], workers: int) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(max(1, min(workers, len(partitions) or 1)))]
    for i, p in enumerate(sorted(partitions)):
        groups[i % len(groups)].append(p)
    return [g for g in groups if g]


@dataclass(frozen=True)
class StoreRef:
    """How a worker process opens the target store (everything picklable)."""

    projection: str
    url: str
    rules_path: str | None = None

    def open(self, settings: Settings, projection_name: str | None = None) -> Any:
        from processors.domain.rules_config import load_rules
        from projections.registry import projection_spec

        rules = load_rules(self.rules_path) if self.rules_path else load_rules(settings.rules_path)
        return projection_spec(self.projection).open(self.url, rules, settings.topics.events,
                                                     projection=projection_name or self.projection)


def _worker_main(settings: Settings, ref: StoreRef, alias: str, starts: dict[int, int],
                 stops: dict[int, int], batch_size: int, keep_spec: tuple[str, Any] | None,
                 check_crcs: bool | None, progress_q: Any, result_q: Any, bulk: bool = True) -> None:
    try:
        store = ref.open(settings, alias)
        try:
            store.migrate()  # a shard is a new file; elsewhere a no-op
            keep = make_keep(keep_spec)
            stats = replay_range(store, settings, starts, stops, batch_size=batch_size, keep=keep,
                                 progress=progress_q.put, check_crcs=check_crcs, bulk=bulk)
        finally:
            store.close()
        result_q.put(("ok", alias, stats))
    except BaseException as exc:  # noqa: BLE001 - reported to the coordinator
        result_q.put(("error", alias, f"{type(exc).__name__}: {exc}"))


def make_keep(spec: tuple[str, Any] | None) -> Keep | None:
    if spec is None:
        return None
    kind, value = spec
    if kind == "until_date":
        return until_date(value)
    if kind == "until_time":
        return until_time(int(value))
    raise ValueError(f"unknown filter {kind!r}")


def parallel_build(settings: Settings, ref: StoreRef, starts: dict[int, int], stops: dict[int, int], *,
                   workers: int, batch_size: int = DEFAULT_BATCH, keep_spec: tuple[str, Any] | None = None,
                   progress: Callable[[int], None] | None = None,
                   check_crcs: bool | None = None) -> BuildStats:
    """``workers`` processes, each owning some partitions, write ``ref``'s store in parallel.

    Where they write: PostgreSQL and ClickHouse take concurrent writers, so every worker writes
    the target under its own alias.  SQLite has one writer: when the target is still empty, each
    worker bulk-builds a shard file of its own and the shards are merged into the target at the
    end (``projections/sql/shards.py``); otherwise the workers take turns batch by batch."""
    groups = split_partitions([p for p in stops if stops[p] > starts.get(p, 0)], workers)
    store = ref.open(settings)
    try:
        store.migrate()
        if len(groups) <= 1:
            return replay_range(store, settings, starts, stops, batch_size=batch_size,
                                keep=make_keep(keep_spec), progress=progress, check_crcs=check_crcs)
        sharded = _can_shard(store, ref, groups)
    finally:
        store.close()
    if sharded:
        return _sharded_build(settings, ref, groups, starts, stops, batch_size=batch_size, keep_spec=keep_spec,
                              progress=progress, check_crcs=check_crcs)
    # a bulk build is one long transaction: with SQLite's one writer, parallel workers would wait
    # for each other's whole build, so there they go batch by batch
    bulk = not ref.url.startswith("sqlite")
    jobs = [(ref, f"{ref.projection}{ALIAS_SEP}{k}", group) for k, group in enumerate(groups)]
    total = _run_workers(settings, jobs, starts, stops, batch_size=batch_size, keep_spec=keep_spec,
                         progress=progress, check_crcs=check_crcs, bulk=bulk)
    consolidate_offsets(settings, ref, [alias for _ref, alias, _group in jobs])
    return total


def _can_shard(store: Any, ref: StoreRef, groups: list[list[int]]) -> bool:
    from projections.sql.bulk import can_bulk_load
    from projections.sql.shards import MAX_SHARDS, sqlite_file

    return (getattr(store, "dialect", None) == "sqlite" and sqlite_file(ref.url) is not None
            and len(groups) <= MAX_SHARDS and can_bulk_load(store, [p for g in groups for p in g]))


def _sharded_build(settings: Settings, ref: StoreRef, groups: list[list[int]], starts: dict[int, int],
                   stops: dict[int, int], *, batch_size: int, keep_spec: tuple[str, Any] | None,
                   progress: Callable[[int], None] | None, check_crcs: bool | None) -> BuildStats:
    from projections.sql.shards import merge_shards, remove_shard, shard_url

    shards = [shard_url(ref.url, k) for k in range(len(groups))]
    for url in shards:
        remove_shard(url)  # left over by a crashed build: start clean
    try:
        jobs = [(StoreRef(ref.projection, url, ref.rules_path), ref.projection, group)
                for url, group in zip(shards, groups, strict=True)]
        total = _run_workers(settings, jobs, starts, stops, batch_size=batch_size, keep_spec=keep_spec,
                             progress=progress, check_crcs=check_crcs, bulk=True)
        started = time.perf_counter()
        store = ref.open(settings)
        try:
            merge_shards(store, shards)
        finally:
            store.close()
        log.info("merged %d shards into %s in %.1fs", len(shards), ref.projection, time.perf_counter() - started)
        total.seconds += time.perf_counter() - started
        total.bulk = True
        return total
    finally:
        for url in shards:
            remove_shard(url)


def _run_workers(settings: Settings, jobs: list[tuple[StoreRef, str, list[int]]], starts: dict[int, int],
                 stops: dict[int, int], *, batch_size: int, keep_spec: tuple[str, Any] | None,
                 progress: Callable[[int], None] | None, check_crcs: bool | None, bulk: bool) -> BuildStats:
    """One spawned process per job (store, projection name, partitions); their stats summed."""
    ctx = mp.get_context("spawn")
    progress_q, result_q = ctx.Queue(), ctx.Queue()
    procs = []
    started = time.perf_counter()
    for k, (ref, alias, group) in enumerate(jobs):
        proc = ctx.Process(
            target=_worker_main, name=f"replay-{ref.projection}-{k}",
            args=(settings, ref, alias, {p: starts.get(p, 0) for p in group}, {p: stops[p] for p in group},
                  batch_size, keep_spec, check_crcs, progress_q, result_q, bulk),
        )
        proc.start()
        procs.append(proc)
    total = BuildStats()
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


def consolidate_offsets(settings: Settings, ref: StoreRef, aliases: list[str]) -> None:
    """Write the workers' final positions as the projection's own offsets, drop the aliases."""
    store = ref.open(settings)
    try:
        positions: dict[int, int] = {}
        for alias in aliases:
            worker_store = ref.open(settings, alias)
            try:
                positions.update(worker_store.offsets())
            finally:
                worker_store.close()
        own = store.offsets()
        moves = [Consumed(p, o, None) for p, o in sorted(positions.items()) if o > own.get(p, -1)]
        if moves:
            store.apply_batch(moves)
        engine = getattr(store, "engine", None)
        if engine is not None:
            from sqlalchemy import delete

            from projections.sql import tables as t

            po = t.projection_offsets
            with engine.begin() as conn:
                conn.execute(delete(po).where(po.c.projection.in_(aliases)))
    finally:
        store.close()


# ----------------------------------------------------------------------------- positions
def next_positions(store: Any) -> dict[int, int]:
    """The next offset to apply per partition (0 where nothing was applied)."""
    return {p: o + 1 for p, o in store.offsets().items()}


def remaining(store: Any, ends: dict[int, int], starts: dict[int, int] | None = None) -> int:
    nxt = next_positions(store)
    return sum(max(0, end - nxt.get(p, (starts or {}).get(p, 0))) for p, end in ends.items())


__all__ = [
    "BuildStats",
    "DEFAULT_BATCH",
    "StoreRef",
    "apply_safely",
    "decode_records",
    "log_bounds",
    "make_keep",
    "next_positions",
    "parallel_build",
    "remaining",
    "replay_range",
    "until_date",
    "until_time",
]
