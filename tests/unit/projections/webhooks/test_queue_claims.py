"""Two deliverer processes claiming at the same moment never get the same delivery
(``DeliveryQueue.claim``).  On PostgreSQL (READ COMMITTED) a claim used to read the due rows,
then lease them with an UPDATE that re-checked "still due" - and return every row it had read,
also those the other process had leased in between: both POSTed them.  The check runs on SQLite
here and on PostgreSQL in tests/integration/test_webhook_queue_pg.py."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event

from projections.webhook_store import sql_engine
from projections.webhooks.queue import DeliveryQueue


def check_claims_are_disjoint(url: str) -> None:
    """Process A reads the due rows; before it leases them, process B claims (a hook on A's
    UPDATE runs B's whole claim in another thread); then A goes on.  No row may go to both."""
    engine_a, engine_b = sql_engine(url), sql_engine(url)
    try:
        a, b = DeliveryQueue(engine_a), DeliveryQueue(engine_b)
        a.migrate()
        a.enqueue([{"delivery_id": f"d{i:02d}", "subscription_id": "wh_1", "alert_id": f"A{i}", "outbox_seq": i,
                    "body": "{}"} for i in range(20)])
        got_b: list[dict[str, Any]] = []
        b_claims = threading.Thread(target=lambda: got_b.extend(b.claim("wh_1", limit=20, lease_s=60)))

        def between_read_and_lease(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE") and not b_claims.is_alive() and not got_b:
                b_claims.start()
                b_claims.join(timeout=1)  # SQLite: B waits for A's write lock until A commits

        event.listen(engine_a, "before_cursor_execute", between_read_and_lease)
        try:
            got_a = a.claim("wh_1", limit=20, lease_s=60)
        finally:
            event.remove(engine_a, "before_cursor_execute", between_read_and_lease)
        b_claims.join(timeout=30)
        assert not b_claims.is_alive()
        ids_a, ids_b = {r["delivery_id"] for r in got_a}, {r["delivery_id"] for r in got_b}
        assert not ids_a & ids_b, f"claimed by both: {sorted(ids_a & ids_b)}"
        assert ids_a | ids_b == {f"d{i:02d}" for i in range(20)}
        assert a.claim("wh_1", limit=20, lease_s=60) == [] == b.claim("wh_1", limit=20, lease_s=60)
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_two_claimers_never_get_the_same_delivery_on_sqlite(tmp_path: Path) -> None:
    check_claims_are_disjoint(f"sqlite:///{tmp_path / 'webhooks.sqlite3'}")
