"""``careledger ingest`` against the real broker: exactly the valid events land on the events topic,
keyed right; rejects land on the dead-letter topic with reasons; no raw ID number anywhere."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from careledger.settings import Settings
from producers.csv_import import run_import_csv
from producers.ingest import run_ingest
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
