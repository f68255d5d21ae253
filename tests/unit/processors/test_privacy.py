"""unseal_batch, erasure markers, and forget == replay on the SQL store (docs/privacy.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from careledger.settings import Settings
from processors.domain.counts import reference_counts
from processors.domain.rules_config import default_rules
from processors.privacy import unseal_batch
from processors.runtime.records import RawRecord
from producers.keystore import KeyStore, KeyStoreError, SealedDataError, Sealer
from producers.pipeline import prepare
from producers.pseudonym import Pseudonymiser
from producers.publisher import EventPublisher, PublishError, encode
from projections.sql.store import SqlStore
from schemas.privacy import ERASED, erase_event
from schemas.validation import decode_consumed
from tests.support.runtime import run_raws
from tests.unit.producers.conftest import FakeProducer
from tests.unit.projections.gen import Gen, partition_of

RULES = default_rules()


@pytest.fixture
def keystore(tmp_path: Path) -> KeyStore:
    return KeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}", b"unit-master")


def wire(events: list[dict[str, Any]], keystore: KeyStore) -> list[bytes]:
    sealer = Sealer(keystore)
    return [encode(sealer.seal(e) if e.get("person_id") else e) for e in events]


def raws_of(events: list[dict[str, Any]], values: list[bytes], partitions: int = 3) -> list[RawRecord]:
    nxt = [0] * partitions
    out = []
    for event, value in zip(events, values, strict=True):
        p = partition_of(event, partitions)
        out.append(RawRecord(p, nxt[p], None, value))
        nxt[p] += 1
    return out


def test_unseal_restores_exactly_the_plain_events(keystore: KeyStore) -> None:
    events = Gen(seed=3, persons=15).stream(200)
    values = wire(events, keystore)
    assert sum(b'"sealed":' in v for v in values) > 15
    decoded = [decode_consumed(v) for v in values]
    plain = [decode_consumed(encode(e)) for e in events]
    assert unseal_batch(decoded, keystore) == plain
    untouched = [e for e in decoded if "sealed" not in e]
    assert all(a is b for a, b in zip(untouched, unseal_batch(untouched, keystore), strict=True))


def test_forgotten_person_gets_erased_markers_sealed_or_plain(keystore: KeyStore) -> None:
    gen = Gen(seed=4, persons=3)
    events = gen.stream(60)
    values = wire(events, keystore)
    tomb = keystore.forget("p00001")
    sealed_out = unseal_batch([decode_consumed(v) for v in values], keystore)
    plain_out = unseal_batch([decode_consumed(encode(e)) for e in events], keystore)  # pre-sealing log
    assert sealed_out == plain_out
    mine = [e for e in sealed_out if e and e["person_id"] == tomb]
    assert mine and not any(e["person_id"] == "p00001" for e in sealed_out if e)
    for e in mine:
        assert e["erased"] is True and "sealed" not in e
        if e["type"] == "person.registered":
            assert e["payload"]["category"] == ERASED
            assert e["payload"]["grade"] is None and e["payload"]["birth_date"] is None
            assert e["payload"]["hardship"] is None
        if e["type"] == "visit.completed":
            assert e["payload"]["hazards"] == []
        if e["type"] == "person.profile_changed":
            assert not {"grade", "hardship", "category"} & set(e["payload"])
    others = [e for e in sealed_out if e and e.get("person_id") not in (tomb, None)]
    assert others and all("erased" not in e for e in others)


def test_bad_box_is_poison_and_unknown_key_is_fatal(keystore: KeyStore, tmp_path: Path) -> None:
    events = [e for e in Gen(seed=5, persons=2).stream(20) if e["type"] == "person.registered"]
    decoded = [decode_consumed(v) for v in wire(events, keystore)]
    moved = dict(decoded[0], event_id="other")  # a box copied onto another event
    with pytest.raises(SealedDataError):
        unseal_batch([moved], keystore)
    errors: list[int] = []
    out = unseal_batch([moved, decoded[1]], keystore, on_error=lambda i, exc: errors.append(i))
    assert errors == [0] and out[0] is None and out[1]["payload"]["category"]
    elsewhere = KeyStore(f"sqlite:///{tmp_path / 'other.sqlite3'}", b"unit-master")
    with pytest.raises(KeyStoreError, match="neither a data key nor a tombstone"):
        unseal_batch([decoded[0]], elsewhere)


def test_erase_event_is_deterministic_and_leaves_input() -> None:
    event = Gen(seed=6, persons=1).stream(5)[0]
    before = json.dumps(event, sort_keys=True)
    assert erase_event(event, "x1") == erase_event(json.loads(before), "x1")
    assert json.dumps(event, sort_keys=True) == before


def test_producer_seals_and_refuses_forgotten(keystore: KeyStore, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare() validates and pseudonymises; the publisher seals (creating keys in batches)."""
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARELEDGER_KEYSTORE_URL", keystore.url)
    monkeypatch.setenv("CARELEDGER_MASTER_KEY", "unit-master")
    pseudonymiser = Pseudonymiser(b"hmac", Sealer(keystore, recheck_s=0.0))
    record = {"event_id": "e1", "type": "person.registered", "occurred_at": "2024-03-05T10:00:00+08:00",
              "id_number": "110101199003071233", "town": "T",
              "payload": {"category": "mental", "grade": 1, "birth_date": "1937-02-11", "hardship": False,
                          "certificate_expires": "2030-01-01"}}
    result, value = prepare(dict(record), pseudonymiser)
    assert result.ok and value is not None and b"110101199003071233" not in value
    fake = FakeProducer()
    with EventPublisher(Settings.from_env(), producer=fake) as publisher:
        publisher.publish(result.event, value=value)
    [(_, _, wire)] = fake.sent
    assert b"1937-02-11" not in wire and b"mental" not in wire and b"110101199003071233" not in wire
    assert decode_consumed(wire)["sealed"]["kid"]
    dry, dry_value = prepare(dict(record), pseudonymiser, seal=False)
    assert dry.ok and b"1937-02-11" in dry_value
    keystore.forget(result.event["person_id"])
    rejected, _ = prepare(dict(record, event_id="e2"), pseudonymiser)
    assert not rejected.ok and "erased" in rejected.reasons[0]
    payment = dict(record, event_id="e3", type="payment.disbursed",
                   payload={"program": "living_subsidy", "amount_fen": 100, "period": "2024-03"})
    refused, _ = prepare(payment, pseudonymiser)  # nothing sensitive, still no longer accepted
    assert not refused.ok and "erased" in refused.reasons[0]
    assert "110101199003071233" not in repr(rejected.reasons)


def test_publisher_seals_what_callers_left_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    fake = FakeProducer()
    publisher = EventPublisher(settings, producer=fake)
    event = Gen(seed=8, persons=1).stream(3)[0]
    publisher.publish(event)
    publisher.publish_and_wait([(event, None)])
    for _, message in fake.messages("careledger.events"):
        assert "sealed" in message and "birth_date" not in message["payload"]
    KeyStore.from_settings(settings).forget(event["person_id"])
    publisher.sealer._sealer._recheck_s = 0.0
    publisher.publish(event)  # held until the next release, which refuses it
    with pytest.raises(PublishError, match="PersonForgotten"):
        publisher.flush()
    assert len(fake.messages("careledger.events")) == 2


# ---- forget on the SQL store == replay of the log into a fresh store --------------------------------
def run_batches(store: SqlStore, keystore: KeyStore, raws: list[RawRecord], size: int) -> list[str]:
    return run_raws(store, raws, size, keystore)


def test_forget_then_replay_gives_the_same_purged_rows(tmp_path: Path, keystore: KeyStore) -> None:
    gen = Gen(seed=21, persons=25)
    events = gen.stream(700)
    raws = raws_of(events, wire(events, keystore))
    victims = ["p00003", "p00007", "p00011"]
    live = SqlStore(f"sqlite:///{tmp_path / 'live.sqlite3'}", RULES)
    live.migrate()
    half = len(raws) // 2
    assert run_batches(live, keystore, raws[:half], 97) == []
    before = {kind: live.counts(kind) for kind in ("payment", "visit", "service", "person", "need", "job")}
    tombs = {}
    for pid in victims:
        tombs[pid] = keystore.forget(pid)
        live.forget(pid, tombs[pid])
    assert {k: live.counts(k) for k in before} == before  # historical aggregates unchanged
    assert run_batches(live, keystore, raws[half:], 89) == []  # later events of victims: erased
    replay = SqlStore(f"sqlite:///{tmp_path / 'replay.sqlite3'}", RULES)
    replay.migrate()
    assert run_batches(replay, keystore, raws, 131) == []
    live_rows, replay_rows = live.snapshot_rows(), replay.snapshot_rows()
    for table in live_rows:
        assert live_rows[table] == replay_rows[table], table
    # every count still matches the events, with forgotten persons under their tombstone
    renamed = [dict(e, person_id=tombs.get(e["person_id"], e["person_id"])) for e in events]
    for kind in ("payment", "visit", "service", "need", "job", "posting"):
        assert replay.counts(kind) == reference_counts(renamed, kind), kind
    assert replay.counts("person", key=ERASED)["persons"] == len(victims)
    # nothing of the victims is readable: no person row, alert, outbox row or sensitive value
    for pid in victims:
        timeline = live.person_timeline(pid)
        assert timeline == {"person": None, "events": [], "alerts": []}
        assert replay.person_timeline(pid) == timeline
        assert live.person_aggregate(tombs[pid]) is None
        assert live.alerts(person_id=tombs[pid])["total"] == 0
    with live.engine.connect() as conn:
        payloads = [(typ, json.loads(b)) for typ, b in conn.exec_driver_sql(
            "SELECT type, payload FROM ledger WHERE person_id IN (?, ?, ?)", tuple(tombs.values()))]
        outbox = conn.exec_driver_sql("SELECT body FROM alert_outbox").all()
    assert payloads
    for _typ, p in payloads:  # erased markers only (schemas.privacy.erase_event)
        assert p.get("birth_date") is None and p.get("grade") is None and p.get("hardship") is None
        assert p.get("category") in (None, ERASED) and not p.get("hazards")
    assert not any(pid in body for (body,) in outbox for pid in victims)
    victim_births = {e["payload"]["birth_date"] for e in events
                     if e["type"] == "person.registered" and e["person_id"] in victims}
    others = {e["payload"]["birth_date"] for e in events
              if e["type"] == "person.registered" and e["person_id"] not in victims}
    assert victim_births - others
    for path in tmp_path.glob("live.sqlite3*"):  # the file, its WAL: VACUUM + checkpoint at forget
        data = path.read_bytes()
        for birth in victim_births - others:
            assert birth.encode() not in data, path.name


def test_forget_is_idempotent(tmp_path: Path, keystore: KeyStore) -> None:
    events = Gen(seed=22, persons=5).stream(120)
    raws = raws_of(events, wire(events, keystore))
    store = SqlStore(f"sqlite:///{tmp_path / 's.sqlite3'}", RULES)
    store.migrate()
    run_batches(store, keystore, raws, 50)
    tomb = keystore.forget("p00002")
    first = store.forget("p00002", tomb)
    assert first["ledger"] > 0 and first["persons"] == 1
    rows = store.snapshot_rows()
    assert store.forget("p00002", tomb) == dict.fromkeys(first, 0)
    assert store.snapshot_rows() == rows


def test_settings_default_keystore_follows_home(tmp_path: Path) -> None:
    settings = Settings.from_env()
    moved = dataclasses.replace(settings, home=tmp_path)
    assert moved.keystore_db_url == f"sqlite:///{tmp_path / 'keys.sqlite3'}"
