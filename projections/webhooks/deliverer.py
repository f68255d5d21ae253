"""``careledger deliver-webhooks``: careledger.alerts and careledger.warnings → signed HTTP POSTs.

One process, two kinds of threads:

- the **consumer** (main thread) reads ``careledger.alerts`` (alert changes, escalations) and
  ``careledger.warnings`` (need warnings due or cleared) with its own consumer group
  (``<processor_group>-webhooks``), matches each message against the active subscriptions
  (rule / town filters; only changes committed after the subscription was created, i.e. with an
  outbox seq above the one recorded at its creation), persists one
  ``webhook_deliveries`` row per match (``INSERT ... ON CONFLICT DO NOTHING`` on the stable
  delivery id) and only then commits its Kafka offsets.  It never waits for HTTP, so a slow
  subscriber does not hold the topic back; a crash before the commit re-reads the batch and the
  inserts are no-ops.
- each message's W3C ``traceparent`` header is stored with its deliveries, and every POST is a
  ``deliver webhook`` span of that trace whose ``traceparent`` is a request header
  (careledger/tracing.py): the receiver's logs join the trace of the event that raised the alert;
- one **worker per subscription** (concurrency 1 per subscriber): claims up to ``batch`` due
  deliveries (a lease, so another deliverer process cannot send them at the same time), POSTs
  each within a deadline for the whole request (5 s, ``poster.py``), and records the outcome (delivered / retry with backoff + jitter /
  failed after the maximum age).  A slow or dead subscriber only occupies its own worker; the
  others keep delivering.  Memory is bounded by ``batch`` rows per worker: the backlog of a dead
  subscriber waits in the table (bounded by the alert rate × the maximum age), not in memory.

Processors never talk to this process: they publish to Kafka (through the outbox relay), so a
subscriber can never slow them down.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from careledger import metrics as process_metrics
from careledger import tracing
from careledger.retrying import call_retrying
from careledger.settings import Settings
from projections.webhook_store import WebhookStore
from projections.webhooks import metrics
from projections.webhooks.poster import Attempt, Poster
from projections.webhooks.queue import DeliveryQueue, Outcome
from projections.webhooks.signing import RetryPolicy, delivery_id

log = logging.getLogger("careledger.webhooks")

SUBSCRIPTION_REFRESH_S = 2.0
IDLE_WAIT_S = 1.0
RECORD_EVERY_S = 0.5  # outcomes of a claimed batch are written together, at the latest this often
LEASE_MARGIN_S = 10.0  # a claimed batch's lease: every POST at its timeout, and this for the writes
REPORT_INTERVAL_S = 30.0
PENDING_INTERVAL_S = 10.0  # how often the pending-deliveries gauge is measured
METADATA_MAX_AGE_MS = 10_000  # a missed assignment is corrected within seconds, not minutes
METADATA_WAIT_S = 30.0
MAX_ID_LENGTH = 255  # webhook_deliveries.alert_id
MAX_SEQ = 2**63 - 1  # webhook_deliveries.outbox_seq: a BIGINT
FILTERED_FIELDS = ("person_id", "rule", "town")  # strings or absent: matched against sets


def consumer_group(settings: Settings) -> str:
    return f"{settings.processor_group}-webhooks"


@dataclass
class Subscription:
    subscription_id: str
    url: str
    secret: str
    rules: frozenset[str] | None
    towns: frozenset[str] | None
    start_after_seq: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Subscription:
        return cls(row["subscription_id"], row["url"], row["secret"],
                   frozenset(row["rules"]) if row["rules"] else None,
                   frozenset(row["towns"]) if row["towns"] else None,
                   int(row["start_after_seq"]))

    def matches(self, alert: dict[str, Any]) -> bool:
        if int(alert["outbox_seq"]) <= self.start_after_seq:
            return False  # committed before the subscription existed
        if self.rules is not None and alert.get("rule") not in self.rules:
            return False
        return self.towns is None or alert.get("town") in self.towns


class Malformed(ValueError):
    """Why a message is not an alert change or need warning this deliverer can deliver (the reason
    names what is wrong, never the message's content: alerts carry persons and hazards)."""


def parse_message(value: Any) -> tuple[str, dict[str, Any], str, int]:
    """The body (UTF-8 text), the message, its alert or warning id and its outbox seq.

    Raises :class:`Malformed` for anything else a producer may have written to the topic: one
    message that raised later (``Subscription.matches`` on an infinite seq or a list as town, the
    insert of a seq no BIGINT holds or an id longer than its column) stopped the deliverer before
    its offsets were committed, and it read the same message again after every restart."""
    if not isinstance(value, bytes):
        raise Malformed("no value")
    try:
        body = value.decode("utf-8")
        message = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise Malformed(f"a JSON {type(message).__name__}, not an object")
    return body, message, _message_id(message), _outbox_seq(message)


def _message_id(message: dict[str, Any]) -> str:
    """``alert_id`` (an alert change) or ``warning_id`` (a need warning): printable text that fits
    the ``alert_id`` column (no NUL or lone surrogate, which a database refuses)."""
    found = message.get("alert_id") or message.get("warning_id")
    if not isinstance(found, str) or not 0 < len(found) <= MAX_ID_LENGTH or not found.isprintable():
        raise Malformed(f"no alert_id or warning_id of 1-{MAX_ID_LENGTH} printable characters")
    for name in FILTERED_FIELDS:  # compared with sets and frozensets: a list or object raised
        if not isinstance(message.get(name), str | None):
            raise Malformed(f"{name} is not a string")
    return found


def _outbox_seq(message: dict[str, Any]) -> int:
    """An integer a BIGINT holds (not a bool, float or numeric string)."""
    seq = message.get("outbox_seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise Malformed(f"outbox_seq is not an integer from 0 to {MAX_SEQ}")
    return seq


def deliveries_for(subscriptions: list[Subscription], value: bytes,
                   forgotten: Container[str] = frozenset(), traceparent: str | None = None,
                   where: str = "the topic") -> list[dict[str, Any]]:
    """Delivery rows for one careledger.alerts or careledger.warnings message (empty when no
    subscription matches, the message is neither an alert change nor a warning of the expected
    shape - logged with the reason, ``where`` it was read, never its content - or it is about a
    person in ``forgotten``: erased by ``careledger forget`` after it reached the topic);
    ``traceparent``: the message's header, kept with each delivery."""
    try:
        body, alert, alert_id, seq = parse_message(value)
    except Malformed as why:
        log.warning("skipping a message on %s that is neither an alert change nor a need warning: %s", where, why)
        return []
    if alert.get("person_id") in forgotten:
        return []
    return [{"delivery_id": delivery_id(s.subscription_id, alert_id, seq), "subscription_id": s.subscription_id,
             "alert_id": alert_id, "outbox_seq": seq, "body": body, "traceparent": traceparent}
            for s in subscriptions if s.matches(alert)]


def _origin(record: Any) -> str:
    """Where a consumer record was read (topic[partition]@offset), to find a skipped message."""
    return f"{getattr(record, 'topic', '?')}[{getattr(record, 'partition', '?')}]@{getattr(record, 'offset', '?')}"


@dataclass
class WorkerStats:
    attempts: int = 0
    delivered: int = 0
    failures: int = 0
    given_up: int = 0


class SubscriptionWorker(threading.Thread):
    """Delivers one subscription's deliveries, one at a time."""

    def __init__(self, sub: Subscription, queue: DeliveryQueue, policy: RetryPolicy, *, batch: int,
                 on_delivered: Callable[[dict[str, Any], Attempt], None] | None = None) -> None:
        super().__init__(name=f"webhook-{sub.subscription_id}", daemon=True)
        self.sub = sub
        self.queue = queue
        self.policy = policy
        self.batch = batch
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.stats = WorkerStats()
        self.on_delivered = on_delivered

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def lease_s(self) -> float:
        """Long enough for every POST of a claimed batch to run into its timeout: a lease that ran
        out mid-batch let another deliverer process claim and send the rows this one still held."""
        return self.batch * self.policy.timeout_s + LEASE_MARGIN_S

    def run(self) -> None:
        lease_s = self.lease_s()
        with Poster(self.policy.timeout_s) as poster:
            while not self.stopping.is_set():
                try:
                    leased_until = time.monotonic() + lease_s  # before the claim: never later than the row's
                    claimed = call_retrying(
                        lambda: self.queue.claim(self.sub.subscription_id, limit=self.batch, lease_s=lease_s),
                        f"webhook queue (due deliveries of {self.sub.subscription_id})",
                        give_up=self.stopping.is_set, sleep=self.stopping.wait, logger=log)
                except Exception:  # noqa: BLE001 - not transient (or stopping): log it, try again later
                    log.exception("webhook %s: could not read due deliveries", self.sub.subscription_id)
                    self.stopping.wait(IDLE_WAIT_S)
                    continue
                self._deliver_or_log(poster, claimed, leased_until)
                if not claimed:
                    self.wake.wait(self._idle_wait())
                    self.wake.clear()

    def _deliver_or_log(self, poster: Poster, claimed: list[dict[str, Any]], leased_until: float) -> None:
        """``_deliver``, and an unexpected error of it logged, not raised: it ended the worker thread
        (the deliverer restarted it, and it died again on the same claim, every 2 s).  The rows not
        recorded are claimed again when their lease ends."""
        try:
            self._deliver(poster, claimed, leased_until)
        except Exception:  # noqa: BLE001 - a bug or an odd row must not stop the subscription's deliveries
            log.exception("webhook %s: a claimed batch failed; its unrecorded rows are retried after the lease",
                          self.sub.subscription_id)
            self.stopping.wait(IDLE_WAIT_S)

    def _idle_wait(self) -> float:
        try:
            due = self.queue.next_due(self.sub.subscription_id)
        except Exception:  # noqa: BLE001
            return IDLE_WAIT_S
        if due is None:
            return IDLE_WAIT_S
        wait = (datetime.fromisoformat(due) - datetime.now(UTC)).total_seconds()
        return min(IDLE_WAIT_S, max(0.01, wait))

    def _deliver(self, poster: Poster, claimed: list[dict[str, Any]], leased_until: float) -> None:
        """Attempt the claimed deliveries in order; their outcomes are recorded together, at the
        latest every ``RECORD_EVERY_S`` (one write per batch: each write waits for the read model's
        writer on SQLite, and per POST that wait was the deliverer's throughput).  No POST starts
        that could still run when the lease ends (writes held up by a busy database): a POST never
        outlives its timeout (``poster.py``), so no other deliverer can claim a row while it is sent.
        Each row is sent only if still pending under this claim (``_still_ours``: a read, not a
        write); what was attempted is recorded even when a later row raises."""
        outcomes: list[tuple[dict[str, Any], Outcome]] = []
        unsent: list[int | None] = []  # audit rows of claimed rows not POSTed (queue.py: write-ahead audit)
        recorded = time.monotonic()
        rest = iter(claimed)
        try:
            for delivery in rest:
                if self.stopping.is_set() or time.monotonic() + self.policy.timeout_s >= leased_until:
                    unsent.append(delivery["audit_id"])
                    break  # the lease expires; this or another deliverer claims the rest again
                if not self._still_ours(delivery):
                    unsent.append(delivery["audit_id"])
                    continue
                outcomes.append((delivery, self._attempt(poster, delivery)))
                if time.monotonic() - recorded >= RECORD_EVERY_S:
                    self._record(outcomes, unsent)
                    outcomes, unsent, recorded = [], [], time.monotonic()
        finally:
            self._record(outcomes, unsent + [d["audit_id"] for d in rest])

    def _still_ours(self, delivery: dict[str, Any]) -> bool:
        """Whether the row is still pending and leased by this claim, just before its POST: the
        batch was sent from memory after ``DELETE /api/webhooks/{id}`` or ``careledger forget``
        had cancelled it.  A cancel committed after this read meets the one POST in flight, whose
        2xx is then logged as delivered (``DeliveryQueue.record``)."""
        did = delivery["delivery_id"]
        return did in self.queue.still_pending([did], delivery["lease_until"])

    def _record(self, outcomes: list[tuple[dict[str, Any], Outcome]], unsent: list[int | None]) -> None:
        done = call_retrying(lambda: self.queue.record([o for _, o in outcomes], unsent=unsent),
                             f"webhook queue (outcomes of {self.sub.subscription_id})",
                             give_up=self.stopping.is_set, sleep=self.stopping.wait, logger=log)
        for delivery, outcome in outcomes:
            if delivery["delivery_id"] in done:
                self.stats.delivered += 1
                if self.on_delivered is not None:
                    self.on_delivered(delivery, Attempt(True, outcome.http_status, None))

    def _attempt(self, poster: Poster, delivery: dict[str, Any]) -> Outcome:
        now = datetime.now(UTC)
        age = (now - datetime.fromisoformat(delivery["created_at"])).total_seconds()
        sid = self.sub.subscription_id
        if self.policy.gives_up(age):
            self.stats.given_up += 1
            metrics.ATTEMPTS.labels(sid, "expired").inc()
            self._gave_up(delivery, "older than the maximum age")
            return Outcome(delivery["delivery_id"], None, "gave up: older than the maximum age "
                           f"({self.policy.max_age_s:.0f}s) without a 2xx answer", audit_id=delivery["audit_id"])
        audit_id = delivery["audit_id"]  # written at the claim; gets this POST's answer, whatever it is
        started = time.perf_counter()
        result = poster.post(self.sub.url, self.sub.subscription_id, self.sub.secret, delivery)
        metrics.ATTEMPT_SECONDS.labels(sid).observe(time.perf_counter() - started)
        self.stats.attempts += 1
        if result.ok:
            metrics.ATTEMPTS.labels(sid, "delivered").inc()
            return Outcome(delivery["delivery_id"], result.status or 200, lease_until=delivery.get("lease_until"),
                           audit_id=audit_id, posted=True)
        self.stats.failures += 1
        attempt = int(delivery["attempts"]) + 1
        later = datetime.now(UTC) + timedelta(seconds=self.policy.delay(attempt))
        gives_up = self.policy.gives_up((later - datetime.fromisoformat(delivery["created_at"])).total_seconds())
        metrics.ATTEMPTS.labels(sid, "failed" if gives_up else "retry").inc()
        if gives_up:
            self.stats.given_up += 1
            self._gave_up(delivery, result.error or "failed")
        return Outcome(delivery["delivery_id"], result.status, result.error or "failed", None if gives_up else later,
                       audit_id=audit_id, posted=True)

    def _gave_up(self, delivery: dict[str, Any], why: str) -> None:
        log.warning("webhook %s: delivery %s of %s given up: %s", self.sub.subscription_id, delivery["delivery_id"],
                    delivery["alert_id"], why, extra={"trace_id": tracing.trace_id(delivery.get("traceparent"))})


@dataclass
class Deliverer:
    settings: Settings
    store: WebhookStore
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    group: str | None = None
    batch: int = 20
    poll_records: int = 500
    workers: dict[str, SubscriptionWorker] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    enqueued: int = 0
    consumed: int = 0
    forgotten: Container[str] = frozenset()  # pseudonyms erased by ``careledger forget``
    _keystore: Any = None
    _refreshed: float = 0.0
    _reported: float = 0.0
    _measured: float = 0.0

    def __post_init__(self) -> None:
        self.queue = DeliveryQueue(self.store.engine)
        self.stop_event = threading.Event()

    def refresh(self) -> None:
        """Start workers for new subscriptions, stop those of deleted ones; re-read who was
        forgotten (their alerts still on the topic are not delivered)."""
        self.forgotten = self._forgotten_persons()
        self.subscriptions = [Subscription.from_row(r) for r in self.store.active_with_secrets()]
        wanted = {s.subscription_id: s for s in self.subscriptions}
        for sid in list(self.workers):
            if sid not in wanted or self.workers[sid].sub.url != wanted[sid].url:
                self.workers.pop(sid).stop()
        for sid, sub in wanted.items():
            worker = self.workers.get(sid)
            if worker is None or not worker.is_alive():
                worker = SubscriptionWorker(sub, self.queue, self.policy, batch=self.batch)
                self.workers[sid] = worker
                worker.start()
            else:
                worker.sub = sub
        metrics.SUBSCRIPTIONS.set(len(wanted))
        self._refreshed = time.monotonic()

    def _forgotten_persons(self) -> Container[str]:
        """Who the key store says was forgotten (no one while no key store exists)."""
        if self._keystore is None:
            url = self.settings.keystore_db_url
            if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
                return frozenset()
            from producers.keystore import KeyStore

            self._keystore = KeyStore.from_settings(self.settings)
        return self._keystore.forgotten()

    def handle(self, records: list[Any]) -> int:
        """Persist the deliveries of a batch of consumer records (before the offsets are committed)."""
        rows: list[dict[str, Any]] = []
        for record in records:
            rows += self._deliveries_of(record)
        # the offsets stay where they are until the rows are stored: wait out a busy/away database
        added = call_retrying(lambda: self.queue.enqueue(rows), f"webhook queue (storing {len(rows)} deliveries)",
                              give_up=self.stop_event.is_set, sleep=self.stop_event.wait, logger=log)
        for sid in {r["subscription_id"] for r in rows}:
            worker = self.workers.get(sid)
            if worker is not None:
                worker.wake.set()
        self.enqueued += added
        metrics.CONSUMED.inc(len(records))
        metrics.ENQUEUED.inc(added)
        return added

    def _deliveries_of(self, record: Any) -> list[dict[str, Any]]:
        """The deliveries of one consumer record; none, logged, if it raised anyway: no message may
        stop the consumer (it would read the same message again after every restart)."""
        where = _origin(record)
        try:
            traceparent = tracing.valid(tracing.header(record.headers))  # a foreign header can be anything
            return deliveries_for(self.subscriptions, record.value, self.forgotten, traceparent, where)
        except Exception as exc:  # noqa: BLE001 - its message may quote the content: only the type is logged
            log.error("skipping the message on %s: %s while matching it to subscriptions", where, type(exc).__name__)
            return []

    def measure_pending(self, every_s: float = PENDING_INTERVAL_S) -> None:
        """Set the pending-deliveries gauge of every active subscription (0 included)."""
        now = time.monotonic()
        if now - self._measured < every_s:
            return
        self._measured = now
        try:
            pending = self.queue.pending_by_subscription()
        except Exception as exc:  # noqa: BLE001 - a gauge is not worth stopping for; the next tick retries
            log.warning("pending deliveries not measured: %s: %s", type(exc).__name__, exc)
            return
        for sub in self.subscriptions:
            metrics.PENDING.labels(sub.subscription_id).set(pending.get(sub.subscription_id, 0))

    def run(self) -> None:
        from kafka import KafkaConsumer

        self.store.migrate()
        self.queue.migrate()
        self.refresh()
        consumer = KafkaConsumer(
            **self.settings.kafka_client_options(),
            group_id=self.group or consumer_group(self.settings), enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=self.poll_records,
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )
        # join the group only once the topic's partitions are known: a member that joins without
        # them is assigned nothing until the next metadata refresh (5 minutes by default)
        deadline = time.monotonic() + METADATA_WAIT_S
        topics = [self.settings.topics.alerts, self.settings.topics.warnings]
        while (not all(consumer.partitions_for_topic(topic) for topic in topics)
               and time.monotonic() < deadline):
            time.sleep(0.2)
        consumer.subscribe(topics)
        log.info("delivering %s to %d subscription(s) (group %s)", " and ".join(topics),
                 len(self.subscriptions), self.group or consumer_group(self.settings))
        try:
            while not self.stop_event.is_set():
                batches = consumer.poll(timeout_ms=200)
                records = [r for part in batches.values() for r in part]
                if records or time.monotonic() - self._refreshed > SUBSCRIPTION_REFRESH_S:
                    self.refresh()  # a subscription committed before this poll sees its records
                if records:
                    self.handle(records)
                    commit_or_reread(consumer)
                    self.consumed += len(records)
                self.measure_pending()
                self._report()
        finally:
            consumer.close()
            self.stop_workers()
            if self._keystore is not None:
                self._keystore.close()

    def _report(self, every_s: float = REPORT_INTERVAL_S) -> None:
        now = time.monotonic()
        if now - self._reported < every_s:
            return
        self._reported = now
        stats = [w.stats for w in self.workers.values()]
        log.info("consumed=%d enqueued=%d attempts=%d delivered=%d failures=%d given_up=%d subscriptions=%d",
                 self.consumed, self.enqueued, sum(s.attempts for s in stats), sum(s.delivered for s in stats),
                 sum(s.failures for s in stats), sum(s.given_up for s in stats), len(self.workers))

    def stop(self) -> None:
        self.stop_event.set()

    def stop_workers(self, timeout: float = 15.0) -> None:
        for worker in self.workers.values():
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))


def commit_or_reread(consumer: Any) -> bool:
    """Commit the consumed positions; False when the group refused it (a rebalance is under way or
    this member was fenced).  That is routine, not fatal: the next ``poll`` completes the rebalance
    and whoever owns the partitions re-reads from the last committed offset, and re-reading is
    harmless because deliveries are stored by their deterministic id."""
    from kafka.errors import (
        CommitFailedError,
        IllegalGenerationError,
        KafkaError,
        RebalanceInProgressError,
        UnknownMemberIdError,
    )

    try:
        consumer.commit()
        return True
    except (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError) as exc:
        log.warning("offset commit refused (%s); the batch will be re-read after the rebalance", exc)
    except KafkaError as exc:
        if not getattr(exc, "retriable", False):
            raise
        log.warning("offset commit failed (%s); the batch will be re-read or committed with the next", exc)
    return False


def run_deliverer(settings: Settings, policy: RetryPolicy, *, group: str | None = None, batch: int = 20) -> int:
    from processors.logging_setup import configure_logging

    configure_logging(settings, "webhooks")
    if settings.metrics_port:  # /metrics (``make up`` gives the deliverer a port; docs/metrics.md)
        process_metrics.serve(settings.metrics_port, settings.metrics_addr)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_addr, settings.metrics_port)
    deliverer = Deliverer(settings, WebhookStore.from_settings(settings), policy, group=group, batch=batch)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        deliverer.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    deliverer.run()
    return 0
