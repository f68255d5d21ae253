"""The federation's half-year figures (``h1-report.csv``) and a counter that reproduces them.

The CSV ships inside the package (a copy of ``shared/domain/h1-report.csv``) so the simulator works
without the shared folder.  ``ReportCounter`` counts a stream of canonical events the way
``GET /api/counts`` does (docs/architecture.md, counts table) and is what ``careledger simulate``
prints at the end of a calibrated run.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

PACKAGED_REPORT = Path(__file__).with_name("h1-report.csv")
H1_FROM = "2024-01-01"
H1_TO = "2024-06-30"

# event type -> (kind, payload field holding the key)
KIND_OF_TYPE: dict[str, tuple[str, str | None]] = {
    "payment.disbursed": ("payment", "program"),
    "service.delivered": ("service", "service"),
    "visit.completed": ("visit", "visit_kind"),
    "job.placed": ("job", "placement_kind"),
    "need.registered": ("need", "need"),
    "person.registered": ("person", "category"),
    "job.posted": ("posting", None),
}


@dataclass(frozen=True)
class ReportRow:
    metric: str
    kind: str
    key: str
    label_zh: str
    persons: int | None
    events: int | None
    amount_fen: int | None
    positions: int | None
    note: str


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text else None


def load_report(path: str | Path | None = None) -> list[ReportRow]:
    """Read h1-report.csv (the packaged copy by default).  ``amount_yuan`` becomes exact fen; the
    posting row's positions come from its note ("122 positions")."""
    source = Path(path) if path is not None else PACKAGED_REPORT
    rows: list[ReportRow] = []
    with source.open(encoding="utf-8-sig", newline="") as fh:
        for rec in csv.DictReader(fh):
            amount = (rec.get("amount_yuan") or "").strip()
            note = (rec.get("note") or "").strip()
            positions = None
            if rec["kind"] == "posting":
                found = re.search(r"(\d+)\s*positions", note)
                positions = int(found.group(1)) if found else None
            rows.append(ReportRow(
                metric=rec["metric"].strip(), kind=rec["kind"].strip(), key=(rec.get("key") or "").strip(),
                label_zh=(rec.get("label_zh") or "").strip(), persons=_int(rec.get("persons")),
                events=_int(rec.get("events")),
                amount_fen=int(Decimal(amount) * 100) if amount else None,
                positions=positions, note=note,
            ))
    return rows


class ReportCounter:
    """Incremental counts of events dated ``date_from``..``date_to`` (Asia/Shanghai), by (kind, key).

    Distinct event_ids only; reversed payments (and reversals) never count, whichever arrives first.
    Events are assumed to carry ``+08:00`` offsets (what the simulator writes); others are converted.
    """

    def __init__(self, date_from: str = H1_FROM, date_to: str = H1_TO) -> None:
        self.date_from = date_from
        self.date_to = date_to
        self._seen: set[str] = set()
        self._reversed: set[str] = set()
        # event_id -> (kind, key, person_id, amount_fen, positions)
        self._facts: dict[str, tuple[str, str, str, int, int]] = {}

    def add(self, event: dict[str, Any]) -> None:
        event_id = event["event_id"]
        if event_id in self._seen:
            return
        self._seen.add(event_id)
        etype = event["type"]
        if etype == "payment.reversed":
            self._reversed.add(event["payload"]["reverses"])
            return
        spec = KIND_OF_TYPE.get(etype)
        if spec is None:
            return
        day = _local_date(event["occurred_at"])
        if not (self.date_from <= day <= self.date_to):
            return
        kind, field = spec
        payload = event["payload"]
        key = payload[field] if field else ""
        self._facts[event_id] = (
            kind, key, event.get("person_id") or event.get("id_number") or "",
            payload.get("amount_fen", 0) if kind == "payment" else 0,
            payload.get("positions", 0) if kind == "posting" else 0,
        )

    def add_all(self, events: Iterable[dict[str, Any]]) -> ReportCounter:
        for event in events:
            self.add(event)
        return self

    def counts(self, kind: str, key: str = "") -> dict[str, int]:
        events = amount = positions = 0
        persons: set[str] = set()
        for event_id, (k, kk, person, fen, pos) in self._facts.items():
            if k != kind or (key and kk != key) or event_id in self._reversed:
                continue
            events += 1
            amount += fen
            positions += pos
            if person:
                persons.add(person)
        return {"events": events, "persons": len(persons), "amount_fen": amount, "positions": positions}

    def compare(self, rows: Iterable[ReportRow]) -> list[str]:
        """Mismatches against the report's published figures (empty when every row matches)."""
        problems: list[str] = []
        for row in rows:
            got = self.counts(row.kind, row.key)
            for name in ("persons", "events", "amount_fen", "positions"):
                want = getattr(row, name)
                if want is not None and got[name] != want:
                    problems.append(f"{row.metric}: {name} {got[name]} != {want}")
        return problems


def _local_date(ts: str) -> str:
    if ts.endswith("+08:00"):
        return ts[:10]
    from datetime import datetime
    from zoneinfo import ZoneInfo

    parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return parsed.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
