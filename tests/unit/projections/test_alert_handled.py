"""``alert.handled`` events (acknowledge / resolve through the API) applied by the SQL store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections import open_store


def ev(eid: str, type_: str, payload: dict[str, Any], when: str = "2024-03-05T10:00:00+08:00") -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "version": 1, "occurred_at": when, "person_id": "p1",
            "town": "锦屏街道", "village": None, "source": None, "payload": payload}


PAY = {"program": "nursing_subsidy", "amount_fen": 23000, "period": "2024-03"}


def test_a_handled_event_records_who_and_when_and_replays_identically(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite3'}", default_rules())
    store.migrate()
    store.apply_batch([Consumed(0, 0, ev("e1", "payment.disbursed", PAY)),
                       Consumed(0, 1, ev("e2", "payment.disbursed", PAY))])
    alert = store.alerts()["items"][0]
    assert alert["rule"] == "duplicate_payment" and alert["status"] == "open"

    handled = ev("h1", "alert.handled", {"alert_id": alert["alert_id"], "action": "resolve", "by": "cw-a",
                                         "note": None}, when="2024-03-06T09:00:00.000+00:00")
    store.apply_batch([Consumed(0, 2, handled)])
    store.apply_batch([Consumed(0, 2, handled)])  # redelivered: no change
    after = store.alert(alert["alert_id"])
    assert after is not None
    assert (after["status"], after["resolved_by"], after["resolved_at"], after["acknowledged_by"]) == (
        "resolved", "cw-a", "2024-03-06T09:00:00.000+00:00", "cw-a")

    # the API's immediate write and the event agree, so a store rebuilt from the log is the same
    replayed = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}", default_rules())
    replayed.migrate()
    replayed.apply_batch([Consumed(0, 0, ev("e1", "payment.disbursed", PAY)),
                          Consumed(0, 1, ev("e2", "payment.disbursed", PAY)), Consumed(0, 2, handled)])
    def logical(item: dict | None) -> dict:  # raised_at is wall-clock state (when this store raised it)
        return {k: v for k, v in (item or {}).items() if k != "raised_at"}

    assert logical(replayed.alert(alert["alert_id"])) == logical(after)
    assert replayed.counts("payment") == store.counts("payment") == {
        "events": 2, "persons": 1, "amount_fen": 46000, "positions": 0}
