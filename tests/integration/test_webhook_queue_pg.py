"""The webhook delivery queue on PostgreSQL: two deliverer processes never get the same delivery,
and each claimed delivery's audit row is written before its POST and gets the answer with its
outcome (the checks are in tests/unit/projections/webhooks/; SQLite runs them there)."""

from __future__ import annotations

from tests.unit.projections.webhooks.test_disclosure_audit import (
    check_a_post_whose_answer_was_never_recorded_stays_audited,
    check_each_claim_is_audited_before_its_post,
)
from tests.unit.projections.webhooks.test_queue_claims import check_claims_are_disjoint


def test_two_claimers_never_get_the_same_delivery_on_postgresql(pg_url: str) -> None:
    check_claims_are_disjoint(pg_url)


def test_each_claim_is_audited_before_its_post_on_postgresql(pg_url: str) -> None:
    check_each_claim_is_audited_before_its_post(pg_url)


def test_a_post_whose_answer_was_never_recorded_stays_audited_on_postgresql(pg_url: str) -> None:
    check_a_post_whose_answer_was_never_recorded_stays_audited(pg_url)
