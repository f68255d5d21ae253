"""``careledger ingest`` against the real broker: exactly the valid events land on the events topic,
keyed right; rejects land on the dead-letter topic with reasons; no raw ID number anywhere."""

from __future__ import annotations

import dataclasses
import io
import json
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from careledger.settings import Settings, Topics
from infra.kafka_broker import ensure_topics
from producers.csv_import import run_import_csv
from producers.ingest import run_ingest
from producers.keystore import KeyStore
from producers.pseudonym import Pseudonymiser
from schemas import decode_consumed

pytestmark = pytest.mark.integration

IDS = ["110101199003071233", "11010519491231002X", "440306198512150022"]
BAD_ID = "110101199003071234"  # wrong check digit


def ev(event_id: str, **changes: object) -> dict:
    base = {"event_id": event_id, "type": "payment.disbursed", "occurred_at": "2024-03-05T10:12:00+08:00",
            "town": "锦屏街道", "village": "东村",
            "payload": {"program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"}}
    base.update(changes)
    return base


def consume(settings: Settings, topic: str, expected: int, settle_s: float = 3.0) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(topic, **settings.kafka_client_options(), auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=500)
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 60
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            got += [(r.key, r.value) for records in batch.values() for r in records]
            if len(got) >= expected:
                quiet_until = quiet_until or time.monotonic() + settle_s  # catch any extra message
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    # fewer than expected is a failure here, not a minute's wait before a comparison that may still
    # pass: the worker test expected one event more than ingest sends and waited 2 x 60 s for it
    assert len(got) >= expected, f"{topic}: {len(got)} messages within 60 s, expected {expected}"
    return got


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-worker-processes"])
def test_ingest_publishes_exactly_the_valid_events(kafka_settings: Settings, tmp_path: Path, workers: int) -> None:
    posting = ev("post-1", type="job.posted", payload={"employer": "某某公司", "positions": 2})
    bad_amount = ev("bad-1", id_number=IDS[2])
    bad_amount["payload"]["amount_fen"] = -1
    lines = [
        json.dumps(ev("pay-1", id_number=IDS[0])),
        json.dumps(ev("pay-2", id_number=IDS[1])),
        "",
        json.dumps(ev("pay-1", id_number=IDS[0])),  # re-sent
        json.dumps(bad_amount),
        json.dumps(ev("bad-2", id_number=BAD_ID)),
        '{"event_id": "broken", "id_number": "' + IDS[2] + '", ',
        b"\xff\xfe not utf-8",
        json.dumps(posting, ensure_ascii=False),
        json.dumps(ev("pay-3", person_id="p-existing")),
    ]
    out = io.StringIO()
    code = run_ingest(kafka_settings, str(write_lines(tmp_path / "mixed.jsonl", lines)), progress=False,
                      workers=workers, out=out, err=io.StringIO())
    summary = out.getvalue()
    assert code == 2, summary
    assert "accepted: 4" in summary and "duplicates: 1" in summary and "rejected: 4" in summary
    assert "line 5: payload.amount_fen: must be an integer > 0" in summary
    assert "line 6: id_number:" in summary

    pseudo = Pseudonymiser.from_settings(kafka_settings)
    events = consume(kafka_settings, kafka_settings.topics.events, expected=4)
    decoded = {decode_consumed(value)["event_id"]: (key.decode(), decode_consumed(value)) for key, value in events}
    assert sorted(decoded) == ["pay-1", "pay-2", "pay-3", "post-1"]
    assert len(events) == 4  # the re-sent pay-1 was not published twice
    assert decoded["pay-1"][0] == decoded["pay-1"][1]["person_id"] == pseudo.person_id(IDS[0])
    assert decoded["pay-2"][0] == pseudo.person_id(IDS[1])
    assert decoded["pay-3"][0] == "p-existing"
    assert decoded["post-1"][0] == "某某公司"

    dead = [json.loads(value) for _, value in consume(kafka_settings, kafka_settings.topics.dlq, expected=4)]
    assert sorted(d["origin"]["line"] for d in dead) == [5, 6, 7, 8]
    assert all(d["reasons"] and d["origin"]["source"].endswith("mixed.jsonl") for d in dead)
    by_line = {d["origin"]["line"]: d for d in dead}
    assert by_line[5]["record"]["event_id"] == "bad-1"
    assert any(r.startswith("payload.amount_fen:") for r in by_line[5]["reasons"])


def test_worker_processes_give_the_same_run_as_one_process(kafka_settings: Settings, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers that each check, seal and send a share change nothing users see: the same events
    with the same keys, each person's in input order, the same dead letters and summary (erased
    persons and repeats included), sensitive fields sealed either way."""
    import producers.ingest

    monkeypatch.setattr(producers.ingest, "CHUNK_LINES", 3)  # many chunks, several in flight
    erased_id = IDS[1]
    erased_pid = Pseudonymiser.from_settings(kafka_settings).person_id(erased_id)
    KeyStore.from_settings(kafka_settings).forget(erased_pid)
    registered = ev("reg-1", type="person.registered", id_number=IDS[0],
                    payload={"category": "physical", "grade": 2, "birth_date": "1990-03-07", "hardship": True,
                             "certificate_expires": "2030-01-01", "name": "张三", "phone": "13800000000"})
    bad = ev("bad-1", person_id="p-x")
    bad["payload"]["amount_fen"] = -5
    lines: list[str | bytes] = [
        "\ufeff" + json.dumps(registered), "", json.dumps(bad), '{"event_id": "x", ', b"\xff\xfe{}",
        json.dumps(ev("gone-1", id_number=erased_id)), json.dumps(registered), "[1, 2]",
        json.dumps(ev("post-1", type="job.posted", payload={"employer": "某某公司", "positions": 2})),
    ] + [json.dumps(ev(f"v{i}", person_id=f"p{i % 4}", payload={
        "program": "living_subsidy", "amount_fen": 100 + i, "period": "2024-03"})) for i in range(30)]
    path = write_lines(tmp_path / "mixed.jsonl", lines)

    def one_run(workers: int) -> tuple[str, dict[str, list[dict]], list[tuple[int, list[str]]]]:
        settings = dataclasses.replace(kafka_settings, topics=Topics.with_namespace(f"w{workers}{uuid.uuid4().hex[:8]}"))
        ensure_topics(settings)
        out = io.StringIO()
        assert run_ingest(settings, str(path), progress=False, workers=workers, out=out, err=io.StringIO()) == 2
        by_key: dict[str, list[dict]] = {}
        for key, value in consume(settings, settings.topics.events, expected=32):  # the repeat is not sent
            body = decode_consumed(value)
            if body["type"] == "person.registered":  # sealed either way (a fresh nonce each time)
                assert body.pop("sealed")["kid"]
            by_key.setdefault(key.decode(), []).append(body)
        dlq = sorted((d["origin"]["line"], d["reasons"]) for d in
                     (json.loads(v) for _, v in consume(settings, settings.topics.dlq, expected=5)))
        return out.getvalue().split("report: ")[0], by_key, dlq

    alone, with_workers = one_run(0), one_run(2)
    assert with_workers == alone
    summary, by_key, dlq = alone
    assert "accepted: 32" in summary and "duplicates: 1" in summary and "rejected: 5" in summary
    assert [line for line, _ in dlq] == [3, 4, 5, 6, 8]
    assert "erased" in dlq[3][1][0]
    assert [e["event_id"] for e in by_key["p1"]] == [f"v{i}" for i in range(1, 30, 4)]  # in input order


def test_no_raw_id_number_reaches_kafka(kafka_settings: Settings, tmp_path: Path) -> None:
    leaky_reason = ev("rev-1", type="payment.reversed", id_number=IDS[0],
                      payload={"reverses": "pay-1", "reason": f"wrong person {IDS[1]}"})
    lines = [
        json.dumps(ev("pay-1", id_number=IDS[0])),
        json.dumps(ev("pay-2", id_number=IDS[1].lower())),
        json.dumps(leaky_reason, ensure_ascii=False),
        json.dumps(ev("bad-2", id_number=BAD_ID)),
        json.dumps(ev("bad-3", person_id=IDS[2])),
        json.dumps(ev(IDS[2], person_id="p1", source=f"terminal {IDS[2]}")),
        '{"id_number": "' + IDS[2] + '" broken',
    ]
    code = run_ingest(kafka_settings, str(write_lines(tmp_path / "ids.jsonl", lines)), progress=False,
                      out=io.StringIO(), err=io.StringIO())
    assert code == 2
    csv_text = (f"事件编号,身份证号,残疾证号,发生时间,镇街,需求编号,需求类型\n"
                f"c1,{IDS[0]},,2024-03-05,锦屏街道,n1,就业\nc2,,{IDS[1]}42,2024-03-05,锦屏街道,n2,康复\n"
                f"c3,{BAD_ID},,2024-03-05,锦屏街道,n3,不存在\n")
    (tmp_path / "ids.csv").write_text(csv_text, encoding="utf-8-sig")
    assert run_import_csv(kafka_settings, str(tmp_path / "ids.csv"), progress=False, out=io.StringIO(),
                          err=io.StringIO()) == 2

    published = consume(kafka_settings, kafka_settings.topics.events, expected=4)
    dead = consume(kafka_settings, kafka_settings.topics.dlq, expected=6)
    assert len(published) == 4 and len(dead) == 6
    everything = b"".join((key or b"") + value for key, value in published + dead)
    for number in IDS + [BAD_ID]:
        for form in (number, number.lower()):
            assert form.encode() not in everything, "a raw ID number reached Kafka"
    report_text = "".join(p.read_text() for p in kafka_settings.reports_dir.glob("*.jsonl"))
    assert report_text and all(number not in report_text for number in IDS + [BAD_ID])
