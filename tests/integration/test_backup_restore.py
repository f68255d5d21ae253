"""``careledger backup`` / ``restore`` against a real broker: a stack restored into a fresh home and
topic builds read models identical to the original's, keeps its tokens and its erasures."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import stat
import threading
import time
from pathlib import Path

import pytest

from infra.backups import BackupError, Manifest, backup, check, restore
from producers.keystore import KeyStore
from producers.simulate.generator import SimConfig, generate
from projections.api.auth import TokenStore
from tests.support.pipeline import open_test_store, publish, wait_caught_up, worker
from tests.support.reliability import clean_run, dead_letters, diff_snapshots, topic_records
from tests.support.servers import TestStack


def _build(settings, name: str, expected_end: int):  # noqa: ANN001, ANN202
    store = open_test_store(settings, settings.sql_url)
    w = worker(settings, "sql", settings.sql_url, name).start()
    try:
        wait_caught_up(settings, {"sql": store}, expected_end=expected_end, timeout=300, workers=[w])
    finally:
        w.stop()
    return store


def test_backup_restore_into_a_fresh_stack_gives_the_same_read_models(stack: TestStack, tmp_path: Path) -> None:
    source = stack.fresh_settings()
    events = list(itertools.islice(generate(SimConfig(seed=41, persons=200)), 2500))
    publish(source, events)  # sensitive fields sealed: the key store holds the persons' data keys
    forgotten = next(e["person_id"] for e in events if e.get("person_id"))
    KeyStore.from_settings(source).forget(forgotten)
    tokens = TokenStore.from_settings(source)
    tokens.migrate()
    token = tokens.create("district-viewer", "viewer")
    original = _build(source, "bk-source", len(events))

    dest = tmp_path / "backup"
    manifest = backup(source, dest, include_secrets=True, progress=False, out=io.StringIO())
    assert sum(p["records"] for p in manifest.partitions.values()) == len(events)
    assert manifest.secrets == {"hmac-key": "included", "master-key": "included", "webhook-key": "absent"}
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for path in dest.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    Manifest.read(dest).verify(dest)
    checked = io.StringIO()
    check(dest, out=checked)
    assert f"{len(events)} records of {source.topics.events}" in checked.getvalue()
    assert "1 erasure tombstones, 1 API tokens" in checked.getvalue()

    target = stack.fresh_settings()  # a new home (no secrets, no key store) and an empty topic
    out = io.StringIO()
    assert restore(target, dest, progress=False, out=out) == len(events)
    assert "1 erasure tombstones restored" in out.getvalue()
    assert (target.secrets_dir / "master-key").read_bytes() == (source.secrets_dir / "master-key").read_bytes()
    restored = _build(target, "bk-target", len(events))

    differences = diff_snapshots(restored.snapshot_rows(), original.snapshot_rows())
    assert differences == {table: 0 for table in differences}, differences
    assert all(row[6] != forgotten for row in restored.snapshot_rows()["ledger"])  # erased before, erased now
    assert TokenStore.from_settings(target).verify(token) is not None
    # alert subscribers of the restored stack get every alert once more: same alert_id (docs/operations.md §4)
    alert_ids = {r.key for r in topic_records(source, source.topics.alerts)}
    assert alert_ids and {r.key for r in topic_records(target, target.topics.alerts)} == alert_ids

    with pytest.raises(BackupError, match="already holds keys"):
        restore(target, dest, progress=False, out=io.StringIO())
    with pytest.raises(BackupError, match="not empty"):
        backup(source, dest, out=io.StringIO())


def test_restore_refuses_a_damaged_backup_before_writing_anything(stack: TestStack, tmp_path: Path) -> None:
    source = stack.fresh_settings()
    publish(source, list(itertools.islice(generate(SimConfig(seed=42, persons=50)), 300)))
    dest = tmp_path / "backup"
    backup(source, dest, include_secrets=False, progress=False, out=io.StringIO())
    dump = next((dest / "events").glob("p*.jsonl.gz"))
    dump.write_bytes(dump.read_bytes()[:-10])  # truncated on its way to the tape

    target = stack.fresh_settings()
    with pytest.raises(BackupError, match="checksum mismatch"):
        check(dest, out=io.StringIO())
    with pytest.raises(BackupError, match="checksum mismatch"):
        restore(target, dest, progress=False, out=io.StringIO())
    assert not (target.secrets_dir / "master-key").exists()
    assert not (target.home / "keys.sqlite3").exists()


def test_restore_into_postgresql_key_store_and_read_models(stack: TestStack, tmp_path: Path) -> None:
    source = stack.fresh_settings()
    events = list(itertools.islice(generate(SimConfig(seed=43, persons=80)), 600))
    publish(source, events)
    tokens = TokenStore.from_settings(source)
    tokens.migrate()
    token = tokens.create("auditor", "admin")
    principal = tokens.verify(token)
    tokens.audit(principal=principal, method="GET", path="/api/alerts", query=None, person_id=None, status=200,
                 subjects=["p-listed-1", "p-listed-2"])  # the persons the list showed
    tokens.audit(principal=principal, method="GET", path="/api/persons/x", query=None, person_id="x", status=200)
    original = _build(source, "pg-source", len(events))
    dest = tmp_path / "backup"
    backup(source, dest, include_secrets=True, progress=False, out=io.StringIO())

    target = dataclasses.replace(stack.fresh_settings(), sql_url=stack.fresh_pg_url(),
                                 keystore_url=stack.fresh_pg_url())
    restore(target, dest, progress=False, out=io.StringIO())
    restored = _build(target, "pg-target", len(events))
    differences = diff_snapshots(restored.snapshot_rows(), original.snapshot_rows())
    assert differences == {table: 0 for table in differences}, differences

    target_tokens = TokenStore.from_settings(target)
    assert target_tokens.verify(token) is not None
    # the audit log's id sequence was moved past the copied rows: new rows still go in
    target_tokens.audit(principal=principal, method="GET", path="/api/audit", query=None, person_id=None, status=200)
    assert [row["path"] for row in target_tokens.audit_rows()["items"]][:3] == ["/api/audit", "/api/persons/x",
                                                                                "/api/alerts"]
    # a subject-access request still finds the list that showed the person
    listed = target_tokens.audit_rows(person_id="p-listed-2")["items"]
    assert [(row["path"], row["persons_listed"]) for row in listed] == [("/api/alerts", 2)]


def _other_district(event: dict) -> dict:
    """The same kind of event for persons the key store has never seen (ids renamed consistently)."""
    def renamed(value: str) -> str:
        return "p" + hashlib.sha256(b"other" + value.encode()).hexdigest()[:32]

    payload = dict(event["payload"])
    for field in ("reverses", "need_id"):
        if payload.get(field):
            payload[field] = payload[field] + "-b"
    return {**event, "event_id": event["event_id"] + "-b", "payload": payload,
            "person_id": renamed(event["person_id"]) if event.get("person_id") else event.get("person_id")}


def test_a_backup_taken_while_events_flow_restores_every_sealed_field(stack: TestStack, tmp_path: Path) -> None:
    """Events of persons new to the key store keep arriving during the backup; whatever the
    interleaving, every event in the dump must find its person's data key in the backup."""
    source = stack.fresh_settings()
    publish(source, list(itertools.islice(generate(SimConfig(seed=44, persons=100)), 800)))
    arriving = [_other_district(e) for e in itertools.islice(generate(SimConfig(seed=45, persons=300)), 3000)]

    first_chunk = threading.Event()

    def keep_publishing() -> None:
        for start in range(0, len(arriving), 100):
            publish(source, arriving[start:start + 100])
            first_chunk.set()

    flow = threading.Thread(target=keep_publishing)
    flow.start()
    try:
        first_chunk.wait(60)
        manifest = backup(source, tmp_path / "backup", include_secrets=True, progress=False, out=io.StringIO())
    finally:
        flow.join()
    assert sum(info["records"] for info in manifest.partitions.values()) >= 900  # some arrived during it
    upto = {p: info["last_offset"] for p, info in manifest.partitions.items() if info["records"]}

    target = stack.fresh_settings()
    published = restore(target, tmp_path / "backup", progress=False, out=io.StringIO())
    restored = _build(target, "flow-target", published)
    assert dead_letters(target) == []  # no sealed field without its key
    reference = clean_run(source, f"sqlite:///{source.home / 'upto.sqlite3'}", upto=upto)
    differences = diff_snapshots(restored.snapshot_rows(), reference.snapshot_rows())
    assert differences == {table: 0 for table in differences}, differences


def test_the_nightly_command_stamps_and_keeps_the_newest(stack: TestStack, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from careledger.cli import main

    source = stack.fresh_settings()
    publish(source, list(itertools.islice(generate(SimConfig(seed=46, persons=30)), 200)))
    for key, value in source.to_env().items():
        monkeypatch.setenv(key, value)
    parent = tmp_path / "nightly"
    made = []
    for _ in range(3):
        assert main(["backup", str(parent), "--stamp", "--keep", "2", "--no-progress"]) == 0
        made.append(max(parent.iterdir()))
        time.sleep(1.1)  # stamps have one-second resolution
    assert sorted(parent.iterdir()) == made[1:]
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    assert main(["restore", "--check", str(made[-1])]) == 0
