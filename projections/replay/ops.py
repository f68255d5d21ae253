"""The replay operations behind ``careledger replay ...`` (usable from Python and tests)."""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect

from careledger.retrying import call_retrying
from careledger.settings import Settings
from processors.domain.rules_config import load_rules
from processors.replay.engine import (
    DEFAULT_BATCH,
    BuildStats,
    log_bounds,
    next_positions,
    parallel_build,
    replay_range,
)
from projections.binding import StoreRef
from projections.registry import Registry, RegistryError, projection_names, projection_spec, redact_url
from projections.replay.shadow import (
    drop_store,
    hand_over_sql,
    settle_left_out,
    shadow_url,
    summary,
    verify_against,
)
from projections.sql.store import SqlStore
from projections.sql.tables import alert_outbox
from projections.store import ProjectionStore

log = logging.getLogger("careledger.replay")

Say = Callable[[str], None]

HAND_OVER_ATTEMPTS = 6  # the active store is waited for ~15 s (careledger/backoff.py) before a swap is refused
OUTBOX_TABLE = alert_outbox.name
SETTLE_WAIT_S = 60.0  # how long a swap waits for the live worker to follow it (it polls the registry)
SETTLE_POLL_S = 0.5


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ev", unit_scale=True, dynamic_ncols=True, disable=not enabled,
                smoothing=0.1, mininterval=0.5)


def _quiet(_: str) -> None:
    pass


def _catch_up(settings: Settings, store: ProjectionStore, starts: dict[int, int], bar: Any, batch_size: int,
              check_crcs: bool | None, rounds: int = 20) -> BuildStats:
    """Follow the live end of the log until a round brings less than one batch."""
    total = BuildStats()
    binding = store.binding()
    for _ in range(rounds):
        _, ends = log_bounds(settings)
        nxt = next_positions(binding)
        begin = {p: max(nxt.get(p, 0), starts.get(p, 0)) for p in ends}
        todo = {p: e for p, e in ends.items() if e > begin[p]}
        if not todo:
            break
        bar.total += sum(todo[p] - begin[p] for p in todo)
        bar.refresh()
        got = replay_range(binding, settings, begin, todo, batch_size=batch_size, progress=bar.update,
                           check_crcs=check_crcs)
        total.add(got)
        if got.records < batch_size:
            break
    return total


def _rules_path(settings: Settings, rules: str | None) -> str:
    return str(rules) if rules else str(settings.rules_path)


# ----------------------------------------------------------------------------- rebuild
def rebuild(settings: Settings, projection: str, *, into: str | None = None, name: str | None = None,
            workers: int = 1, batch_size: int = DEFAULT_BATCH, swap: bool = True, force: bool = False,
            progress: bool = True, check_crcs: bool | None = None, say: Say = print) -> dict[str, Any]:
    """Build ``projection`` from offset 0 into a shadow store, catch up, verify, swap."""
    registry = Registry(settings)
    projection_spec(projection)  # an unknown projection fails here, before anything is built
    active_url = registry.active_url(projection)
    name = name or f"{projection}-{_stamp()}"
    url = into or shadow_url(settings, active_url, name)
    ref = StoreRef(projection, url, _rules_path(settings, None), private=into is None)  # a new shadow: ours alone
    store = ref.open_store(settings)
    try:
        if into and store.offsets() and not force:
            raise RegistryError(f"{into} already holds a projection (use --force to continue into it)")
        registry.register(name, url, projection, "building", owned=into is None, rules_path=ref.rules_path)
        say(f"rebuilding {projection} into {name} ({'new' if into is None else 'given'} store)")
        starts, ends = log_bounds(settings)
        bar = _bar(sum(max(0, ends[p] - starts[p]) for p in ends), f"rebuild {projection}", progress)
        try:
            stats = parallel_build(settings, ref, starts, ends, workers=workers, batch_size=batch_size,
                                   progress=bar.update, check_crcs=check_crcs)
            say(f"fast path: {summary(stats)} with {workers} worker(s)")
            caught = _catch_up(settings, store, starts, bar, batch_size, check_crcs)
        finally:
            bar.close()
        if caught.records:
            say(f"caught up with the live log: {caught.records} more records")
        stats.add(caught)
        verification = _verify(settings, registry, projection, store, batch_size)
        say(f"verification against the active store: {verification['status']}"
            + (f" ({verification.get('reason')})" if verification.get("reason") else ""))
        result: dict[str, Any] = {"name": name, "url": url, "stats": stats, "verification": verification,
                                  "swapped": False, "previous": None}
        registry.update(name, records=stats.records, applied=stats.applied, poison=stats.poison,
                        verification=verification["status"])
        if verification["status"] == "different" and not force:
            say(f"NOT swapped: the shadow differs from the active store: {verification['diff']}; "
                f"inspect it, then `careledger replay swap --projection {projection} {name}` or drop it")
            return result
        if swap:
            result["previous"] = _swap_with_hand_over(registry, projection, name, store, say)
            result["swapped"] = True
            say(f"swapped: {projection} now reads {name}; previous store {result['previous'] or '-'} kept "
                f"until `careledger replay drop {result['previous']}`")
        return result
    finally:
        store.close()


def _swap_with_hand_over(registry: Registry, projection: str, name: str, store: ProjectionStore, say: Say) -> str:
    """The swap of both paths, in order: 1. the hand-over (before the registry write: subscribers'
    positions must mean the same in the new store from its first read); 2. the registry write;
    3. the settling of the persons the hand-over left to the live worker (after it: the worker
    applies their last events to the new store only once it follows the swap).  Returns the
    previous store's name."""
    handed_at = store.offsets() if isinstance(store, SqlStore) else {}
    handed_over = _hand_over(registry, projection, store, say)
    previous = registry.swap(projection, name)
    if handed_over and previous and isinstance(store, SqlStore):
        _settle(registry, previous, store, handed_at, say)
    return previous


def _settle(registry: Registry, previous: str, store: SqlStore, handed_at: dict[int, int], say: Say) -> None:
    """Wait (at most ``SETTLE_WAIT_S``) until the live worker has applied to the new store every
    event the previous one holds, then compare the left-out persons' alerts with what subscribers
    last received (``shadow.settle_left_out``)."""
    wait_s = SETTLE_WAIT_S
    old = registry.open_named(previous)
    try:
        if not isinstance(old, SqlStore):
            return
        deadline = time.monotonic() + wait_s
        while not _holds_all(store.offsets(), old.offsets()):
            if time.monotonic() >= deadline:
                say(f"after the swap: the live worker did not apply the events {previous} holds beyond the new "
                    f"store within {wait_s:.0f} s (is it running?); the alerts of persons it was applying "
                    "during the hand-over were not compared with what subscribers last received")
                return
            time.sleep(SETTLE_POLL_S)
        say(f"after the swap: {settle_left_out(store, old, handed_at)}")
    finally:
        old.close()


def _holds_all(new: dict[int, int], old: dict[int, int]) -> bool:
    return all(new.get(p, -1) >= o for p, o in old.items())


def _hand_over(registry: Registry, projection: str, store: ProjectionStore, say: Say) -> bool:
    """Before ``store`` becomes the active store of ``projection``: a SQL store takes over the
    active one's outbox, acknowledgements and publication state (``shadow.hand_over_sql``).  Both
    swaps do it - the rebuild's and one by hand (a shadow that verified ``different``, or a
    retired store swapped back) - or subscribers' positions would point at other rows."""
    if not isinstance(store, SqlStore):
        return False
    old = _active_to_hand_over(registry, projection)
    try:
        handed = hand_over_sql(store, old)
    finally:
        if old is not None:
            old.close()
    say(f"hand-over: {handed}")
    return old is not None


def _active_to_hand_over(registry: Registry, projection: str) -> SqlStore | None:
    """The active store a SQL shadow takes over from; None only when there is none (no store
    configured, or one without tables: a first build).  One that does not answer is waited for
    (``HAND_OVER_ATTEMPTS``), then the swap is refused: before, any error counted as "no store",
    the shadow kept its own outbox seqs, and every SSE client's ``Last-Event-ID`` and webhook
    subscription's start seq lay far above them - nothing was delivered until the seqs caught up."""

    def probe() -> SqlStore | None:
        try:
            old = registry.open_active(projection)
        except RegistryError:
            return None
        try:
            if not isinstance(old, SqlStore) or not inspect(old.engine).has_table(OUTBOX_TABLE):
                old.close()
                return None
            old.offsets()  # answers
            return old
        except BaseException:
            old.close()
            raise

    try:
        return call_retrying(probe, f"the active {projection} store (hand-over)", attempts=HAND_OVER_ATTEMPTS)
    except Exception as exc:  # noqa: BLE001 - any failure: refuse rather than swap without a hand-over
        raise RegistryError(f"the active {projection} store did not answer for the hand-over "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); not swapped - "
                            f"try `careledger replay swap --projection {projection} NAME` again when it answers"
                            ) from exc


def _open_active(registry: Registry, projection: str) -> Any:
    try:
        store = registry.open_active(projection)
        store.offsets()  # exists and answers
        return store
    except Exception as exc:  # noqa: BLE001 - no active store to compare with / hand over from
        log.info("no usable active %s store: %s", projection, exc)
        return None


def _verify(settings: Settings, registry: Registry, projection: str, store: Any, batch_size: int) -> dict[str, Any]:
    active = _open_active(registry, projection)
    if active is None:
        return {"status": "not comparable", "reason": "no active store"}
    try:
        return verify_against(store, active, settings, batch_size=batch_size)
    except Exception as exc:  # noqa: BLE001 - an active store without tables, etc.
        return {"status": "not comparable", "reason": f"{type(exc).__name__}: {exc}"}
    finally:
        active.close()


# ----------------------------------------------------------------------------- backfill
def backfill(settings: Settings, projection: str, *, workers: int = 1, batch_size: int = DEFAULT_BATCH,
             progress: bool = True, check_crcs: bool | None = None, say: Say = print) -> BuildStats:
    """Fill the active store of ``projection`` (a new projection's store) from its own positions
    (offset 0 when new) to the end of the log; ``careledger process --projection`` continues."""
    registry = Registry(settings)
    url = registry.active_url(projection)
    ref = StoreRef(projection, url, _rules_path(settings, None))
    store = ref.open_store(settings)
    try:
        log_starts, ends = log_bounds(settings)
        nxt = next_positions(store.binding())
        starts = {p: max(nxt.get(p, 0), log_starts.get(p, 0)) for p in ends}
        bar = _bar(sum(max(0, ends[p] - starts[p]) for p in ends), f"backfill {projection}", progress)
        try:
            stats = parallel_build(settings, ref, starts, ends, workers=workers, batch_size=batch_size,
                                   progress=bar.update, check_crcs=check_crcs)
            stats.add(_catch_up(settings, store, starts, bar, batch_size, check_crcs))
        finally:
            bar.close()
        say(f"backfilled {projection}: {summary(stats)}; keep it live with "
            f"`careledger process --projection {projection}`")
        return stats
    finally:
        store.close()


# ----------------------------------------------------------------------------- snapshots
def parse_until_offset(spec: str, ends: dict[int, int]) -> dict[int, int]:
    """``N`` (every partition, offsets <= N) or ``P:N,P:N`` (the partitions named; others: none)."""
    spec = spec.strip()
    if re.fullmatch(r"\d+", spec):
        return {p: min(e, int(spec) + 1) for p, e in ends.items()}
    stops = {p: 0 for p in ends}
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
        if m is None:
            raise ValueError(f"--until-offset: expected N or P:N[,P:N...], got {spec!r}")
        p, n = int(m.group(1)), int(m.group(2))
        if p not in ends:
            raise ValueError(f"--until-offset: no partition {p}")
        stops[p] = min(ends[p], n + 1)
    return stops


def parse_until_time(text: str) -> int:
    """RFC 3339 (with offset; a bare date means its end in Asia/Shanghai) → epoch milliseconds."""
    from zoneinfo import ZoneInfo

    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        moment = datetime.fromisoformat(text + "T23:59:59.999").replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("--until-time needs an offset, e.g. 2024-03-31T23:59:59+08:00")
    return int(moment.timestamp() * 1000)


def snapshot(settings: Settings, name: str, *, projection: str = "sql", until: str | None = None,
             until_offset: str | None = None, until_time: str | None = None, rules: str | None = None,
             into: str | None = None, workers: int = 1, batch_size: int = DEFAULT_BATCH,
             progress: bool = True, check_crcs: bool | None = None, say: Say = print) -> dict[str, Any]:
    """Build a named point-in-time store: business date ``until`` (events dated on or before it),
    or a log position (``until_offset``) or append time (``until_time``); ``rules``: another
    rules TOML (copied next to the snapshot so later edits of the file do not change it).  A build
    that fails leaves its registry entry ``failed`` (with the reason), never ``building``."""
    if sum(x is not None for x in (until, until_offset, until_time)) != 1:
        raise ValueError("give exactly one of --until, --until-offset, --until-time")
    if until is not None:
        until = datetime.strptime(until, "%Y-%m-%d").date().isoformat()
    registry = Registry(settings)
    try:
        registry.entry(name)
        raise RegistryError(f"a store named {name!r} already exists (drop it first)")
    except RegistryError as exc:
        if "already exists" in str(exc):
            raise
    rules_src = _rules_path(settings, rules)
    load_rules(Path(rules_src))  # a broken TOML fails now, not half-way
    rules_copy = settings.home / "replay" / f"{name}.rules.toml"
    rules_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rules_src, rules_copy)
    url = into or shadow_url(settings, registry.active_url(projection), name)
    starts, ends = log_bounds(settings)
    keep_spec: tuple[str, Any] | None = None
    stops = dict(ends)
    if until is not None:
        keep_spec = ("until_date", until)
    elif until_time is not None:
        keep_spec = ("until_time", parse_until_time(until_time))
    else:
        stops = parse_until_offset(until_offset or "", ends)
    meta = {"until": until, "until_offset": until_offset, "until_time": until_time,
            "rules_path": str(rules_copy), "rules_source": str(rules_src), "status": "building",
            "log_end": {str(p): e for p, e in sorted(ends.items())}}
    registry.register(name, url, projection, "snapshot", owned=into is None, **meta)
    ref = StoreRef(projection, url, str(rules_copy), private=into is None)  # a new snapshot: ours alone
    bar = _bar(sum(max(0, stops[p] - starts.get(p, 0)) for p in stops), f"snapshot {name}", progress)
    try:
        stats = parallel_build(settings, ref, starts, stops, workers=workers, batch_size=batch_size,
                               keep_spec=keep_spec, progress=bar.update, check_crcs=check_crcs)
    except BaseException as exc:
        registry.update(name, status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        bar.close()
    registry.update(name, status="ready", records=stats.records, applied=stats.applied, filtered=stats.filtered)
    say(f"snapshot {name} ready: {summary(stats)}; query it with ?snapshot={name}")
    return {"name": name, "url": url, "stats": stats}


# ----------------------------------------------------------------------------- swap / drop / list
def swap(settings: Settings, projection: str, name: str, say: Say = print) -> str:
    """Activate a registered store by hand, with the same hand-over as a rebuild's swap."""
    registry = Registry(settings)
    registry.check_swap(projection, name)
    store = registry.open_named(name)
    try:
        previous = _swap_with_hand_over(registry, projection, name, store, say)
    finally:
        store.close()
    say(f"{projection} now reads {name}; previous: {previous or '-'}")
    return previous


def drop(settings: Settings, name: str, say: Say = print) -> str:
    registry = Registry(settings)
    entry = registry.entry(name)
    if registry.active_name(entry["projection"]) == name:
        raise RegistryError(f"{name!r} is the active {entry['projection']} store; swap another in first")
    what = drop_store(settings, entry)
    registry.remove(name)
    rules_copy = settings.home / "replay" / f"{name}.rules.toml"
    if entry.get("role") == "snapshot" and rules_copy.exists():
        rules_copy.unlink()
    say(f"dropped {name}: {what}")
    return what


def listing(settings: Settings) -> list[dict[str, Any]]:
    registry = Registry(settings)
    rows = []
    for projection in projection_names():
        if registry.active_name(projection) is None:
            try:
                url = registry.active_url(projection)
            except RegistryError:
                continue
            rows.append({"name": f"({projection} default)", "projection": projection, "role": "active",
                         "url": redact_url(url)})
    for entry in registry.stores():
        rows.append({**entry, "url": redact_url(entry["url"])})
    return rows
