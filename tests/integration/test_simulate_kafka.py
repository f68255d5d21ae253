"""``careledger simulate`` against the real broker: every generated event lands on the events topic,
keyed by person (employer for postings), pseudonymised, and decodable."""

from __future__ import annotations

import argparse
import time

import pytest
from kafka import KafkaConsumer

from careledger.settings import Settings
from processors.privacy import unseal_batch
from producers.keystore import KeyStore
from producers.simulate import SimConfig, generate
from producers.simulate.cli import register
from schemas.validation import decode_consumed

pytestmark = pytest.mark.integration

LIMIT = 3000


def test_simulate_publishes_pseudonymised_events(kafka_settings: Settings) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--seed", "5", "--persons", "1500", "--id-number-fraction", "0.2",
                              "--limit", str(LIMIT), "--no-progress"])
    assert args.func(args, kafka_settings) == 0

    expected = list(generate(SimConfig(seed=5, persons=1500, id_number_fraction=0.2)))[:LIMIT]
    consumer = KafkaConsumer(kafka_settings.topics.events, **kafka_settings.kafka_client_options(),
                             auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=500)
    got = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < LIMIT and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            got += [(r.key, r.value) for records in batch.values() for r in records]
    finally:
        consumer.close()
    assert len(got) == LIMIT
    assert not any(b'"id_number"' in value for _, value in got)
    events = {}
    for key, value in got:
        event = decode_consumed(value)
        want = event["payload"]["employer"] if event["type"] == "job.posted" else event["person_id"]
        assert key.decode() == want
        events[event["event_id"]] = event
    assert set(events) == {e["event_id"] for e in expected}
    # sensitive fields travel sealed (docs/privacy.md): open them with the stack's key store
    sealed = [e for e in events.values() if "sealed" in e]
    assert sealed and not any("birth_date" in e["payload"] for e in sealed)
    keystore = KeyStore.from_settings(kafka_settings)
    events = {e["event_id"]: e for e in unseal_batch(list(events.values()), keystore)}
    for e in expected:
        if "id_number" in e:  # pseudonymised to an HMAC person_id, nothing else changed
            got_event = events[e["event_id"]]
            assert got_event["person_id"].startswith("p") and got_event["person_id"] != e["id_number"]
            # decode_consumed upcasts (e.g. visit v2 adds duration_minutes): compare what we sent
            assert {k: got_event["payload"][k] for k in e["payload"]} == e["payload"]
