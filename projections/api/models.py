"""Response models of the read API: what each operation answers, as the OpenAPI description shows.

Routes return plain dicts built by the stores; FastAPI validates them against these models (with
``response_model_exclude_unset``, so a key the store did not set -- ``suppressed`` on an exact
cell, ``hazard`` on a payment alert -- stays absent rather than ``null``).  Items whose shape
depends on a rule (alerts, warnings) allow extra fields: CONTRACT.md §2 promises "at least" these.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
class Alert(_Open):
    """An alert (风险隐患); rule-specific fields (hazard, program, period...) come along."""

    alert_id: str
    rule: str
    severity: str
    person_id: str
    status: str
    event_ids: list[str]
    detected_at: str
    town: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    resolved_by: str | None = None
    resolved_at: str | None = None


class Alerts(BaseModel):
    total: int
    items: list[Alert]


class Warning(_Open):
    """A need warning (需求预警) judged at ``as_of``."""

    rule: str
    person_id: str
    since: str
    town: str | None = None
    need_id: str | None = None
    need: str | None = None
    detail: str | None = None


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


class ActionIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


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


class Audit(BaseModel):
    total: int
    items: list[AuditRow]


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
