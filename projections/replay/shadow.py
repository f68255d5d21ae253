"""Shadow stores: where a rebuild or snapshot is written, how it is verified, handed over, dropped.

- SQLite: a new file ``$CARELEDGER_HOME/replay/<name>.sqlite3``;
- PostgreSQL: a new database ``cl_<name>`` on the active store's server (needs CREATEDB);
- ClickHouse: a new database ``cl_<name>`` on the active store's server.

Replay *owns* what it created (``owned`` in the registry) and ``drop`` deletes it (file / DROP
DATABASE).  A store it did not create (``--into URL``, or the settings' original store once
retired) only has its read-model tables emptied: the database, and anything else in it (the API's
token tables live in the settings' SQL database), stays.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from clickhouse_driver import Client
from sqlalchemy import Connection, and_, or_, select, update

from careledger.settings import Settings
from processors.replay.engine import BuildStats, replay_range
from projections import store_kind
from projections.binding import StoreRef
from projections.clickhouse.store import parse_clickhouse_url
from projections.sql import tables as t
from projections.sql.outbox import adopt_outbox
from projections.sql.rows import ALERT_STATE_COLUMNS, alert_from_row, alert_message
from projections.sql.store import SqlStore
from projections.sql.writer import chunks
from projections.store import ProjectionStore
from schemas.jsontext import dumps_compact, loads

log = logging.getLogger("careledger.replay")



def db_identifier(name: str) -> str:
    ident = "cl_" + re.sub(r"[^a-z0-9_]", "_", name.lower())
    return ident[:63]


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def shadow_url(settings: Settings, active_url: str, name: str) -> str:
    """A URL for a new store named ``name`` next to ``active_url`` (created empty)."""
    kind = store_kind(active_url)
    if kind == "sqlite":
        directory = settings.home / "replay"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.sqlite3"
        if path.exists():
            raise FileExistsError(f"{path} exists already")
        return f"sqlite:///{path}"
    database = db_identifier(name)
    if kind == "postgresql":
        _pg_admin(active_url, f'CREATE DATABASE "{database}"')
        return _with_database(active_url, database)
    return _with_database(active_url, database)  # clickhouse: the store creates it


def _pg_admin(url: str, statement: str) -> None:
    import psycopg

    parts = urlsplit(url.replace("+psycopg", ""))
    conninfo = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement)  # identifiers come from db_identifier (checked characters)


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def drop_store(settings: Settings, entry: dict[str, Any]) -> str:
    """Delete an owned store, or empty the read-model tables of one replay did not create."""
    url, kind = entry["url"], store_kind(entry["url"])
    if entry.get("owned"):
        if kind == "sqlite":
            path = sqlite_path(url)
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(path) + suffix).unlink()
            return f"deleted {path}"
        database = urlsplit(url).path.lstrip("/")
        if not re.fullmatch(r"cl_[a-z0-9_]{1,60}", database):
            raise ValueError(f"refusing to drop database {database!r}: not created by replay")
        if kind == "postgresql":
            _pg_admin(url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        else:
            client = Client(database="default", **parse_clickhouse_url(url)["kwargs"])
            try:
                client.execute(f"DROP DATABASE IF EXISTS `{database}`")
            finally:
                client.disconnect()
        return f"dropped database {database}"
    store = StoreRef(entry["projection"], url).open_store(settings)
    try:
        store.drop_read_models()
    finally:
        store.close()
    return "dropped the read-model tables (the database itself was not created by replay)"


# ----------------------------------------------------------------------------- verification
def _offsets(store: ProjectionStore) -> dict[int, int]:
    return dict(store.offsets())


def verify_against(shadow: ProjectionStore, active: ProjectionStore, settings: Settings, *, attempts: int = 10,
                   batch_size: int = 10_000, progress: Any = None) -> dict[str, Any]:
    """Compare the shadow with the active store at the same log positions.

    The active store keeps moving while the live worker runs: bring the shadow to the active
    store's positions, compare counts of every kind (+ event count), and accept the comparison
    only if the active store did not move meanwhile; retry otherwise.  Returns
    ``{"status": "equal" | "different" | "not comparable", ...}``."""
    last_reason = ""
    for _ in range(attempts):
        before = _offsets(active)
        if not before:
            return {"status": "not comparable", "reason": "the active store is empty"}
        mine = _offsets(shadow)
        behind = {p: o + 1 for p, o in before.items() if o > mine.get(p, -1)}
        if behind:
            starts = {p: mine.get(p, -1) + 1 for p in behind}
            replay_range(shadow.binding(), settings, starts, behind, batch_size=batch_size, progress=progress)
            mine = _offsets(shadow)
        if any(o > before.get(p, -1) for p, o in mine.items()):
            last_reason = "the active store is behind the shadow"
            time.sleep(0.5)
            continue
        theirs_fp, mine_fp = active.fingerprint(), shadow.fingerprint()
        if _offsets(active) != before:
            last_reason = "the active store moved during the comparison"
            continue
        if theirs_fp == mine_fp:
            return {"status": "equal", "positions": sum(o + 1 for o in before.values()), "compared": mine_fp}
        diff = {k: {"active": theirs_fp.get(k), "shadow": mine_fp.get(k)}
                for k in set(theirs_fp) | set(mine_fp) if theirs_fp.get(k) != mine_fp.get(k)}
        return {"status": "different", "diff": diff}
    return {"status": "not comparable", "reason": last_reason or "no stable moment"}


# ----------------------------------------------------------------------------- SQL hand-over
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def hand_over_sql(shadow: SqlStore, old: SqlStore | None) -> dict[str, int]:
    """Before a SQL shadow becomes active:

    1. its alert outbox holds one row per alert change in history, which the old store's relay
       already published (or will: rows it has not sent yet stay unsent): it takes over the old
       store's outbox, seqs and all, and continues far above its last seq
       (``projections/sql/outbox.py`` ``adopt_outbox``), so an SSE client's ``Last-Event-ID`` and a
       webhook subscription's starting seq mean the same in the new store - no repeat, no gap.
       Persons with events *beyond the old store's positions* get their current alerts queued
       again (at least once; subscribers de-duplicate on ``alert_id``), so no alert change is lost
       when the shadow ran ahead of the old store.  Without an old store the shadow's own history
       is marked sent;
    2. people's acknowledgements and resolutions are ``alert.handled`` events, replayed like any
       other; the old store's are copied too, for actions recorded before those events existed;
    3. alerts the shadow sees otherwise than the old store - raised only by edited rules, or with
       another severity or status - are queued too (:func:`_queue_changed_alerts`), and open
       alerts the edited rules no longer raise are queued as withdrawn: subscribers learn what a
       rebuild with edited rules found, and an unchanged rebuild queues nothing;
    4. what was published when - need-warning notices, when each alert was first raised and
       escalated - is wall-clock state, not in the log: copied from the old store, so the new one
       never publishes a warning or an escalation a second time.
    """
    ob, a = t.alert_outbox, t.alerts
    now = _now()
    stats = {"outbox_marked_sent": 0, "alerts_requeued": 0, "acknowledgements_copied": 0, "changed_alerts_queued": 0,
             "withdrawn_alerts_queued": 0}
    old_positions = _offsets(old) if old is not None else {}
    queued: set[str] = set()
    with shadow.engine.begin() as conn:
        if old is None:
            stats["outbox_marked_sent"] = conn.execute(
                update(ob).where(ob.c.sent_at.is_(None)).values(sent_at=now)).rowcount or 0
        else:
            stats.update(adopt_outbox(conn, old.engine, now))
            rows = []
            ids = sorted(_persons_beyond(conn, old_positions))
            for i in range(0, len(ids), 500):
                for row in conn.execute(select(*[a.c[c] for c in ALERT_STATE_COLUMNS])
                                        .where(a.c.person_id.in_(ids[i:i + 500]))):
                    rows.append(_outbox_row(alert_message(alert_from_row(row)), now))
            if rows:
                conn.execute(ob.insert(), rows)
            stats["alerts_requeued"] = len(rows)
            queued.update(r["alert_id"] for r in rows)
    if old is not None:
        with old.engine.connect() as conn:
            acks = conn.execute(select(a.c.alert_id, a.c.acknowledged_by, a.c.acknowledged_at,
                                       a.c.resolved_by, a.c.resolved_at)
                                .where(or_(a.c.acknowledged_by.is_not(None), a.c.resolved_by.is_not(None)))).all()
        if acks:
            with shadow.engine.begin() as conn:
                for aid, ack_by, ack_at, res_by, res_at in acks:
                    values: dict[str, Any] = {"acknowledged_by": ack_by, "acknowledged_at": ack_at}
                    if res_by is not None:
                        values.update(resolved_by=res_by, resolved_at=res_at, status="resolved")
                    stats["acknowledgements_copied"] += conn.execute(
                        update(a).where(a.c.alert_id == aid).values(**values)).rowcount or 0
        stats.update(_queue_changed_alerts(old, shadow, queued, now))
        stats.update(_copy_publication_state(old, shadow))
    return stats


def _queue_changed_alerts(old: SqlStore, shadow: SqlStore, queued: set[str], now: str) -> dict[str, int]:
    """Queue every alert of the shadow whose message differs from the old store's (or that the old
    store does not have), unless it is queued already.  Compared as messages (what subscribers
    receive), after the acknowledgements were copied, so only what the rules and the log decide
    differs.  Persons with events that the old store applied and the shadow has not yet are left
    out: the live worker applies those events to the new store after the swap, and
    :func:`settle_left_out` then compares their alerts with what subscribers last received -
    queuing the shadow's older state now would move subscribers backwards.
    An open alert the edited rules no longer raise leaves ``/api/alerts``: subscribers get it once
    more, ``resolved`` and ``"withdrawn": true`` (:func:`withdrawn_message`), so nobody keeps
    working on it; one already resolved is not sent again."""
    a, ob = t.alerts, t.alert_outbox
    cols = [a.c[c] for c in ALERT_STATE_COLUMNS]
    with old.engine.connect() as conn:
        before = {row[0]: alert_message(alert_from_row(row)) for row in conn.execute(select(*cols))}
        # read after the alerts: a change the old store made since is by an event found here
        behind = _persons_beyond(conn, _offsets(shadow))
    rows = []
    with shadow.engine.begin() as conn:
        kept: set[str] = set()
        for row in conn.execute(select(*cols)):
            message = alert_message(alert_from_row(row))
            kept.add(message["alert_id"])
            if message["alert_id"] in queued or message["person_id"] in behind:
                continue
            if before.get(message["alert_id"]) != message:
                rows.append(_outbox_row(message, now))
        changed = len(rows)
        rows.extend(_outbox_row(withdrawn_message(message, now), now) for aid, message in sorted(before.items())
                    if aid not in kept and message["status"] == "open" and message["person_id"] not in behind)
        if rows:
            conn.execute(ob.insert(), rows)
    if changed:
        log.info("hand-over: %d alert(s) differ from the old store's (edited rules?) and are queued for subscribers",
                 changed)
    if len(rows) > changed:
        log.info("hand-over: %d open alert(s) of the old store are no longer raised (edited rules?): "
                 "subscribers are told they are withdrawn", len(rows) - changed)
    return {"changed_alerts_queued": changed, "withdrawn_alerts_queued": len(rows) - changed}


def withdrawn_message(message: dict[str, Any], now: str) -> dict[str, Any]:
    """The last message of an open alert that a rebuild no longer raises: ``resolved`` (a
    subscriber that upserts by ``alert_id`` closes it), marked ``withdrawn`` with the time of the
    hand-over, as an escalation is marked ``escalated``."""
    return {**message, "status": "resolved", "withdrawn": True, "withdrawn_at": now}


#: fields of an alert message that say how it was published, not what the alert is
PUBLICATION_FIELDS = ("escalated", "escalated_at", "withdrawn", "withdrawn_at", "outbox_seq")


def settle_left_out(new: SqlStore, old: SqlStore, handed_at: dict[int, int]) -> dict[str, int]:
    """After the swap, once the live worker has applied to the new store every event the old one
    holds: the alerts of the persons the hand-over left out (events beyond ``handed_at``, the
    shadow's positions at the hand-over) are compared with the last message subscribers received
    for each, and what differs is queued - the alert as it is now, or its withdrawal.  The live
    worker queues only what its own events change, so before this an alert that edited rules
    changed or dropped, of a person the old worker was still applying events for during the
    hand-over, was never sent."""
    a = t.alerts
    cols = [a.c[c] for c in ALERT_STATE_COLUMNS]
    with new.engine.connect() as conn:
        persons = sorted(_persons_beyond(conn, handed_at))
        current = {m["alert_id"]: m for part in chunks(persons)
                   for m in (alert_message(alert_from_row(r)) for r in conn.execute(select(*cols)
                                                                                    .where(a.c.person_id.in_(part))))}
    with old.engine.connect() as conn:
        ids = set(current).union(*(conn.scalars(select(a.c.alert_id).where(a.c.person_id.in_(part)))
                                   for part in chunks(persons)))
    now = _now()
    rows, withdrawn = [], 0
    with new.engine.begin() as conn:
        sent = _last_sent(conn, sorted(ids))
        for aid in sorted(ids):
            last = sent.get(aid)
            if aid in current:
                if last != current[aid]:
                    rows.append(_outbox_row(current[aid], now))
            elif last is not None and last["status"] == "open":
                rows.append(_outbox_row(withdrawn_message(last, now), now))
                withdrawn += 1
        if rows:
            conn.execute(t.alert_outbox.insert(), rows)
    if rows:
        log.info("after the swap: %d alert change(s) of %d person(s) the hand-over left to the live worker "
                 "are queued for subscribers (%d withdrawn)", len(rows), len(persons), withdrawn)
    return {"left_out_persons": len(persons), "left_out_changes_queued": len(rows) - withdrawn,
            "left_out_withdrawn_queued": withdrawn}


def _last_sent(conn: Connection, alert_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The last alert message in the outbox for each of ``alert_ids``, without its publication
    fields: what a subscriber holds for it."""
    ob = t.alert_outbox
    last: dict[str, dict[str, Any]] = {}
    for part in chunks(alert_ids):
        for aid, body in conn.execute(select(ob.c.alert_id, ob.c.body)
                                      .where(ob.c.channel == "alert", ob.c.alert_id.in_(part)).order_by(ob.c.seq)):
            last[aid] = {k: v for k, v in loads(body).items() if k not in PUBLICATION_FIELDS}
    return last


def _persons_beyond(conn: Connection, positions: dict[int, int]) -> set[str]:
    """Persons with events in the store ``conn`` reads that lie beyond ``positions`` (another
    store's): after its offset in a partition, or in a partition it has not read at all."""
    L = t.ledger
    beyond = [L.c.partition.not_in(list(positions)), *(and_(L.c.partition == p, L.c.offset > o)
                                                         for p, o in positions.items())]
    return {pid for pid in conn.scalars(select(L.c.person_id).where(or_(*beyond)).distinct()) if pid}


def _outbox_row(message: dict[str, Any], now: str) -> dict[str, Any]:
    """An alert outbox row for the relay to send ``message`` (unsent)."""
    return {"alert_id": message["alert_id"], "body": dumps_compact(message), "created_at": now}


def _copy_publication_state(old: SqlStore, shadow: SqlStore) -> dict[str, int]:
    n, a = t.warning_notices, t.alerts
    with old.engine.connect() as conn:
        notices = [dict(r._mapping) for r in conn.execute(select(n))]
        raised = conn.execute(select(a.c.alert_id, a.c.raised_at, a.c.escalated_at)
                              .where(a.c.raised_at.is_not(None))).all()
    with shadow.engine.begin() as conn:
        conn.execute(n.delete())
        if notices:
            conn.execute(n.insert(), notices)
        for aid, raised_at, escalated_at in raised:
            conn.execute(update(a).where(a.c.alert_id == aid).values(raised_at=raised_at, escalated_at=escalated_at))
    return {"warning_notices_copied": len(notices), "alert_raised_times_copied": len(raised)}


def summary(stats: BuildStats) -> str:
    memory = f"; worker peak RSS {stats.peak_rss_mb:,.0f} MB" if stats.peak_rss_mb else ""
    return (f"{stats.records} records in {stats.seconds:.1f}s ({stats.rate:,.0f}/s, {stats.workers} worker(s)): "
            f"{stats.applied} applied, {stats.poison} poison, {stats.filtered} left out{memory}")
