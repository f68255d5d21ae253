"""Webhook signatures, delivery ids and the retry schedule (pure functions)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from processors.webhooks.signing import RetryPolicy, delivery_id, sign, verify

SECRET = "whsec_test-secret"
BODY = '{"alert_id":"A1","rule":"visit_hazard","town":"锦屏街道","outbox_seq":7}'.encode()


def test_signature_is_hmac_sha256_of_the_body() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY) == f"sha256={expected}"
    assert sign(SECRET.encode(), BODY) == sign(SECRET, BODY)


def test_verify_accepts_only_the_right_secret_and_body() -> None:
    header = sign(SECRET, BODY)
    assert verify(SECRET, BODY, header)
    assert not verify("whsec_other", BODY, header)
    assert not verify(SECRET, BODY + b" ", header)
    assert not verify(SECRET, BODY, header.replace("sha256=", "sha1="))
    assert not verify(SECRET, BODY, None)
    assert not verify(SECRET, BODY, "")


def test_delivery_id_is_stable_and_distinct() -> None:
    a = delivery_id("wh_1", "A1", 7)
    assert a == delivery_id("wh_1", "A1", 7)  # same change, same subscription: same id, always
    assert a == "d" + hashlib.sha256(b"wh_1\x00A1\x007").hexdigest()[:31]
    assert len(a) == 32
    others = {delivery_id("wh_2", "A1", 7), delivery_id("wh_1", "A2", 7), delivery_id("wh_1", "A1", 8)}
    assert a not in others and len(others) == 3
    # no ambiguity from concatenation
    assert delivery_id("wh_1", "A17", 1) != delivery_id("wh_1", "A1", 71)


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=60.0)
    assert [policy.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.ceiling(10_000) == 60.0
    with pytest.raises(ValueError):
        policy.ceiling(0)


def test_backoff_jitter_stays_in_the_upper_half() -> None:
    policy = RetryPolicy(base_delay_s=2.0, max_delay_s=300.0)
    assert policy.delay(3, rand=lambda: 0.0) == 4.0
    assert policy.delay(3, rand=lambda: 1.0) == 8.0
    for attempt in range(1, 12):
        for _ in range(50):
            d = policy.delay(attempt)
            assert policy.ceiling(attempt) / 2 <= d <= policy.ceiling(attempt)


def test_total_schedule_and_give_up() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=300.0, max_age_s=3600.0)
    # the longest possible wait before the 10th try is below the maximum age...
    assert sum(policy.ceiling(n) for n in range(1, 10)) < 3600
    assert not policy.gives_up(3599.9)
    assert policy.gives_up(3600.0)
