"""A batch that only pays or reverses for a person reads the end date of the person's core, not
the whole 40-column core: payments and reversals were 68 % of the simulator's events, and turning
a full person row into an aggregate per event was the largest item of the load
(docs/performance.md, "Persons who were only paid").  The result is the same read model."""

from __future__ import annotations

from pathlib import Path

from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections.sql.store import SqlStore
from tests.unit.processors.domain.factories import payment, profile_changed, registered, reversal, status
from tests.unit.projections.sql.test_bounded_state import recorded_statements

FULL_CORE = "SELECT person_id, town, village"
END_ONLY = "SELECT person_id, end_date, end_event_id, end_occurred_at FROM persons"


def _store(tmp_path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / 'cores.sqlite3'}", default_rules())
    store.migrate()
    store.apply_batch([Consumed(0, i, e) for i, e in enumerate([
        registered(person="p1", eid="reg-1", at="2023-01-02T09:00:00+08:00"),
        profile_changed(person="p1", eid="name-1", at="2023-01-03T09:00:00+08:00", name="张三"),
        status("deceased", "2024-01-15", person="p1", eid="end-1", at="2024-01-20T09:00:00+08:00"),
    ])])
    return store


def _persons_selects(executed: list[tuple[str, object]]) -> list[str]:
    return [s.strip()[:len(END_ONLY)] for s, _ in executed if " FROM persons" in s and s.lstrip().startswith("SELECT")]


def test_a_batch_that_only_pays_reads_the_end_date_and_still_raises_payment_after_end(tmp_path: Path) -> None:
    store = _store(tmp_path)
    before = store.person_aggregate("p1")
    after_end = payment("living_subsidy", "2024-03", 50_000, person="p1", eid="pay-late", at="2024-03-05T10:00:00+08:00")
    with recorded_statements(store) as executed:
        store.apply_batch([Consumed(0, 3, after_end)])
    assert [s for s in _persons_selects(executed) if s.startswith("SELECT person_id, ")] == [END_ONLY]
    raised = store.alerts(rule="payment_after_end", person_id="p1")["items"]
    assert [(a["status"], sorted(a["event_ids"])) for a in raised] == [("open", ["end-1", "pay-late"])]
    # its reversal, alone in a batch, reads the end date too and resolves the alert
    with recorded_statements(store) as executed:
        store.apply_batch([Consumed(0, 4, reversal("pay-late", person="p1", eid="rev-late",
                                                   at="2024-03-06T10:00:00+08:00"))])
    assert [s for s in _persons_selects(executed) if s.startswith("SELECT person_id, ")] == [END_ONLY]
    assert [a["status"] for a in store.alerts(rule="payment_after_end", person_id="p1")["items"]] == ["resolved"]
    assert store.person_aggregate("p1") == before  # the core, the name included, untouched
    store.close()


def test_a_batch_with_another_event_of_the_person_reads_the_whole_core(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with recorded_statements(store) as executed:
        store.apply_batch([Consumed(0, 3, payment("living_subsidy", "2024-01", 50_000, person="p1", eid="pay-jan",
                                                  at="2024-01-05T10:00:00+08:00")),
                           Consumed(0, 4, profile_changed(person="p1", eid="phone-1", at="2024-01-06T09:00:00+08:00",
                                                          phone="13800000000"))])
    selects = _persons_selects(executed)
    assert any(s.startswith(FULL_CORE) for s in selects) and END_ONLY not in selects, selects
    core = store.person_aggregate("p1")
    assert (core.name, core.phone, core.end_date) == ("张三", "13800000000", "2024-01-15")
    store.close()
