"""The webhook delivery queue on PostgreSQL: two deliverer processes never get the same delivery,
and each POST's audit row is written with its outcome (the checks are in
tests/unit/projections/webhooks/; SQLite runs them there)."""

from __future__ import annotations

from tests.unit.projections.webhooks.test_disclosure_audit import (
    check_outcomes_and_their_audit_rows_are_one_write,
)
from tests.unit.projections.webhooks.test_queue_claims import check_claims_are_disjoint


def test_two_claimers_never_get_the_same_delivery_on_postgresql(pg_url: str) -> None:
    check_claims_are_disjoint(pg_url)


def test_outcomes_and_their_audit_rows_are_one_write_on_postgresql(pg_url: str) -> None:
    check_outcomes_and_their_audit_rows_are_one_write(pg_url)
