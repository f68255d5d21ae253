"""Key store and sealing primitives (producers/keystore.py, docs/privacy.md)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from producers.keystore import (
    KeyStore,
    MasterKeyMismatch,
    PersonForgotten,
    SealedDataError,
    Sealer,
    _Nonces,
    open_box,
    seal_event,
)
from schemas.validation import decode_consumed, validate_event

MASTER = b"unit-test-master-key"


def registered(pid: str = "p1", eid: str = "e1", **payload: Any) -> dict[str, Any]:
    base = {"category": "visual", "grade": 2, "birth_date": "1951-06-17", "hardship": True,
            "certificate_expires": "2029-01-01"}
    base.update(payload)
    return {"event_id": eid, "type": "person.registered", "version": 1, "occurred_at": "2024-03-05T10:00:00+08:00",
            "person_id": pid, "town": "T1", "village": None, "source": None, "payload": base}


def visit(pid: str = "p1", eid: str = "v1", hazards: list[str] | None = None) -> dict[str, Any]:
    return {"event_id": eid, "type": "visit.completed", "version": 2, "occurred_at": "2024-03-06T10:00:00+08:00",
            "person_id": pid, "town": "T1", "village": None, "source": None,
            "payload": {"visit_kind": "home_visit", "visitor": "w", "hazards": hazards or ["unsafe_housing"],
                        "duration_minutes": None}}


@pytest.fixture
def keystore(tmp_path: Path) -> KeyStore:
    return KeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}", MASTER)


def test_seal_moves_sensitive_fields_and_round_trips(keystore: KeyStore) -> None:
    kid, dek = keystore.get_or_create(["p1"])["p1"]
    event = registered()
    sealed = seal_event(event, kid, dek)
    assert set(sealed["payload"]) == {"certificate_expires"}
    assert sealed["sealed"]["alg"] == "AES-256-GCM" and sealed["sealed"]["kid"] == kid
    wire = json.dumps(sealed, separators=(",", ":")).encode()
    assert b"1951-06-17" not in wire and b"visual" not in wire
    decoded = decode_consumed(wire)  # the log accepts the sealed form, sealed kept
    assert decoded["sealed"] == sealed["sealed"]
    assert open_box(decoded, dek) == {"birth_date": "1951-06-17", "category": "visual", "grade": 2, "hardship": True}
    # events without sensitive fields are left alone
    payment = {**registered(), "type": "payment.disbursed",
               "payload": {"program": "living_subsidy", "amount_fen": 100, "period": "2024-03"}}
    assert seal_event(payment, kid, dek) is payment


def test_users_cannot_send_sealed_events(keystore: KeyStore) -> None:
    kid, dek = keystore.get_or_create(["p1"])["p1"]
    result = validate_event(seal_event(registered(), kid, dek))
    assert not result.ok and result.reasons[0].startswith("sealed:")


def test_wrong_key_and_aad_binding_fail(keystore: KeyStore) -> None:
    keys = keystore.get_or_create(["p1", "p2"])
    sealed = seal_event(registered(), *keys["p1"])
    with pytest.raises(SealedDataError):
        open_box(sealed, keys["p2"][1])  # another person's key
    for field, value in (("event_id", "e2"), ("person_id", "p2"), ("type", "person.profile_changed")):
        with pytest.raises(SealedDataError):
            open_box({**sealed, field: value}, keys["p1"][1])  # box moved to another event/person
    tampered = dict(sealed, sealed={**sealed["sealed"], "ct": base64.b64encode(b"x" * 40).decode()})
    with pytest.raises(SealedDataError):
        open_box(tampered, keys["p1"][1])


def test_wrong_master_key_is_a_configuration_error(tmp_path: Path, keystore: KeyStore) -> None:
    keystore.get_or_create(["p1"])
    other = KeyStore(keystore.url, b"another-master-key")
    with pytest.raises(MasterKeyMismatch) as exc:
        other.lookup(["p1"])
    assert "master key" in str(exc.value)


def test_keys_are_stable_and_file_is_private(tmp_path: Path, keystore: KeyStore) -> None:
    first = keystore.get_or_create(["p1"])["p1"]
    assert keystore.get_or_create(["p1"])["p1"] == first
    assert len(first[1]) == 32
    again = KeyStore(keystore.url, MASTER)
    assert again.lookup(["p1"])[0]["p1"] == first
    assert stat.S_IMODE((tmp_path / "keys.sqlite3").stat().st_mode) == 0o600


def test_forget_destroys_the_key_and_its_bytes(tmp_path: Path, keystore: KeyStore) -> None:
    keystore.get_or_create(["p1", "p2"])
    with keystore.engine.connect() as conn:
        wrapped = conn.exec_driver_sql("SELECT wrapped FROM person_keys WHERE person_id='p1'").scalar_one()
    raw_wrapped = base64.b64decode(wrapped)
    path = tmp_path / "keys.sqlite3"
    assert wrapped.encode() in path.read_bytes()
    generation = keystore.generation()
    tombstone = keystore.forget("p1")
    assert tombstone.startswith("x") and tombstone != "p1"
    assert keystore.forget("p1") == tombstone  # idempotent: the same tombstone
    assert keystore.generation() > generation
    keys, tombs = keystore.lookup(["p1", "p2"])
    assert set(keys) == {"p2"} and tombs == {"p1": tombstone}
    data = path.read_bytes()
    assert wrapped.encode() not in data and raw_wrapped not in data  # VACUUM + secure_delete
    with pytest.raises(PersonForgotten):
        keystore.get_or_create(["p1"])  # no new key for a forgotten person
    assert keystore.tombstone_rows()[0].keys() == {"person_digest", "forgotten_at"}


def test_the_tombstone_table_links_no_erased_row_to_the_person(tmp_path: Path, keystore: KeyStore) -> None:
    pids = [f"p{i:05d}" for i in range(20)]
    keystore.get_or_create(pids)
    tombstone_ids = {pid: keystore.forget(pid) for pid in pids[:5]}
    # the key store as a file (what a backup or a stolen disk holds): neither the pseudonyms of the
    # forgotten nor the tombstone ids their erased rows carry in the projections appear in it
    keystore.engine.dispose()
    data = (tmp_path / "keys.sqlite3").read_bytes()
    for pid, tombstone in tombstone_ids.items():
        assert pid.encode() not in data and tombstone.encode() not in data and tombstone[1:].encode() not in data
    assert pids[10].encode() in data  # positive control: a living person's key row is there
    rows = keystore.tombstone_rows()
    assert len(rows) == 5 and not {v for r in rows for v in r.values()} & {*pids, *tombstone_ids.values()}
    # ...yet the person is still known as forgotten, with a stable tombstone id (live = replay)
    reopened = KeyStore(keystore.url, MASTER)
    forgotten = reopened.forgotten()
    assert all(pid in forgotten and forgotten[pid] == tombstone_ids[pid] for pid in pids[:5])
    assert pids[7] not in forgotten and len(set(tombstone_ids.values())) == 5
    # another deployment (another master key) derives other ids: the id is keyed, not a plain hash
    other = KeyStore(f"sqlite:///{tmp_path / 'other.sqlite3'}", b"another-master-key")
    assert other.tombstone_id(pids[0]) != tombstone_ids[pids[0]]


def test_erase_says_what_it_did(keystore: KeyStore) -> None:
    keystore.get_or_create(["p1"])
    first = keystore.erase("p1")
    assert first.key_destroyed and first.newly_forgotten
    again = keystore.erase("p1")
    assert not again.key_destroyed and not again.newly_forgotten
    assert again.tombstone_id == first.tombstone_id and again.forgotten_at == first.forgotten_at
    unknown = keystore.erase("p-never-seen")
    assert not unknown.key_destroyed and unknown.newly_forgotten


def test_sealer_caches_and_notices_forget(keystore: KeyStore) -> None:
    sealer = Sealer(keystore, recheck_s=0.0)
    out = sealer.seal(visit())
    assert "hazards" not in out["payload"] and out["sealed"]
    assert sealer.seal(out) is out  # already sealed
    keystore.forget("p1")
    with pytest.raises(PersonForgotten):
        sealer.seal(visit(eid="v2"))


def test_nonces_are_unique_and_never_shared_with_a_forked_child() -> None:
    """AES-GCM breaks if a nonce repeats under one key: the buffered nonces are handed out once,
    and a child forked with a half-used buffer reads fresh ones instead of continuing it."""
    nonces = _Nonces()
    seen = [nonces.take() for _ in range(3 * _Nonces.BATCH + 5)]  # across refills
    assert len(set(seen)) == len(seen) and {len(n) for n in seen} == {12}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next nonces must not be the parent's
        os.write(write, b"".join(nonces.take() for _ in range(8)))
        os._exit(0)
    os.close(write)
    child = os.read(read, 8 * 12)
    os.waitpid(pid, 0)
    parent = b"".join(nonces.take() for _ in range(8))
    assert len(child) == 96 and child != parent
    assert not {child[i:i + 12] for i in range(0, 96, 12)} & {parent[i:i + 12] for i in range(0, 96, 12)}
