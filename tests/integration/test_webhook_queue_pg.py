"""Webhook delivery claims on PostgreSQL: two deliverer processes never get the same delivery
(the check is in tests/unit/projections/webhooks/test_queue_claims.py; SQLite runs it there)."""

from __future__ import annotations

from tests.unit.projections.webhooks.test_queue_claims import check_claims_are_disjoint


def test_two_claimers_never_get_the_same_delivery_on_postgresql(pg_url: str) -> None:
    check_claims_are_disjoint(pg_url)
