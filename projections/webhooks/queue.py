"""The durable delivery queue: rows of ``webhook_deliveries`` and their state transitions.

A delivery is created ``pending`` with ``next_attempt_at`` = now.  A worker *claims* due rows by
setting a lease (``lease_until``) in a write transaction — only rows still pending and not leased
are claimed, so two deliverer processes never attempt the same delivery at once.  An attempt ends
in exactly one of:

- ``delivered`` (2xx): ``UPDATE ... WHERE status = 'pending'``; a delivery id is marked delivered
  at most once, whatever races or redeliveries happen (the table is the idempotent state).  A row
  cancelled while its POST was in flight (subscription deleted, person forgotten) that was
  answered 2xx is marked delivered too - by the claim that still holds its lease only: the log
  says what was sent;
- back to ``pending`` with ``attempts + 1``, ``last_error`` and ``next_attempt_at`` = now + backoff;
- ``failed`` when the delivery is older than the retry policy's maximum age (given up, kept in the log).

A claimed row is sent only while :meth:`DeliveryQueue.still_pending` finds it pending and leased by
that claim (a read before each POST): a cancel after the claim stops the rest of the batch.

Enqueueing is ``INSERT ... ON CONFLICT DO NOTHING`` on ``delivery_id``: a Kafka redelivery of the
same alert change (same ``outbox_seq``) cannot create a second delivery.

Every POST discloses a person's data to the subscriber, whatever its answer, so its audit row is
written *before* it (write-ahead): :meth:`DeliveryQueue.claim` writes one row per claimed delivery
that names a person (``projections/audit_tables.py``: ``webhook:<subscription>``, role
``subscriber``, status 0 - no answer yet) in the claim's transaction, and :meth:`DeliveryQueue.record`
sets the HTTP status of each POST made, or deletes the row of a claimed delivery that was not
POSTed (cancelled before its turn, given up, the lease running out), with the outcomes.  A process
that dies between a POST and that write leaves the row at 0 ("sent, no answer recorded") - also
when the delivery is then cancelled and never sent again, which the audit row written with the
outcome (before 2026-12-04) missed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine

from projections.api_migrations import upgrade as upgrade_api_tables
from projections.audit_tables import NO_ANSWER, SUBSCRIBER, audit_log, safe_person_id
from projections.webhook_store import utc_text, webhook_deliveries
from schemas.jsontext import dumps_compact

D = webhook_deliveries


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: delivered (``error`` None), to retry at ``retry_at``, or given up
    (an error and no ``retry_at``).  ``lease_until``: the lease of the claim that sent it, which
    may still mark it delivered when it was cancelled during its POST.  ``audit_id``: the audit row
    its claim wrote (None: the body names no person); ``posted``: whether a POST was made (the
    row gets its answer) or not (the row is deleted: nothing was disclosed)."""

    delivery_id: str
    http_status: int | None
    error: str | None = None
    retry_at: datetime | None = None
    lease_until: str | None = None
    audit_id: int | None = None
    posted: bool = False


def person_of(body: str) -> str | None:
    """The person a delivery's body (an alert or warning message) is about."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    person = message.get("person_id") if isinstance(message, dict) else None
    return person if isinstance(person, str) else None


def _audit_ahead(conn: Any, rows: Sequence[Any], at: str) -> dict[str, int]:
    """Write the audit rows of claimed deliveries that name a person, before their POSTs (module
    docstring); returns delivery id -> audit row id."""
    named = [(r, person) for r in rows if (person := person_of(r.body))]
    if not named:
        return {}
    ids = conn.scalars(insert(audit_log).returning(audit_log.c.id, sort_by_parameter_order=True), [
        {"at": at, "token_name": f"webhook:{r.subscription_id}", "role": SUBSCRIBER, "method": "POST",
         "path": f"/api/webhooks/{r.subscription_id}", "query": f"delivery_id={r.delivery_id}",
         "person_id": safe_person_id(person), "status": NO_ANSWER} for r, person in named])
    return {r.delivery_id: audit_id for (r, _), audit_id in zip(named, ids, strict=True)}


def _answer_audit_rows(conn: Any, outcomes: Sequence[Outcome], unsent: list[int]) -> None:
    """Each POST's audit row gets its answer; the rows of claimed deliveries not POSTed go."""
    for o in outcomes:
        if o.audit_id is None:
            continue
        if o.posted:
            conn.execute(update(audit_log).where(audit_log.c.id == o.audit_id).values(
                status=o.http_status if o.http_status is not None else NO_ANSWER))
        else:
            unsent.append(o.audit_id)
    if unsent:
        conn.execute(delete(audit_log).where(audit_log.c.id.in_(unsent)))


def _insert_ignore(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(D).on_conflict_do_nothing(index_elements=[D.c.delivery_id])


def _delivered_after_cancel(conn: Any, outcome: Outcome, values: dict[str, Any]) -> bool:
    """Mark delivered a row cancelled while the claim of ``outcome`` was POSTing it and answered
    2xx: the cancel cannot call back a request already sent, and a log saying ``cancelled`` about a
    delivered alert (a forgotten person's, say) misleads whoever checks what a subscriber got."""
    if outcome.lease_until is None:
        return False
    note = literal("delivered: the POST was in flight when it was cancelled (") + func.coalesce(D.c.last_error, "")
    res = conn.execute(update(D).where(D.c.delivery_id == outcome.delivery_id, D.c.status == "cancelled",
                                       D.c.lease_until == outcome.lease_until)
                       .values(**{**values, "last_error": note + literal(")")}))
    return bool(res.rowcount)


class DeliveryQueue:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = _insert_ignore(engine.dialect.name)

    def _write(self) -> Any:
        return self.engine.connect().execution_options(sqlite_begin="immediate")

    def migrate(self) -> None:
        upgrade_api_tables(self.engine)  # Alembic history; the API and the workers may start together

    def enqueue(self, rows: Sequence[dict[str, Any]], now: datetime | None = None) -> int:
        """Persist deliveries (``delivery_id, subscription_id, alert_id, outbox_seq, body``, and the
        message's ``traceparent``, optional);
        ids already present are left alone.  Returns how many rows were new."""
        if not rows:
            return 0
        at = utc_text(now)
        values = [{"traceparent": None, **r, "status": "pending", "attempts": 0, "created_at": at,
                   "next_attempt_at": at} for r in rows]
        with self._write() as conn, conn.begin():
            res = conn.execute(self._insert, values)
        return max(0, int(res.rowcount or 0))

    def claim(self, subscription_id: str, *, limit: int, lease_s: float,
              now: datetime | None = None) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due deliveries of one subscription, oldest due first; each row
        carries its ``lease_until`` (what :meth:`still_pending` checks before each POST) and the
        ``audit_id`` of the audit row written for it in the same transaction (module docstring).

        Only rows this call leased are returned: another deliverer process claiming at the same
        moment gets other rows or none.  SQLite: the write transaction is ``BEGIN IMMEDIATE``.
        PostgreSQL (READ COMMITTED): the read locks its rows and skips rows another claim holds
        (``FOR UPDATE SKIP LOCKED``), and the lease's ``RETURNING`` says which rows it took -
        before, a claim returned every row it had read, also rows the other process leased
        between its read and its update, and both processes POSTed them."""
        now = now or datetime.now(UTC)
        at, lease = utc_text(now), utc_text(now + timedelta(seconds=lease_s))
        due = and_(D.c.subscription_id == subscription_id, D.c.status == "pending", D.c.next_attempt_at <= at,
                   or_(D.c.lease_until.is_(None), D.c.lease_until < at))
        with self._write() as conn, conn.begin():
            rows = conn.execute(
                select(D.c.delivery_id, D.c.subscription_id, D.c.alert_id, D.c.outbox_seq, D.c.body,
                       D.c.attempts, D.c.created_at, D.c.traceparent)
                .where(due).order_by(D.c.next_attempt_at, D.c.outbox_seq).limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            leased = set(conn.scalars(update(D).where(D.c.delivery_id.in_([r.delivery_id for r in rows]), due)
                                      .values(lease_until=lease).returning(D.c.delivery_id)))
            rows = [r for r in rows if r.delivery_id in leased]
            audit_ids = _audit_ahead(conn, rows, now.isoformat(timespec="milliseconds"))
        return [{**r._mapping, "lease_until": lease, "audit_id": audit_ids.get(r.delivery_id)} for r in rows]

    def still_pending(self, delivery_ids: Sequence[str], lease_until: str) -> set[str]:
        """Which of the claimed ``delivery_ids`` are still pending and leased until ``lease_until``
        (by the claim that returned them).  A read, checked before each POST: a worker used to send
        its whole claimed batch from memory after ``DELETE /api/webhooks/{id}`` or ``careledger
        forget`` had cancelled it - and rows another deliverer claimed after the lease ran out."""
        if not delivery_ids:
            return set()
        with self.engine.connect() as conn:
            return set(conn.scalars(select(D.c.delivery_id).where(
                D.c.delivery_id.in_(list(delivery_ids)), D.c.status == "pending", D.c.lease_until == lease_until)))

    def delivered(self, delivery_id: str, http_status: int, now: datetime | None = None) -> bool:
        """Mark delivered; False if it already was (or was cancelled meanwhile)."""
        return delivery_id in self.record([Outcome(delivery_id, http_status)], now)

    def failed_attempt(self, delivery_id: str, error: str, http_status: int | None,
                       next_attempt_at: datetime | None) -> None:
        """Record a failed try: retry at ``next_attempt_at``, or give up (``failed``) when None."""
        self.record([Outcome(delivery_id, http_status, error, next_attempt_at)])

    def record(self, outcomes: Sequence[Outcome], now: datetime | None = None,
               unsent: Iterable[int | None] = ()) -> set[str]:
        """Record the outcomes of several attempts in one write transaction (a worker records a
        claimed batch at once: one write per batch, not per POST, so a busy read model's writer
        does not make each delivery wait for the lock).  Only rows still ``pending`` change - and a
        2xx of a row cancelled during its POST, still leased by the outcome's ``lease_until``.
        In the same transaction each POST's audit row gets its answer, and the audit rows of
        claimed deliveries not POSTed (outcomes without ``posted``, and ``unsent``: rows the worker
        skipped) are deleted (module docstring).  Returns the ids newly marked delivered."""
        not_sent = [a for a in unsent if a is not None]  # audit rows to delete: nothing was disclosed
        if not outcomes and not not_sent:
            return set()
        at = utc_text(now)
        done: set[str] = set()
        with self._write() as conn, conn.begin():
            _answer_audit_rows(conn, outcomes, not_sent)
            for o in outcomes:
                values: dict[str, Any] = {"attempts": D.c.attempts + 1, "last_status": o.http_status,
                                          "lease_until": None}
                if o.error is None:
                    values.update(status="delivered", last_error=None, delivered_at=at, next_attempt_at=None)
                elif o.retry_at is None:
                    values.update(status="failed", last_error=o.error[:1000], next_attempt_at=None)
                else:
                    values.update(last_error=o.error[:1000], next_attempt_at=utc_text(o.retry_at))
                res = conn.execute(update(D).where(D.c.delivery_id == o.delivery_id, D.c.status == "pending")
                                   .values(**values))
                if o.error is None and (res.rowcount or _delivered_after_cancel(conn, o, values)):
                    done.add(o.delivery_id)
        return done

    def give_up_old(self, subscription_id: str, older_than: datetime) -> int:
        """Mark pending deliveries created before ``older_than`` failed without trying them again."""
        with self._write() as conn, conn.begin():
            res = conn.execute(
                update(D).where(D.c.subscription_id == subscription_id, D.c.status == "pending",
                                D.c.created_at < utc_text(older_than),
                                or_(D.c.lease_until.is_(None), D.c.lease_until < utc_text()))
                .values(status="failed", next_attempt_at=None,
                        last_error=func.coalesce(D.c.last_error, "") + " (gave up: older than the maximum age)"))
        return int(res.rowcount or 0)

    def forget(self, person_id: str) -> dict[str, int]:
        """Erase a forgotten person (``careledger forget``) from the delivery log: the bodies of
        their deliveries (alert messages with hazards) become a marker naming only the alert, and
        their pending deliveries are cancelled (a claimed one is no longer sent; the one POST
        already in flight still ends, and is recorded delivered if answered 2xx).  The rows stay as the log of what was sent when."""
        if not sa_inspect(self.engine).has_table(D.name):
            return {"webhook_deliveries_erased": 0, "webhook_deliveries_cancelled": 0}
        quoted = dumps_compact(person_id)
        theirs = or_(D.c.body.contains(f'"person_id":{quoted}', autoescape=True),  # our relay's compact JSON
                     D.c.body.contains(f'"person_id": {quoted}', autoescape=True))
        erased = literal('{"alert_id":"') + D.c.alert_id + literal('","erased":true}')
        with self._write() as conn, conn.begin():
            cancelled = conn.execute(
                update(D).where(theirs, D.c.status == "pending")
                .values(status="cancelled", last_error="person erased (careledger forget)", next_attempt_at=None))
            rest = conn.execute(update(D).where(theirs).values(body=erased))
        return {"webhook_deliveries_erased": int(rest.rowcount or 0),
                "webhook_deliveries_cancelled": int(cancelled.rowcount or 0)}

    def next_due(self, subscription_id: str) -> str | None:
        """The earliest ``next_attempt_at`` of a pending delivery (ISO UTC), or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(D.c.next_attempt_at))
                                .where(D.c.subscription_id == subscription_id, D.c.status == "pending")).scalar()

    def pending_by_subscription(self) -> dict[str, int]:
        """Pending deliveries per subscription (those with none are absent)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(D.c.subscription_id, func.count()).where(D.c.status == "pending")
                                .group_by(D.c.subscription_id)).all()
        return {sid: int(n) for sid, n in rows}

    def pending_count(self, subscription_id: str | None = None) -> int:
        conds = [D.c.status == "pending"]
        if subscription_id is not None:
            conds.append(D.c.subscription_id == subscription_id)
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(D).where(*conds)).scalar_one())
