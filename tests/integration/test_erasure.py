"""Erasure end to end (issue 7, docs/privacy.md): ingest -> workers (SQLite + ClickHouse) ->
``careledger forget --id-number -`` -> nothing sensitive of that person readable anywhere, their
payments still counted, and a replay of the log into a fresh store (PostgreSQL) gives the same
purged rows.  Also: no raw ID or certificate number at rest after a run that used them."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.privacy import unseal_batch
from producers.csv_import import run_import_csv
from producers.ingest import run_ingest
from producers.keystore import KeyStore
from producers.pseudonym import Pseudonymiser
from projections.sql.store import SqlStore
from schemas.idnumber import checksum_char
from schemas.privacy import ERASED, sensitive_fields
from schemas.validation import decode_consumed
from tests.support.pipeline import REPO_ROOT, open_test_store, wait_caught_up, worker
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration


def id_number(seed: int) -> str:
    first17 = f"3302831936{seed:07d}"[:17]
    return first17 + checksum_char(first17)


def ev(eid: str, type_: str, who: dict[str, str], payload: dict[str, Any], day: int = 5,
       village: str = "东村") -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "occurred_at": f"2024-03-{day:02d}T10:00:00+08:00", "town": "锦屏街道",
            "village": village, **who, "payload": payload}


def read_log(settings: Settings) -> list[tuple[int, int, bytes]]:
    """Every record of the events topic, from the beginning (what replay reads)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    try:
        parts = [TopicPartition(settings.topics.events, p)
                 for p in sorted(consumer.partitions_for_topic(settings.topics.events) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, "could not read the whole log"
            for records in consumer.poll(timeout_ms=500).values():
                out += [(r.partition, r.offset, r.value) for r in records]
        return out
    finally:
        consumer.close()


def scan(roots: list[Path], needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Which files under ``roots`` contain which needle (raw bytes, UTF-8)."""
    found: dict[str, list[str]] = {name: [] for name in needles}
    for root in roots:
        for path in (root.rglob("*") if root.is_dir() else [root]):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for name, needle in needles.items():
                if needle in data:
                    found[name].append(str(path))
    return found


def test_forget_end_to_end(stack: TestStack, kafka_settings: Settings, clickhouse_url: str, pg_url: str,
                           tmp_path: Path) -> None:
    settings = dataclasses.replace(kafka_settings, clickhouse_url=clickhouse_url)
    tag = uuid.uuid4().hex[:8]
    victim_id = id_number(4711)
    victim_birth = "1931-04-23"  # nobody else is born then, and no other value looks like it
    victim_village = f"erasure-village-{tag}"  # positive control: not sensitive, must stay findable
    victim_name, victim_phone = f"遗忘测试{tag}", f"139{int(tag, 16) % 10**8:08d}"  # unique to this run
    other_birth = "1962-11-30"
    victim = {"id_number": victim_id}
    events = [
        ev("v-reg", "person.registered", victim, {"category": "mental", "grade": 1, "birth_date": victim_birth,
                                                   "hardship": True, "certificate_expires": "2030-01-01",
                                                   "name": victim_name, "phone": victim_phone},
           village=victim_village),
        ev("v-pay1", "payment.disbursed", victim, {"program": "living_subsidy", "amount_fen": 50000,
                                                   "period": "2024-03"}, village=victim_village),
        ev("v-pay2", "payment.disbursed", victim, {"program": "living_subsidy", "amount_fen": 50000,
                                                   "period": "2024-03"}, day=6, village=victim_village),
        ev("v-visit", "visit.completed", victim, {"visit_kind": "home_visit", "visitor": "w",
                                                  "hazards": ["abuse_or_neglect"]}, village=victim_village),
        ev("v-chg", "person.profile_changed", victim, {"grade": 2, "hardship": False}, day=7, village=victim_village),
        ev("o-reg", "person.registered", {"person_id": "p-other"}, {
            "category": "visual", "grade": 2, "birth_date": other_birth, "hardship": False,
            "certificate_expires": "2030-01-01"}),
        ev("o-pay", "payment.disbursed", {"person_id": "p-other"}, {"program": "living_subsidy",
                                                                    "amount_fen": 30000, "period": "2024-03"}),
        ev("o-visit", "visit.completed", {"person_id": "p-other"}, {"visit_kind": "home_visit", "visitor": "w",
                                                                   "hazards": ["unsafe_housing"]}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    assert run_ingest(settings, str(path), progress=False) == 0
    # a third person through the CSV importer with an ID number and a certificate number
    csv_id = id_number(9123)
    certificate = csv_id + "21"
    csv_path = tmp_path / "people.csv"
    csv_path.write_text("事件编号,身份证号,残疾证号,发生时间,镇(街道),村(社区),残疾类别,残疾等级,出生日期,是否困难,证件有效期\n"
                        f"c-1,{csv_id},{certificate},2024-03-05 10:00,锦屏街道,西村,肢体,二级,1958/7/9,否,2029-12-31\n",
                        encoding="utf-8")
    assert run_import_csv(settings, str(csv_path), progress=False) == 0

    victim_pid = Pseudonymiser(settings.secret("hmac-key")).person_id(victim_id)
    sql = open_test_store(settings, settings.sql_url)
    ch = open_test_store(settings, clickhouse_url)
    workers = [worker(settings, "sql", settings.sql_url, "sql").start(),
               worker(settings, "clickhouse", clickhouse_url, "ch").start()]
    try:
        wait_caught_up(settings, {"sql": sql, "clickhouse": ch}, expected_end=9, timeout=240, workers=workers)
        assert sql.person_aggregate(victim_pid).birth_date == victim_birth  # unsealed for the live read model
        assert sql.person_record(victim_pid, date(2024, 6, 30), identity=True)["person"]["name"] == victim_name
        payments_before = {name: s.counts("payment") for name, s in (("sql", sql), ("ch", ch))}
        assert payments_before["sql"] == payments_before["ch"] == {
            "events": 3, "persons": 2, "amount_fen": 130000, "positions": 0}
        visits_before = sql.counts("visit")

        proc = subprocess.run(
            [sys.executable, "-m", "careledger.cli", "forget", "--id-number", "-", "--settle", "1"],
            input=victim_id + "\n", capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
            env={**os.environ, **settings.to_env()})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert victim_id not in proc.stdout + proc.stderr and victim_pid in proc.stdout
        assert "webhook deliveries: webhook_deliveries_erased 0, webhook_deliveries_cancelled 0" in proc.stdout
        tombstone = KeyStore.from_settings(settings).tombstones()[victim_pid]

        # new events about the forgotten person are refused by the producer (and dead-lettered redacted)
        late = tmp_path / "late.jsonl"
        late.write_text(json.dumps(ev("v-pay3", "payment.disbursed", victim, {
            "program": "living_subsidy", "amount_fen": 100, "period": "2024-04"})) + "\n")
        assert run_ingest(settings, str(late), progress=False) == 2
        time.sleep(2)
        wait_caught_up(settings, {"sql": sql, "clickhouse": ch}, timeout=120, workers=workers)

        # (2) historical aggregates still count their payments and visits, under the tombstone
        for name, store in (("sql", sql), ("ch", ch)):
            assert store.counts("payment") == payments_before[name], name
        assert sql.counts("visit") == visits_before
        assert sql.counts("person", key="erased") == {"events": 1, "persons": 1, "amount_fen": 0, "positions": 0}
        assert ch.counts("person", key="erased")["events"] == 1
        assert ch.counts("person", key="mental")["events"] == 0

        # nothing person-level left for the victim; nothing sensitive under the tombstone
        assert sql.person_timeline(victim_pid) == {"person": None, "events": [], "alerts": []}
        assert sql.person_aggregate(tombstone) is None
        assert sql.alerts(person_id=victim_pid)["total"] == 0 and sql.alerts(person_id=tombstone)["total"] == 0
        assert sql.alerts(person_id="p-other")["total"] == 1  # the other person's hazard alert stays
        with sql.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT type, payload FROM ledger WHERE person_id = ?", (tombstone,)).all()
            assert len(rows) == 5
            assert all(json.loads(p).get(f) in (None, ERASED, []) for typ, p in rows for f in sensitive_fields(typ))
            assert not any(victim_birth in p or "abuse_or_neglect" in p for _t, p in rows)
            assert not conn.exec_driver_sql("SELECT 1 FROM alert_outbox WHERE body LIKE ?",
                                            (f"%{victim_pid}%",)).all()
        ch_rows = ch._execute("SELECT category, body FROM events WHERE person_id IN (%(a)s, %(b)s)",
                              {"a": victim_pid, "b": tombstone})
        assert len(ch_rows) == 5 and {c for c, _ in ch_rows} == {"erased", ""}
        assert not any(victim_birth in body or "abuse_or_neglect" in body for _, body in ch_rows)
    finally:
        for w in workers:
            w.stop()

    # (3) replay of the whole log into a fresh store (PostgreSQL): the same purged rows
    replay = SqlStore(pg_url, sql.rules, topic=settings.topics.events)
    replay.migrate()
    keystore = KeyStore.from_settings(settings)
    log = read_log(settings)
    decoded = [decode_consumed(value) for _, _, value in log]
    assert not any("birth_date" in e["payload"] for e in decoded if e.get("type") == "person.registered")
    unsealed = unseal_batch(decoded, keystore)
    for i in range(0, len(log), 4):  # small batches, as a replayer would cut them
        replay.apply_batch([Consumed(p, o, e) for (p, o, _), e in zip(log[i:i + 4], unsealed[i:i + 4], strict=True)])
    assert replay.snapshot_rows() == sql.snapshot_rows()
    assert replay.counts("payment") == payments_before["sql"]
    with replay.engine.connect() as conn:
        dump = json.dumps([[list(map(str, r)) for r in conn.exec_driver_sql(f"SELECT * FROM {table}").all()]  # noqa: S608
                           for table in ("ledger", "persons", "needs", "warnings", "alerts", "alert_outbox")])
    assert victim_birth not in dump and victim_pid not in dump and "abuse_or_neglect" not in dump
    assert victim_name not in dump and victim_phone not in dump
    assert other_birth in dump  # positive control: the others' profiles are there

    # (1) + at rest: bytes on disk - Kafka's log dir, SQLite files + key store, ClickHouse data, logs
    needles = {"victim birth date": victim_birth.encode(), "victim ID number": victim_id.encode(),
               "victim name": victim_name.encode(), "victim phone": victim_phone.encode(),
               "csv ID number": csv_id.encode(), "certificate number": certificate.encode()}
    roots = [stack.settings.kafka_dir, settings.home, stack.clickhouse.root, stack.settings.logs_dir]
    found = scan(roots, {**needles, "control": victim_village.encode()})
    assert found["control"], "the scan must find the (non-sensitive) village of the victim's events"
    leaks = {name: paths for name, paths in found.items() if name != "control" and paths}
    assert not leaks, leaks


def test_forget_run_from_a_shell_purges_the_stores_of_the_local_servers(tmp_path: Path) -> None:
    """With CARELEDGER_LOCAL_SERVERS the workers write to private servers; `careledger forget` typed
    in a shell (no URLs in its environment) must purge those stores and say so, not zeros."""
    from infra.process import free_port

    home = tmp_path / "home"
    kafka_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELEDGER_")}
    env.update(CARELEDGER_HOME=str(home), CARELEDGER_KAFKA_PORT=str(kafka_port),
               CARELEDGER_KAFKA_CONTROLLER_PORT=str(free_port()), CARELEDGER_API_PORT=str(api_port),
               CARELEDGER_LOCAL_SERVERS="postgres")

    def careledger(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "careledger.cli", *args], env=env, cwd=REPO_ROOT, input=stdin,
                              capture_output=True, text=True, timeout=300)

    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in [
        ev("sh-reg", "person.registered", {"person_id": "p-shell"}, {
            "category": "visual", "grade": 2, "birth_date": "1944-02-29", "hardship": False,
            "certificate_expires": "2030-01-01"}),
        ev("sh-pay", "payment.disbursed", {"person_id": "p-shell"}, {
            "program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"}),
    ]), encoding="utf-8")
    try:
        started = careledger("up")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "postgres   postgresql" in started.stdout
        assert careledger("ingest", str(events)).returncode == 0
        deadline = time.monotonic() + 120
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/status", timeout=10) as r:  # noqa: S310
                if json.loads(r.read())["caught_up"]:
                    break
            assert time.monotonic() < deadline, "the processor did not catch up"
            time.sleep(0.5)
        forgot = careledger("forget", "p-shell", "--settle", "0")
    finally:
        careledger("down")
    assert forgot.returncode == 0, forgot.stdout + forgot.stderr
    sql_line = next(line for line in forgot.stdout.splitlines() if line.strip().startswith("sql ("))
    assert "postgresql" in sql_line and "ledger 2" in sql_line, forgot.stdout
    assert "data key destroyed" in forgot.stdout
    assert not (home / "projections.sqlite3").exists()  # no default SQLite store was made on the side
