"""Poison written straight to careledger.events (a raw KafkaProducer, no validation) between valid
events: every poison message lands on careledger.events.dlq with a reason and its position, the
valid neighbours on the same partitions are applied, processing continues and the lag returns to 0.

Uses the session broker with the test's own topics (nothing is killed here).
"""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer

from producers.publisher import encode
from schemas.validation import partition_key
from tests.support.pipeline import open_test_store, publish, wait_caught_up, worker
from tests.support.reliability import clean_run, dead_letters, diff_snapshots, record, sample_events
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration


def _poison(valid: dict) -> dict[str, tuple[bytes, bytes | None]]:
    """name -> (value, key); keys borrowed from a valid event so each lands among valid neighbours."""
    key = partition_key(valid).encode()
    payment = {"event_id": "poison-1", "type": "payment.disbursed", "version": 1,
               "occurred_at": "2024-03-05T10:12:00+08:00", "person_id": valid["person_id"], "town": "城关镇",
               "village": None, "source": "test",
               "payload": {"program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"}}
    return {
        "not JSON": (b"{not json", key),
        "invalid UTF-8": (b'{"event_id": "\xff\xfe"}', key),
        "unknown version": (encode({**payment, "event_id": "poison-v", "version": 99}), key),
        "unknown type": (encode({**payment, "event_id": "poison-t", "type": "person.teleported"}), key),
        "huge payload (1.5 MB)": (encode({**payment, "event_id": "poison-h",
                                          "payload": {**payment["payload"], "note": "x" * 1_500_000}}), key),
        "wrong key": (encode({**payment, "event_id": "poison-k"}), b"somebody-else"),
        "valid JSON, fields missing": (b'{"event_id": "poison-m", "type": "payment.disbursed"}', key),
        "JSON but not an object": (b"[1, 2, 3]", key),
        "empty message": (b"", key),
        "10k nested arrays": (b"[" * 10_000 + b"]" * 10_000, key),
        "raw ID number on the topic": (encode({**payment, "event_id": "poison-id", "person_id": None,
                                               "id_number": "110101199003071233"}), key),
    }


def test_poison_goes_to_the_dead_letter_topic_and_processing_continues(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = sample_events(persons=300, seed=27)
    half = len(events) // 2
    publish(settings, events[:half])
    poison = _poison(next(e for e in events[half:] if e.get("person_id")))
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_request_size=4 * 1024 * 1024)
    positions = {}
    try:
        for name, (value, key) in poison.items():
            meta = producer.send(settings.topics.events, key=key, value=value).get(timeout=30)
            positions[(meta.partition, meta.offset)] = name
    finally:
        producer.close()
    publish(settings, events[half:])

    url = f"sqlite:///{settings.home / 'poisoned.sqlite3'}"
    store = open_test_store(settings, url)
    victim = worker(settings, "sql", url, "poison").start()
    try:
        waited = wait_caught_up(settings, {"sql": store}, expected_end=len(events) + len(poison), timeout=600,
                                workers=[victim])
    finally:
        victim.stop()
    letters = dead_letters(settings)
    by_name = {positions[(d["origin"]["partition"], d["origin"]["offset"])]: d for d in letters
               if (d["origin"].get("partition"), d["origin"].get("offset")) in positions}
    reference = clean_run(settings, f"sqlite:///{settings.home / 'clean.sqlite3'}")
    differences = diff_snapshots(store.snapshot_rows(), reference.snapshot_rows())
    applied = len(store.snapshot_rows()["ledger"])
    record("poison", "Poison messages written straight to careledger.events",
           claim="{poison_sent} poison messages (" + ", ".join(poison) + ") among {valid_events} valid events: {dead_lettered} "
                 "dead-lettered with a reason, {valid_applied} valid events applied, lag back to 0 in "
                 "{catch_up_s:.0f} s, {differences} rows differ from a clean run",
           poison_sent=len(poison), valid_events=len(events),
           dead_lettered=len(by_name), valid_applied=applied, catch_up_s=round(waited, 1),
           differences=sum(differences.values()),
           reasons={name: d["reasons"][0][:80] for name, d in sorted(by_name.items())})
    missing = set(poison) - set(by_name)
    assert not missing, f"not dead-lettered: {missing}"
    for name, letter in by_name.items():
        assert letter["reasons"] and all(r.strip() for r in letter["reasons"]), (name, letter)
        assert letter["origin"]["source"] == settings.topics.events
        assert "110101199003071233" not in json.dumps(letter, ensure_ascii=False), "raw ID number in a dead letter"
    assert "key" in by_name["wrong key"]["reasons"][0]
    assert applied == len({e["event_id"] for e in events})
    assert differences == {t: 0 for t in differences}, differences
