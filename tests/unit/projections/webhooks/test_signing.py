"""Webhook signatures (Standard Webhooks), the documented verification example, delivery ids and the
retry schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from projections.webhooks.deliverer import Subscription
from projections.webhooks.poster import Poster
from projections.webhooks.signing import (
    ID_HEADER,
    LEGACY_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidSignature,
    RetryPolicy,
    delivery_id,
    legacy_sign,
    legacy_verify,
    new_secret,
    secret_key,
    sign,
    signed_headers,
    verify,
)

REPO = Path(__file__).resolve().parents[4]
SECRET = "whsec_" + base64.b64encode(b"careledger test secret, 32 bytes").decode()
BODY = '{"alert_id":"A1","rule":"visit_hazard","town":"锦屏街道","outbox_seq":7}'.encode()


def test_the_specs_published_example_signature() -> None:
    # the example of the Standard Webhooks / Svix documentation: secret, id, timestamp, payload -> signature
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": f"v1,bm9ub3Nlbm9ub3Nlbm9ub3Nlbm9ub3Nlbm9ub3Nlbm8= {expected}"}
    assert verify(secret, headers, body, now=1614265330 + 10) == "msg_p5jXN8AQM9LWM0D4loKWxJek"


def test_signature_is_hmac_of_id_timestamp_and_body_with_the_decoded_secret() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, b"d1.1700000000." + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "d1", 1700000000, BODY) == "v1," + base64.b64encode(digest).decode()
    assert sign(SECRET, "d1", "1700000000", BODY) == sign(SECRET, "d1", 1700000000, BODY)


def test_verify_checks_every_part_and_says_which_failed() -> None:
    headers = signed_headers(SECRET, "d1", BODY, now=1_700_000_000)
    assert verify(SECRET, headers, BODY, now=1_700_000_100) == "d1"
    assert verify(SECRET, {k.upper(): v for k, v in headers.items()}, BODY, now=1_700_000_000) == "d1"
    cases = {
        "no matching signature": [(new_secret(), headers, BODY), (SECRET, headers, BODY + b" "),
                                  (SECRET, {**headers, ID_HEADER: "d2"}, BODY),
                                  (SECRET, {**headers, TIMESTAMP_HEADER: "1700000001"}, BODY),
                                  (SECRET, {**headers, SIGNATURE_HEADER: headers[SIGNATURE_HEADER].replace("v1,", "v2,")},
                                   BODY)],
        "missing": [(SECRET, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}, BODY)],
        "not an integer": [(SECRET, {**headers, TIMESTAMP_HEADER: "soon"}, BODY)],
    }
    for reason, attempts in cases.items():
        for secret, hdrs, body in attempts:
            with pytest.raises(InvalidSignature, match=reason):
                verify(secret, hdrs, body, now=1_700_000_000)
    with pytest.raises(InvalidSignature, match="too old"):  # a replay 6 minutes later
        verify(SECRET, headers, BODY, now=1_700_000_000 + 360)
    with pytest.raises(InvalidSignature, match="too old or too far in the future"):
        verify(SECRET, headers, BODY, now=1_700_000_000 - 360)


def test_new_secrets_are_whsec_and_standard_base64_of_32_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) == 32
    assert new_secret() != secret


def test_secrets_issued_before_the_spec_still_sign() -> None:
    old = "whsec_" + "Ab-_" * 10 + "xyz"  # secrets.token_urlsafe(32): URL-safe, no padding
    assert secret_key(old) == base64.urlsafe_b64decode(old[6:] + "=")
    headers = signed_headers(old, "d9", BODY, now=1_700_000_000)
    assert verify(old, headers, BODY, now=1_700_000_000) == "d9"


def test_legacy_header_is_still_sent_and_verifies() -> None:
    headers = signed_headers(SECRET, "d1", BODY)
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers[LEGACY_SIGNATURE_HEADER] == f"sha256={expected}" == legacy_sign(SECRET, BODY)
    assert legacy_verify(SECRET, BODY, headers[LEGACY_SIGNATURE_HEADER])
    assert not legacy_verify("whsec_other", BODY, headers[LEGACY_SIGNATURE_HEADER])
    assert not legacy_verify(SECRET, BODY, None)


def doc_example() -> Callable[..., bool]:
    text = (REPO / "docs" / "alert-delivery.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- example: webhook-verify -->\s*```python\n(.*?)```", text, re.S)
    assert found, "docs/alert-delivery.md lost its webhook-verify example"
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), "docs/alert-delivery.md", "exec"), namespace)  # noqa: S102 - our own doc
    return namespace["verify_webhook"]


class _Capture(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Capture.got.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()


def test_the_documented_verification_accepts_what_the_deliverer_sends() -> None:
    verify_webhook = doc_example()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Capture.got = []
    try:
        sub = Subscription("wh_doc", f"http://127.0.0.1:{server.server_address[1]}/hook", new_secret(), None, None)
        with Poster(5) as poster:
            attempt = poster.post(sub.url, sub.subscription_id, sub.secret,
                                  {"delivery_id": delivery_id("wh_doc", "A1", 7), "body": BODY.decode()})
    finally:
        server.shutdown()
        server.server_close()
    assert attempt.ok
    (headers, body), = _Capture.got
    assert body == BODY and headers["webhook-id"] == delivery_id("wh_doc", "A1", 7)
    assert verify_webhook(sub.secret, headers, body) is True
    assert verify(sub.secret, headers, body) == headers["webhook-id"]  # our verify agrees
    assert verify_webhook(sub.secret, headers, body + b" ") is False
    assert verify_webhook(new_secret(), headers, body) is False
    assert verify_webhook(sub.secret, {**headers, "webhook-id": "other"}, body) is False
    stale = signed_headers(sub.secret, headers["webhook-id"], body, now=time.time() - 600)
    assert verify_webhook(sub.secret, stale, body) is False  # a replay of a 10-minute-old request
    assert verify_webhook(sub.secret, signed_headers(sub.secret, "d", body), body) is True


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
