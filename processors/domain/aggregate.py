"""Per-person state: everything the alert and warning rules need about one person.

Every field is merged with an order-independent operation (min, max, or "latest stamp wins"
with stamps that totally order events), so the aggregate after a set of events does not depend
on the order the events arrived in.  Stamps are strings that compare correctly as text:

* profile field stamp: ``"<utc instant key>|<event_id>"`` of the event that set the value;
* status stamp: ``"<effective_date>|<utc instant key>|<event_id>"`` (the status in force is the
  one with the latest effective date; registration counts as ``active`` from its date);
* end stamp: ``"<effective_date>|<event_id>"``, and ``end_date`` is the EARLIEST effective date
  of any ``cancelled``/``deceased`` status event.  It is monotonic (only ever moves earlier) and is
  kept even if the person is reactivated later, so whichever of payment and status arrives first,
  ``payment_after_end`` judges the same end date.

The aggregate a batch folds is a *partial view*: the fixed-size core (profile, status, dates) plus
only the payment groups, needs, pending reversals and alerts the batch's events can touch
(``processors.domain.batch.plan``); each part is stored as its own rows
(``projections/sql/rows.py``).  ``hazard_visits`` only lives for one batch: the alerts they raise
are stored, and a re-sent visit never reaches the fold (the runtime de-duplicates event ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.domain.model import Alert

PROFILE_FIELDS: tuple[str, ...] = (
    "town", "village", "category", "grade", "birth_date", "hardship", "certificate_expires", "name", "phone",
)


@dataclass(slots=True)
class Payment:
    program: str
    period: str  # YYYY-MM
    amount_fen: int
    date: str  # the payment event's date (Asia/Shanghai)
    town: str
    occurred_at: str
    reversed_by: str | None = None  # smallest event_id of the reversals seen (order independent)

    def row(self) -> list[Any]:
        return [self.program, self.period, self.amount_fen, self.date, self.town, self.occurred_at,
                self.reversed_by]


@dataclass(slots=True)
class HazardVisit:
    hazards: tuple[str, ...]
    occurred_at: str
    town: str

    def row(self) -> list[Any]:
        return [list(self.hazards), self.occurred_at, self.town]


@dataclass(slots=True)
class Need:
    """A need and its fulfilment.  Either half may be known first (a fulfilment may arrive before
    its ``need.registered``); ``need`` is None until the registration is seen."""

    need: str | None = None
    registered_on: str | None = None
    registered_by: str | None = None  # event_id
    fulfilled_on: str | None = None
    fulfilled_by: str | None = None  # event_id

    def row(self) -> list[Any]:
        return [self.need, self.registered_on, self.registered_by, self.fulfilled_on, self.fulfilled_by]


def _alert_row(alert: Alert) -> list[Any]:
    return [alert.rule, alert.severity, alert.status, list(alert.event_ids), alert.detected_at,
            alert.town, alert.hazard, alert.program, alert.period]


@dataclass(slots=True)
class PersonAggregate:
    person_id: str
    # profile (latest by profile stamp, per field)
    town: str | None = None
    village: str | None = None
    category: str | None = None
    grade: int | None = None
    birth_date: str | None = None
    hardship: bool | None = None
    certificate_expires: str | None = None
    name: str | None = None  # sealed on the log; shown only to the person's caseworkers and admins
    phone: str | None = None
    profile_stamps: dict[str, str] = field(default_factory=dict)
    registered_on: str | None = None  # earliest person.registered event date
    # status
    status: str | None = None  # None until a registration or status event is seen
    status_effective: str | None = None
    status_stamp: str | None = None
    end_date: str | None = None
    end_event_id: str | None = None
    end_occurred_at: str | None = None
    # activity
    last_home_visit: str | None = None
    payments: dict[str, Payment] = field(default_factory=dict)
    pending_reversals: dict[str, str] = field(default_factory=dict)  # payment id -> reversal id
    hazard_visits: dict[str, HazardVisit] = field(default_factory=dict)
    needs: dict[str, Need] = field(default_factory=dict)
    # alerts as last emitted (never removed: an alert that stops firing becomes resolved)
    alerts: dict[str, Alert] = field(default_factory=dict)
    # only the end date (and its event) was loaded of the core, for a batch that pays or reverses
    # (``StatePlan.cores``): such a core is never written back (``projections/sql/rows.person_row``)
    end_only: bool = field(default=False, compare=False, repr=False)
    # derived, not serialised: payment ids per (program, period), built on first use
    group_index: dict[tuple[str, str], list[str]] | None = field(
        default=None, init=False, compare=False, repr=False)

    def payment_group(self, program: str, period: str) -> list[str]:
        """Ids of the payments for ``program`` and ``period`` (O(1) after the first call)."""
        if self.group_index is None:
            index: dict[tuple[str, str], list[str]] = {}
            for event_id, payment in self.payments.items():
                index.setdefault((payment.program, payment.period), []).append(event_id)
            self.group_index = index
        return self.group_index.get((program, period), [])

    def add_payment(self, event_id: str, payment: Payment) -> None:
        self.payments[event_id] = payment
        if self.group_index is not None:
            self.group_index.setdefault((payment.program, payment.period), []).append(event_id)

    @property
    def end_stamp(self) -> str | None:
        return None if self.end_date is None else f"{self.end_date}|{self.end_event_id}"
