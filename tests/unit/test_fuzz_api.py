"""Schemathesis against the read API's own /openapi.json: no 500 on any generated request.

The app is ``projections.api.app.create_app`` over a SqlStore on a temporary SQLite file holding
a small district, a stub lag probe and a fake Kafka producer (POST /api/events publishes into a
list); requests carry an admin token so the person-level and admin routes are reached too (an
anonymous pass checks the 401 paths).  ``/api/alerts/stream`` (server-sent events, never ends)
is left out.  Examples per operation are bounded so the whole run stays well under two minutes;
the total run is recorded in the reliability report.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from processors.lag import LagReport
from producers.publisher import EventPublisher
from projections import open_store
from projections.api.app import create_app
from tests.support.reliability import record
from tests.unit.producers.conftest import FakeProducer
from tests.unit.projections.api.conftest import district

EXAMPLES_PER_OPERATION = 100
STREAMING = ["/api/alerts/stream"]


class _Probe:
    def measure(self) -> LagReport:
        return LagReport(per_projection={"sql": 0}, per_partition={"sql": {0: 0}}, end_offsets={0: 20})


def test_no_server_errors_on_generated_requests() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = dataclasses.replace(Settings.from_env(), home=Path(tmp) / "home",
                                   sql_url=f"sqlite:///{Path(tmp) / 'projections.sqlite3'}",
                                   kafka_bootstrap="127.0.0.1:1")
        store = open_store(base.sql_url, default_rules(), topic=base.topics.events)
        store.migrate()
        store.apply_batch([Consumed(0, offset, event) for offset, event in enumerate(district())])
        publisher = EventPublisher(base, producer=FakeProducer())
        app = create_app(base, store=store, publisher=publisher, lag_probe=_Probe())
        app.state.tokens.migrate()
        admin = {"Authorization": f"Bearer {app.state.tokens.create('fuzz-admin', 'admin')}"}
        try:
            figures = _fuzz(app, admin)
        finally:
            store.close()
    record("fuzz", "HTTP API: schemathesis on /openapi.json",
           claim="{operations} operations, {examples} generated requests (admin and anonymous), "
                 "{server_errors} server errors",
           **figures)
    assert figures["server_errors"] == 0, figures["failures"]


def _fuzz(app: Any, admin: dict[str, str]) -> dict[str, Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path=STREAMING)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            for headers in (admin, {}):
                response = case.call(headers=headers)
                statuses[response.status_code] += 1
                if response.status_code >= 500 and len(failures) < 20:
                    failures.append(f"{case.method} {case.formatted_path} {case.query} -> "
                                    f"{response.status_code} {response.text[:200]}")

        check()
    return {"operations": operations, "examples": sum(statuses.values()),
            "server_errors": sum(n for code, n in statuses.items() if code >= 500),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "failures": failures}
