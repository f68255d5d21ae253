"""A malformed message on careledger.alerts / careledger.warnings is skipped, never raised: the
consumer loop has no handler, so one such message stopped the deliverer before its offsets were
committed - and it read the same message again after every restart."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from careledger.settings import Settings
from projections.webhook_store import WebhookStore
from projections.webhooks.deliverer import Deliverer, Subscription, deliveries_for

SECRET = "p-secret-42"  # in every poison body: a skipped message is not echoed into the log


def message(**fields: object) -> bytes:
    return json.dumps({"alert_id": "A1", "rule": "visit_hazard", "person_id": SECRET, "town": "锦屏街道",
                       "outbox_seq": 5, **fields}, ensure_ascii=False).encode()


POISON = [
    b'{"alert_id":"A1","outbox_seq":1e999,"person_id":"' + SECRET.encode() + b'"}',  # OverflowError
    message(person_id=[SECRET]),  # unhashable
    message(rule={"x": SECRET}),
    message(town=[SECRET]),
    message(outbox_seq=True),
    message(outbox_seq="5"),
    message(outbox_seq=2 ** 70),  # no BIGINT holds it: the insert raised
    message(outbox_seq=-1),
    message(alert_id=7),
    message(alert_id=""),
    message(alert_id="A" * 300),  # longer than the column
    message(alert_id=None, warning_id=["W1"]),
    json.dumps({"alert_id": "A1", "person_id": SECRET, "outbox_seq": 5}).encode("utf-16"),  # JSON, not UTF-8
    b"[" * 100_000,  # RecursionError
    b'{"alert_id":"A1","outbox_seq":NaN}',
    b"[1,2]",
    b"not json " + SECRET.encode(),
    None,  # a tombstone
]
SUBS = [Subscription("wh_1", "http://x", "whsec_AAAA", frozenset({"visit_hazard"}), frozenset({"锦屏街道"})),
        Subscription("wh_2", "http://x", "whsec_AAAA", None, None)]


@pytest.mark.parametrize("value", POISON, ids=range(len(POISON)))
def test_a_malformed_message_gives_no_delivery(value: bytes | None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="careledger.webhooks"):
        assert deliveries_for(SUBS, value, frozenset({"p-gone"})) == []  # type: ignore[arg-type]
    assert caplog.messages and not any(SECRET in m for m in caplog.messages)


def test_handle_skips_malformed_messages_and_stores_the_good_ones(
        settings: Settings, store: WebhookStore, caplog: pytest.LogCaptureFixture) -> None:
    deliverer = Deliverer(settings, store)
    deliverer.subscriptions = SUBS
    good = [message(alert_id="A2", outbox_seq=6), message(warning_id="W1", alert_id=None, person_id=None, town=None,
                                                          outbox_seq=7)]
    batch = [SimpleNamespace(value=v, headers=[], topic="careledger.alerts", partition=0, offset=i)
             for i, v in enumerate(POISON + good)]
    with caplog.at_level("WARNING", logger="careledger.webhooks"):
        assert deliverer.handle(batch) == 2 + 1  # A2 to both subscriptions; W1 (no town) to wh_2 only
    assert not any(SECRET in m for m in caplog.messages)
    assert store.deliveries("wh_1")["total"] == 1 and store.deliveries("wh_2")["total"] == 2
