"""The typed export's rows and schemas, without a broker (tests/integration/test_export.py reads
real exports back with DuckDB)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from processors.domain.model import Consumed
from projections.export import (
    SensitiveExportAudit,
    arrow_schema,
    columns_of,
    export_row,
    persons_with_sensitive_fields,
    typed_row,
)
from schemas import enums
from schemas.catalogue import example, payload_fields
from schemas.privacy import SENSITIVE_FIELDS
from schemas.upcasters import upcast
from schemas.validation import Accepted, validate_event


@pytest.mark.parametrize("event_type", enums.EVENT_TYPES)
def test_every_payload_field_is_a_typed_column_and_sensitive_ones_only_on_request(event_type: str) -> None:
    hidden = set(SENSITIVE_FIELDS.get(event_type, ()))
    safe = arrow_schema(event_type, include_sensitive=False)
    full = arrow_schema(event_type, include_sensitive=True)
    payload = {f.name for f in payload_fields(event_type)}
    assert payload <= set(full.names) and not hidden & set(safe.names)
    assert set(full.names) - set(safe.names) == hidden
    assert full.field("occurred_at").type == pa.timestamp("us", tz="Asia/Shanghai")
    assert full.field("date").type == pa.date32()
    event = validate_event(example(event_type))
    assert isinstance(event, Accepted)
    row = typed_row(upcast(event.event), 3, 42, columns_of(event_type, True))
    table = pa.Table.from_pylist([row], schema=full)  # the row fits its schema
    assert table.num_rows == 1 and table.column("kafka_offset").to_pylist() == [42]


def test_typed_values() -> None:
    event = upcast(validate_event(example("person.registered")).event)  # type: ignore[union-attr]
    row = typed_row(event, 0, 1, columns_of("person.registered", True))
    assert row["birth_date"] == date(1960, 2, 29) and row["grade"] == 2 and row["hardship"] is True
    assert row["occurred_at"] == datetime(2024, 3, 5, 2, 12, tzinfo=UTC) and row["date"] == date(2024, 3, 5)
    assert arrow_schema("payment.disbursed", False).field("amount_fen").type == pa.int64()
    assert arrow_schema("person.registered", True).field("grade").type == pa.int8()
    assert arrow_schema("visit.completed", True).field("hazards").type == pa.list_(pa.string())


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:00:00-10:00", "0001-01-01T00:00:00+14:00"])
def test_a_timestamp_beyond_utc_cannot_be_a_row(occurred_at: str) -> None:
    event = {**validate_event(example("job.posted")).event, "occurred_at": occurred_at}  # type: ignore[union-attr]
    with pytest.raises(OverflowError):
        typed_row(event, 0, 1, columns_of("job.posted", False))


def test_csv_rows_leave_sensitive_fields_out_unless_asked() -> None:
    event = upcast(validate_event(example("visit.completed")).event)  # type: ignore[union-attr]
    assert '"hazards"' not in export_row(event, "2024-03-05", 0, 1)["payload"]
    assert '"hazards"' in export_row(event, "2024-03-05", 0, 1, include_sensitive=True)["payload"]


def _event(type_: str, person: str | None, payload: dict, **extra: object) -> dict:
    return {"event_id": f"{type_}-{person}", "type": type_, "person_id": person, "payload": payload, **extra}


def test_an_export_names_the_persons_whose_sensitive_fields_it_holds() -> None:
    batch = [Consumed(0, i, e) for i, e in enumerate([
        _event("person.registered", "p-reg", {"category": "visual", "grade": 2, "birth_date": "1980-01-01"}),
        _event("visit.completed", "p-visit", {"visit_kind": "home_visit", "hazards": []}),
        _event("payment.disbursed", "p-paid", {"program": "living_subsidy", "amount_fen": 1, "period": "2024-01"}),
        _event("person.profile_changed", "p-moved", {"village": "溪口社区"}),  # no sensitive field changed
        _event("person.registered", "x-erased", {"category": "erased"}, erased=True),
        _event("job.posted", None, {"employer": "e", "positions": 1}),
    ])] + [Consumed(0, 9, None)]
    assert persons_with_sensitive_fields(batch) == {"p-reg", "p-visit"}


def test_the_audit_of_an_export_names_each_person_once_before_their_batch() -> None:
    calls: list[tuple[int, set[str]]] = []

    class Log:
        def add_audit_subjects(self, audit_id: int, person_ids: object) -> None:
            calls.append((audit_id, set(person_ids)))  # type: ignore[call-overload]

    audit = SensitiveExportAudit(Log(), 7)
    reg = _event("person.registered", "p1", {"category": "visual"})
    audit([Consumed(0, 0, reg)])
    audit([Consumed(0, 1, {**reg, "event_id": "again"}), Consumed(0, 2, _event("visit.completed", "p2", {"hazards": []}))])
    audit([Consumed(0, 3, None)])
    assert calls == [(7, {"p1"}), (7, {"p2"})]
