"""Value types shared by the pure domain (reducers, rules) and the stores that persist them.

An *event* inside the domain is the canonical JSON object of CONTRACT.md §1 as a ``dict``,
already validated and upcast to the current version (``schemas.upcast``).  The domain never
sees Kafka messages or SQL rows: adapters in ``processors/`` and ``projections/`` translate.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

Event = dict[str, Any]

CountKind = Literal["payment", "service", "visit", "job", "need", "person", "posting"]
Severity = Literal["critical", "high", "medium"]
AlertStatus = Literal["open", "resolved"]


class FactKey(NamedTuple):
    """Grain of the counts read model: one row per kind × key × town × date × person.

    ``key`` is "" where the kind has no key (posting); ``person_id`` is "" for postings.
    Counting distinct ``person_id`` over rows answers 人; summing ``events`` answers 人次.
    (A named tuple: built and hashed once or more per event, several times cheaper than a
    frozen dataclass.)
    """

    kind: str
    key: str
    town: str
    date: str  # YYYY-MM-DD, the event's calendar date in Asia/Shanghai
    person_id: str


@dataclass(slots=True)
class FactDelta:
    events: int = 0
    amount_fen: int = 0
    positions: int = 0

    def add(self, other: FactDelta) -> None:
        self.events += other.events
        self.amount_fen += other.amount_fen
        self.positions += other.positions

    def is_zero(self) -> bool:
        return self.events == 0 and self.amount_fen == 0 and self.positions == 0


@dataclass(frozen=True, slots=True)
class Alert:
    """One risk-hazard alert (风险隐患).  ``alert_id`` is derived from the rule and its subject,
    so a replay produces the same id; ``detected_at`` is business time (the latest
    ``occurred_at`` among ``event_ids``), so a replay produces the same value too."""

    alert_id: str
    rule: str
    severity: Severity
    person_id: str
    status: AlertStatus
    event_ids: tuple[str, ...]
    detected_at: str  # RFC 3339, from the events
    town: str | None = None
    hazard: str | None = None
    program: str | None = None
    period: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["event_ids"] = list(self.event_ids)
        return {k: v for k, v in data.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Warning:
    """One need warning (需求预警): due from ``since`` for its rule and subject (the person, or one of
    their needs).  Its id names exactly this rule, subject and due date, so a replay gives the same
    id, and a warning cleared by a visit and due again later is a new warning with a new id."""

    rule: str
    person_id: str
    since: str  # YYYY-MM-DD the warning became due
    town: str | None = None
    need_id: str | None = None
    need: str | None = None
    detail: str | None = None
    period: str | None = None  # nursing_subsidy_missing: the month without a payment

    def to_dict(self) -> dict[str, Any]:
        return {"warning_id": self.warning_id, **{k: v for k, v in asdict(self).items() if v is not None}}

    @property
    def subject(self) -> str:
        """What the warning is about beyond the person: a need, or a month."""
        return self.need_id or self.period or ""

    @property
    def warning_id(self) -> str:
        return warning_id(self.rule, self.person_id, self.subject, self.since)


def warning_id(rule: str, person_id: str, subject: str, since: str) -> str:
    """Stable id of a warning: the rule, whom or what it is about, and since when it is due."""
    digest = hashlib.sha1("|".join((rule, person_id, subject, since)).encode(), usedforsecurity=False)
    return "W" + digest.hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class AlertAction:
    """A person assigned, acknowledged or resolved an alert (event ``alert.handled``); ``at`` is
    business time (the event's ``occurred_at``), so a replay reproduces it."""

    alert_id: str
    action: str  # "assign" | "acknowledge" | "resolve"
    by: str
    at: str
    note: str | None = None
    assignee: str | None = None  # with "assign"
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class WarningSnooze:
    """A need warning put aside until a date (event ``warning.snoozed``): it is not in the work
    queue before ``until`` unless the fulfilling event changed it (then it is another warning)."""

    warning_id: str
    person_id: str
    until: str  # YYYY-MM-DD
    reason: str
    by: str
    at: str


@dataclass(slots=True)
class EventEffects:
    """What applying one event changed, for the batch fold (``processors.domain.batch``) to turn
    into rows: the count facts, and which parts of the person's state need writing back."""

    fact_deltas: list[tuple[FactKey, FactDelta]] = field(default_factory=list)
    person_changed: str | None = None  # the person's core (profile, status, dates) changed
    alerts_changed: list[Alert] = field(default_factory=list)
    alert_actions: list[AlertAction] = field(default_factory=list)
    snoozes: list[WarningSnooze] = field(default_factory=list)
    payments_changed: list[str] = field(default_factory=list)  # payment ids added or (un)reversed
    pending_changed: list[str] = field(default_factory=list)  # payment ids whose pending reversal moved
    needs_changed: list[str] = field(default_factory=list)  # need ids registered or fulfilled


class Consumed(NamedTuple):
    """One record as read from ``careledger.events``: its position and the decoded event.

    ``event`` is None for a poison record (undecodable, invalid, unknown version): it was sent
    to the dead-letter topic by the adapter, and only its position advances in the store.
    ``trace`` is the W3C ``traceparent`` header the message arrived with (opaque text here: the
    fold only carries it to the outbox rows the event causes, the store makes spans of it).
    (A named tuple, like :class:`FactKey`: one is built per record on every read path.)
    """

    partition: int
    offset: int
    event: Event | None
    trace: str | None = None
