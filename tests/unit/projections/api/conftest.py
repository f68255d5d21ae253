"""A real SqlStore on SQLite fed with a small handmade district, the API app over it, tokens."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from processors.lag import LagReport
from producers.pseudonym import Pseudonymiser
from projections import open_store
from projections.api.app import create_app
from projections.api.auth import TokenStore

TOWN_A = "锦屏街道"
TOWN_B = "岳林街道"
# a valid (check digit) national ID number of nobody real: 330283 奉化区, born 1985-06-15
ID_NUMBER = "330283198506150028"


def ev(eid: str, type_: str, person: str | None, town: str, when: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "version": 1, "occurred_at": f"{when}T10:00:00+08:00",
            "person_id": person, "town": town, "village": None, "source": "test", "payload": payload}


def district() -> list[dict[str, Any]]:
    """Six persons in town A, one in town B.

    - living_subsidy 2024-03 for a1..a6 (6 persons: not a small cell), a1 paid twice
      (duplicate_payment alert, town A);
    - b1: nursing_subsidy (1 person: a small cell), a visit with abuse_or_neglect (visit_hazard, town B);
    - a2: an employment need in January never met (need_unmet warning);
    - a3: vocational_training in 2024-08 (targets period 2024H2); one job posting of 3 positions.
    """
    events = []
    reg = {"category": "physical", "grade": 1, "birth_date": "1970-01-01", "hardship": True,
           "certificate_expires": "2030-01-01"}
    for i in range(1, 7):
        events.append(ev(f"reg-a{i}", "person.registered", f"a{i}", TOWN_A, "2024-01-10", reg))
    events.append(ev("reg-b1", "person.registered", "b1", TOWN_B, "2024-01-10", reg))
    for i in range(1, 7):
        events.append(ev(f"pay-a{i}", "payment.disbursed", f"a{i}", TOWN_A, "2024-03-05",
                         {"program": "living_subsidy", "amount_fen": 50_000, "period": "2024-03"}))
    events.append(ev("pay-a1-again", "payment.disbursed", "a1", TOWN_A, "2024-03-06",
                     {"program": "living_subsidy", "amount_fen": 50_000, "period": "2024-03"}))
    events.append(ev("pay-b1", "payment.disbursed", "b1", TOWN_B, "2024-03-05",
                     {"program": "nursing_subsidy", "amount_fen": 30_000, "period": "2024-03"}))
    events.append(ev("visit-b1", "visit.completed", "b1", TOWN_B, "2024-04-01",
                     {"visit_kind": "home_visit", "visitor": "w1", "hazards": ["abuse_or_neglect"]}))
    events.append(ev("need-a2", "need.registered", "a2", TOWN_A, "2024-01-15",
                     {"need_id": "n-a2", "need": "employment"}))
    events.append(ev("svc-a3", "service.delivered", "a3", TOWN_A, "2024-08-01",
                     {"service": "vocational_training"}))
    events.append(ev("post-1", "job.posted", None, TOWN_A, "2024-03-10",
                     {"employer": "emp1", "positions": 3}))
    return events


def register_by_id_number(store: Any, settings: Settings, id_number: str = ID_NUMBER, town: str = TOWN_A) -> str:
    """Apply a registration for the person of ``id_number`` (pseudonymised like the ingest does);
    return their person_id."""
    person_id = Pseudonymiser.from_settings(settings).person_id(id_number)
    reg = {"category": "visual", "grade": 2, "birth_date": "1985-06-15", "hardship": False,
           "certificate_expires": "2031-01-01"}
    offset = max(store.offsets().values(), default=-1) + 1
    store.apply_batch([Consumed(0, offset, ev(f"reg-{person_id}", "person.registered", person_id, town,
                                             "2024-02-01", reg))])
    return person_id


@dataclass
class StubProbe:
    """Stands in for processors.lag.LagProbe: a fixed report, or an error like an absent broker."""

    report: LagReport = field(default_factory=lambda: LagReport(
        per_projection={"sql": 0}, per_partition={"sql": {0: 0, 1: 0}}, end_offsets={0: 10, 1: 7}))
    error: Exception | None = None
    calls: int = 0

    def close(self) -> None:

        pass


    def measure(self) -> LagReport:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.report


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(
        Settings.from_env(), home=tmp_path / "home", sql_url=f"sqlite:///{tmp_path / 'projections.sqlite3'}",
        small_cell_threshold=5, kafka_bootstrap="127.0.0.1:1",
        # the stricter deployment setting, so anonymous callers are tested as suppressed;
        # test_anonymous_counts_are_exact_by_default covers the contract's default
        anonymous_aggregates="suppressed",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Any]:
    s = open_store(settings.sql_url, default_rules(), topic=settings.topics.events)
    s.migrate()
    s.apply_batch([Consumed(0, offset, event) for offset, event in enumerate(district())])
    yield s
    s.close()


@pytest.fixture
def probe() -> StubProbe:
    return StubProbe()


@pytest.fixture
def app(settings: Settings, store: Any, probe: StubProbe) -> Any:
    return create_app(settings, store=store, lag_probe=probe)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def tokens(app: Any) -> dict[str, str]:
    ts: TokenStore = app.state.tokens
    return {
        "viewer": ts.create("v", "viewer"),
        "caseworker": ts.create("cw-a", "caseworker", TOWN_A),
        "caseworker_b": ts.create("cw-b", "caseworker", [TOWN_B]),
        "admin": ts.create("root", "admin"),
    }


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
