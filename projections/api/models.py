"""Response models of the read API: what each operation answers, as the OpenAPI description shows.

Routes return plain dicts built by the stores; FastAPI validates them against these models (with
``response_model_exclude_unset``, so a key the store did not set -- ``suppressed`` on an exact
cell, ``hazard`` on a payment alert -- stays absent rather than ``null``).  Items whose shape
depends on a rule (alerts, warnings) allow extra fields: CONTRACT.md §2 promises "at least" these.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from projections.api.params import StrictDate
from schemas.idnumber import contains_id_number


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# ----------------------------------------------------------------------------- aggregates
class Counts(BaseModel):
    """A count cell.  Suppressed (too few persons, or hiding one that is): every measure null and
    ``suppressed`` true (docs/privacy.md, "Small cells")."""

    events: int | None = Field(description="distinct events (人次); null when suppressed")
    persons: int | None = Field(description="distinct persons (人); null when suppressed")
    amount_fen: int | None = Field(description="sum of amount_fen (payments); null when suppressed")
    positions: int | None = Field(description="sum of positions (postings); null when suppressed")
    suppressed: bool | None = Field(default=None, description="present (true) only on a suppressed cell")


class GroupedRow(Counts):
    town: str | None = Field(default=None, description="present when grouped by town")
    month: str | None = Field(default=None, description="YYYY-MM, present when grouped by month")
    key: str | None = Field(default=None, description="present when grouped by key")
    date: str | None = Field(default=None, description="YYYY-MM-DD, present when grouped by date")


class Grouped(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    group_by: list[str]
    rows: list[GroupedRow]
    date_from: str | None = Field(default=None, alias="from", description="the first date counted, when the "
                                  "range was widened to whole months for a caller without exact access")
    date_to: str | None = Field(default=None, alias="to", description="the last date counted (idem)")


class ReportRow(BaseModel):
    metric: str
    kind: str
    key: str | None
    label_zh: str
    persons: int | None
    events: int | None
    amount_fen: int | None
    amount_yuan: float | None
    positions: int | None
    suppressed: bool | None = None


class Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: str = Field(alias="from")
    date_to: str = Field(alias="to")
    rows: list[ReportRow]


class Target(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    metric: str
    kind: str
    key: str | None
    label_zh: str
    period: str
    date_from: str = Field(alias="from")
    date_to: str = Field(alias="to")
    target: int
    measure: str = Field(description="persons, or positions for postings")
    current: int | None
    progress: float | None
    note: str
    suppressed: bool | None = None


class Targets(BaseModel):
    items: list[Target]


# ----------------------------------------------------------------------------- operations
class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    store: str
    kafka: str


class ProjectionLag(BaseModel):
    lag: int | None
    partitions: dict[str, int] | None = None
    unavailable: str | None = None


class Status(BaseModel):
    lag: int
    caught_up: bool
    topic: str
    degraded: bool = Field(description="a projection's store does not answer (its lag is null)")
    projections: dict[str, ProjectionLag]
    events_end_offsets: dict[str, int]


# ----------------------------------------------------------------------------- person level
class Reasons(_Open):
    """What is due, since when, and what would clear it - in Chinese and English."""

    reason_zh: str | None = None
    reason_en: str | None = None
    clears_zh: str | None = None
    clears_en: str | None = None


class Alert(Reasons):
    """An alert (风险隐患); rule-specific fields (hazard, program, period...) come along.  ``town`` is
    where it was seen; ``person_town`` where the person lives now (access follows it); ``name`` and
    ``phone`` only for a caseworker of that town or an admin."""

    alert_id: str
    rule: str
    severity: str
    person_id: str
    status: str
    event_ids: list[str]
    detected_at: str
    town: str | None = None
    person_town: str | None = None
    name: str | None = None
    phone: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    resolved_by: str | None = None
    resolved_at: str | None = None
    assigned_to: str | None = None
    assigned_at: str | None = None
    raised_at: str | None = Field(default=None, description="when careledger first raised it (wall clock): "
                                                            "escalation counts from here")
    escalated_at: str | None = Field(default=None, description="when it was published again as overdue (critical, "
                                                                "unacknowledged past CARELEDGER_ESCALATE_AFTER_H)")
    actions: list[dict[str, Any]] | None = None


class Alerts(BaseModel):
    total: int
    items: list[Alert]


class Warning(Reasons):
    """A need warning (需求预警) judged at ``as_of``; ``warning_id`` names its rule, subject and due
    date (stable across replays); ``snoozed`` says until when and why, when it was put aside."""

    warning_id: str | None = None
    rule: str
    person_id: str
    since: str
    town: str | None = None
    name: str | None = None
    phone: str | None = None
    need_id: str | None = None
    need: str | None = None
    period: str | None = None
    detail: str | None = None
    snoozed: dict[str, Any] | None = None


class Warnings(BaseModel):
    as_of: str
    total: int
    items: list[Warning]


class Timeline(BaseModel):
    person: dict[str, Any] | None = Field(description="the person row (state included), null if never registered")
    events: list[dict[str, Any]]
    alerts: list[Alert]


class LookupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id_number: str = Field(pattern="^[0-9]{17}[0-9Xx]$", description="an 18-character national ID number "
                           "(GB 11643); pseudonymised on arrival, never stored, logged or echoed")


class LookupOut(BaseModel):
    person_id: str


#: why free text holding an ID number is refused (the wording of the producers' stray-ID check)
ID_IN_TEXT = ("contains what looks like a national ID number; name the person by person_id "
              "(POST /api/persons/lookup), never by ID number")


def _no_id_number(text: str) -> str:
    """Free text goes to Kafka, the store and answers as typed, so an ID number in it is refused
    (the 422 names the field only: the value is never echoed)."""
    if contains_id_number(text):
        raise PydanticCustomError("value_error", ID_IN_TEXT)
    return text


NOT_AN_ID_NUMBER = AfterValidator(_no_id_number)
#: a note on an action: free text, anything but a national ID number
Note = Annotated[str, Field(max_length=2000), NOT_AN_ID_NUMBER]


class ActionIn(BaseModel):
    note: Note | None = None


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S",
                                   description="who is to act (a name)"), NOT_AN_ID_NUMBER]
    note: Note | None = None


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: str = Field(min_length=1, max_length=128, description="whom the warning is about")
    until: StrictDate = Field(description="the warning comes back on this date (YYYY-MM-DD)")
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S",
                                 description="why it is put aside"), NOT_AN_ID_NUMBER]


class AlertSummaryRow(BaseModel):
    rule: str
    town: str
    count: int
    critical: int
    escalated: int
    unacknowledged: int
    oldest_detected_at: str | None


class AlertSummary(BaseModel):
    status: str
    total: int
    rows: list[AlertSummaryRow]


class WarningSummaryRow(BaseModel):
    rule: str
    town: str
    due: int
    snoozed: int
    oldest_since: str


class WarningSummary(BaseModel):
    as_of: str
    total: int
    rows: list[WarningSummaryRow]


class PersonRecord(BaseModel):
    """Everything a caseworker may see about one person (name and phone: their town's caseworkers and
    admins only, like the rest of this page; every read is audited)."""

    person: dict[str, Any] | None
    as_of: str
    events: list[dict[str, Any]]
    open_alerts: list[Alert]
    handled_alerts: list[Alert]
    warnings: list[Warning]


# ----------------------------------------------------------------------------- admin
class AuditRow(BaseModel):
    id: int
    at: str
    token_name: str | None
    role: str | None
    method: str
    path: str
    query: str | None
    person_id: str | None
    status: int
    persons_listed: int = Field(description="how many persons the answer listed (a list of alerts or warnings, "
                                            "a stream); find them with ?person_id=")


class Audit(BaseModel):
    total: int
    items: list[AuditRow]
    archived_before: str | None = Field(None, description="rows written before this day (UTC) were archived "
                                                          "(`careledger audit archive`) and may be in the archive "
                                                          "files only: `careledger audit search` reads both; "
                                                          "null: nothing was ever archived")


class IngestRejection(BaseModel):
    index: int
    reasons: list[str]


class IngestAnswer(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[IngestRejection]


class Subscription(BaseModel):
    subscription_id: str
    url: str
    rules: list[str] | None
    towns: list[str] | None
    description: str | None
    secret_fingerprint: str
    created_at: str
    created_by: str | None
    active: bool
    deleted_at: str | None
    start_after_seq: int


class SubscriptionCreated(Subscription):
    secret: str = Field(description="whsec_...: signs every delivery; shown only in this answer")


class Subscriptions(BaseModel):
    items: list[Subscription]


class Delivery(BaseModel):
    delivery_id: str
    subscription_id: str
    alert_id: str
    outbox_seq: int
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None


class Deliveries(BaseModel):
    total: int
    by_status: dict[str, int]
    items: list[Delivery]


class Me(BaseModel):
    """The caller as the token says: anonymous callers have no name or role."""

    name: str | None
    role: str | None = Field(description="viewer, caseworker or admin (null: anonymous)")
    towns: list[str] = Field(description="a caseworker's towns (empty for the other roles)")
    person_level: bool = Field(description="may read person-level data (alerts, warnings, person pages)")
    admin: bool
