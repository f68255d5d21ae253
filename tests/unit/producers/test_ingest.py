from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from careledger.settings import Settings
from producers.ingest import iter_lines, run_ingest
from tests.unit.producers.conftest import FakeProducer
from tests.unit.schemas.examples import event

ID = "110101199003071233"


def line(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


def write(tmp_path: Path, lines: list[str | bytes]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


def run(settings: Settings, path: Path | str, **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_ingest(settings, str(path), out=out, err=err, progress=False, **kw)
    return code, out.getvalue(), err.getvalue()


def test_iter_lines_limits_memory() -> None:
    data = b"a\n" + b"x" * 50 + b"\nb\r\n\nlast"
    assert list(iter_lines(io.BytesIO(data), limit=10)) == [
        (1, b"a", 2), (2, None, 51), (3, b"b", 3), (4, b"", 1), (5, b"last", 4)]


def test_mixed_file(settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    good = event("payment.disbursed", person_id=None, id_number=ID)
    bad = event("payment.disbursed", event_id="bad-1")
    bad["payload"]["amount_fen"] = -5
    path = write(tmp_path, [
        "\ufeff" + line(good),
        "",
        "   ",
        line(good),  # re-sent: a duplicate, not a reject
        line(bad),
        '{"event_id": "x", ',
        b"\xff\xfe{}",
        line(event("job.posted", event_id="post-1")),
        "[1, 2]",
    ])
    code, out, _ = run(settings, path)
    assert code == 2
    assert "accepted: 2" in out and "duplicates: 1" in out and "rejected: 4" in out
    assert "line 5: payload.amount_fen: must be an integer > 0" in out
    assert "line 6: invalid JSON at column" in out
    assert "line 7: invalid UTF-8 at byte 1" in out
    assert "line 9: event: must be a JSON object" in out

    events = patched_publisher.messages("careledger.events")
    assert [e["event_id"] for _, e in events] == ["ev-1", "post-1"]
    key, first = events[0]
    assert key == first["person_id"] and first["person_id"].startswith("p") and "id_number" not in first
    assert events[1][0] == "某某公司"
    dlq = patched_publisher.messages("careledger.events.dlq")
    assert [d["origin"]["line"] for _, d in dlq] == [5, 6, 7, 9]
    assert all(d["reasons"] for _, d in dlq)

    report = Path(out.split("report: ")[1].strip())
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert [r["line"] for r in rows] == [5, 6, 7, 9]
    assert report.stat().st_mode & 0o077 == 0
    everything = out + report.read_text() + repr(patched_publisher.sent)
    assert ID not in everything


def test_all_good_exits_0(settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    code, out, _ = run(settings, write(tmp_path, [line(event("need.registered"))]))
    assert code == 0 and "rejected: 0" in out
    assert len(patched_publisher.messages("careledger.events")) == 1


def test_huge_line_rejected_and_next_line_kept(settings: Settings, tmp_path: Path,
                                               patched_publisher: FakeProducer) -> None:
    path = write(tmp_path, ['{"x": "' + "a" * 5000 + '"}', line(event("need.registered"))])
    code, out, _ = run(settings, path, max_line_bytes=1000)
    assert code == 2 and "line 1: line too long" in out and "accepted: 1" in out


def test_id_number_inside_free_text_is_refused(settings: Settings, tmp_path: Path,
                                               patched_publisher: FakeProducer) -> None:
    leaky = event("payment.reversed")
    leaky["payload"]["reason"] = f"wrong person {ID}"
    code, out, _ = run(settings, write(tmp_path, [line(leaky)]))
    assert code == 2 and "payload.reason: contains what looks like a national ID number" in out
    assert ID not in repr(patched_publisher.sent) and ID not in out


def test_dry_run_publishes_nothing(settings: Settings, tmp_path: Path) -> None:
    code, out, _ = run(settings, write(tmp_path, [line(event("need.registered"))]), dry_run=True)
    assert code == 0 and "dry run" in out


def test_missing_file_exits_1(settings: Settings, tmp_path: Path) -> None:
    code, _, err = run(settings, tmp_path / "nope.jsonl", dry_run=True)
    assert code == 1 and "cannot open" in err


def test_unreachable_kafka_exits_1(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import producers.ingest

    def broken(_settings: Settings) -> None:
        raise RuntimeError("NoBrokersAvailable")

    monkeypatch.setattr(producers.ingest, "EventPublisher", broken)
    code, _, err = run(settings, write(tmp_path, [line(event("need.registered"))]))
    assert code == 1 and "cannot connect to Kafka" in err


def test_stdin(settings: Settings, patched_publisher: FakeProducer, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    fake_stdin = io.TextIOWrapper(io.BytesIO((line(event("need.registered")) + "\n").encode()))
    monkeypatch.setattr(sys, "stdin", fake_stdin)
    code, out, _ = run(settings, "-")
    assert code == 0 and "accepted: 1" in out


def test_worker_processes_give_the_same_run_as_one_process(settings: Settings, tmp_path: Path,
                                                          patched_publisher: FakeProducer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking lines in worker processes changes nothing users see: the same events in the same
    order with the same keys, the same dead letters, the same summary (erased persons and
    repeats included), sensitive fields sealed either way."""
    import producers.ingest
    from producers.keystore import KeyStore
    from producers.pseudonym import Pseudonymiser
    from schemas.validation import decode_consumed

    monkeypatch.setattr(producers.ingest, "CHUNK_LINES", 3)  # many chunks, several in flight
    erased_id = "11010519491231002X"
    erased_pid = Pseudonymiser.from_settings(settings).person_id(erased_id)
    KeyStore.from_settings(settings).forget(erased_pid)
    registered = event("person.registered", person_id=None, id_number=ID, event_id="reg-1")
    bad = event("payment.disbursed", event_id="bad-1")
    bad["payload"]["amount_fen"] = -5
    lines: list[str | bytes] = [
        "\ufeff" + line(registered), "", line(bad), '{"event_id": "x", ', b"\xff\xfe{}",
        line(event("payment.disbursed", person_id=None, id_number=erased_id, event_id="gone-1")),
        line(registered), "[1, 2]", line(event("job.posted", event_id="post-1")),
    ] + [line(event("visit.completed", event_id=f"v{i}", person_id=f"p{i % 4}")) for i in range(20)]
    path = write(tmp_path, lines)

    def one_run(workers: int) -> tuple[str, list[tuple[str | None, Any]], list[Any]]:
        patched_publisher.sent.clear()
        code, out, _ = run(settings, path, workers=workers)
        assert code == 2
        events = [(key, decode_consumed(json.dumps(body).encode()))
                  for key, body in patched_publisher.messages("careledger.events")]
        for _, body in events:  # sealed either way (a fresh nonce each time: compare the rest)
            if body["type"] in ("person.registered", "visit.completed"):
                assert body.pop("sealed")["kid"]
        dlq = [(d["origin"], d["reasons"], d["record"]) for _, d in patched_publisher.messages("careledger.events.dlq")]
        return out.split("report: ")[0], events, dlq

    alone, with_workers = one_run(0), one_run(2)
    assert with_workers == alone
    summary, events, dlq = alone
    assert "accepted: 22" in summary and "duplicates: 1" in summary and "rejected: 5" in summary
    assert [origin["line"] for origin, _, _ in dlq] == [3, 4, 5, 6, 8]
    assert "erased" in dlq[3][1][0] and erased_id not in repr(dlq)
    assert [e["event_id"] for _, e in events][:2] == ["reg-1", "post-1"]


def test_reject_reports_are_kept_as_long_as_dead_letters(settings: Settings, tmp_path: Path,
                                                         patched_publisher: FakeProducer) -> None:
    """Reports hold rejected records in clear like the dead-letter topic: a new run removes those
    older than CARELEDGER_DLQ_RETENTION_DAYS (90 by default) and says so."""
    import os
    import time

    settings.reports_dir.mkdir(parents=True)
    old, recent = settings.reports_dir / "ingest-old.jsonl", settings.reports_dir / "ingest-recent.jsonl"
    for path, age_days in ((old, 91), (recent, 89)):
        path.write_text("{}\n")
        then = time.time() - age_days * 86_400
        os.utime(path, (then, then))
    code, out, _ = run(settings, write(tmp_path, [line(event("need.registered"))]))
    assert code == 0 and "removed 1 reject report(s) older than 90 days" in out
    assert not old.exists() and recent.exists()
