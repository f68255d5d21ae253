from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from careledger.settings import Settings
from producers import ingest
from producers.ingest import iter_lines, run_ingest, workers_for
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


def test_a_lone_surrogate_escape_is_one_rejected_line(settings: Settings, tmp_path: Path,
                                                       patched_publisher: FakeProducer) -> None:
    """Issue 15.1: ``"town":"\\ud800"`` crashed ingest (UnicodeEncodeError while dead-lettering it)
    and the later valid lines were never sent.  Every text path (the line check, the dead letter,
    the report, the printed summary) must take it."""
    good = line(event("need.registered", event_id="ok-1"))
    surrogate_lines = [
        good.replace('"锦屏街道"', '"\\ud800"'),  # a pattern-checked field
        line(event("need.registered", event_id="EVENTID")).replace("EVENTID", "\\udc00"),  # no pattern
        good.replace('"payload": {', '"payload": {"x\\udfff": 1, '),  # a key
        good.replace('"锦屏街道"', '"\\udbff\\ud800"'),  # two surrogates in the wrong order
    ]
    path = write(tmp_path, [good, *surrogate_lines, line(event("need.registered", event_id="ok-2"))])
    code, out, _ = run(settings, path)
    out.encode("utf-8")  # printable as it is
    assert code == 2, out
    assert "accepted: 2" in out and "rejected: 4" in out
    assert "line 2: town: contains a lone UTF-16 surrogate escape (\\ud800)" in out
    assert "line 3: event_id: contains a lone UTF-16 surrogate escape (\\udc00)" in out
    assert "line 4: payload.\"x\\udfff\": contains a lone UTF-16 surrogate escape" in out
    assert "line 5: town: contains a lone UTF-16 surrogate escape (\\udbff)" in out
    assert [e["event_id"] for _, e in patched_publisher.messages("careledger.events")] == ["ok-1", "ok-2"]
    dead = patched_publisher.messages("careledger.events.dlq")
    assert [d["origin"]["line"] for _, d in dead] == [2, 3, 4, 5]
    assert dead[0][1]["record"]["town"] == "\\ud800"  # what was sent, written as its escape
    report = Path(out.split("report: ")[1].strip())
    assert [json.loads(x)["line"] for x in report.read_text(encoding="utf-8").splitlines()] == [2, 3, 4, 5]


def _digits_only(text: str) -> str:
    """Text as the ID scan sees it: NFKC, no blanks or dashes (so a grouped ID shows as one)."""
    import re
    import unicodedata

    return re.sub(r"[\s\-\u200b\u2014]", "", unicodedata.normalize("NFKC", text))


def test_id_numbers_written_in_groups_or_full_width_never_reach_kafka(settings: Settings, tmp_path: Path,
                                                                      patched_publisher: FakeProducer) -> None:
    """Issue 15.3: an ID number with spaces, dashes or full-width digits got through the scan
    and was stored in clear."""
    fw = ID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    leaks = [
        event("need.registered", event_id="l-1", village=f"东村{fw}"),
        event("visit.completed", event_id="l-2", payload={"visit_kind": "home_visit", "hazards": [],
                                                          "visitor": f"王 {ID[:6]} {ID[6:14]} {ID[14:]}"}),
        event("job.placed", event_id="l-3", payload={"employer": f"{ID[:4]}-{ID[4:8]}-{ID[8:12]}-{ID[12:16]}-{ID[16:]}",
                                                     "placement_kind": "flexible"}),
        event("need.registered", event_id="l-4", person_id=f"{ID[:6]} {ID[6:14]} {ID[14:]}"),
        event("payment.reversed", event_id="l-5", payload={"reverses": "ev-0", "reason": f"身份证{fw[:6]}　{fw[6:]}"}),
    ]
    grouped_id = event("need.registered", event_id="ok-grouped", person_id=None, id_number=f"{ID[:6]} {ID[6:14]}-{fw[14:]}")
    plain_id = event("need.registered", event_id="ok-plain", person_id=None, id_number=ID)
    path = write(tmp_path, [line(e) for e in [*leaks, grouped_id, plain_id]])
    code, out, _ = run(settings, path)
    assert code == 2 and "accepted: 2" in out and "rejected: 5" in out, out
    for number, field in enumerate(["village", "payload.visitor", "payload.employer", "person_id", "payload.reason"], 1):
        assert f"line {number}: {field}: contains what looks like a national ID number" in out \
            or f"line {number}: {field}: looks like a raw national ID number" in out, out
    published = patched_publisher.messages("careledger.events")
    assert [e["event_id"] for _, e in published] == ["ok-grouped", "ok-plain"]
    assert published[0][1]["person_id"] == published[1][1]["person_id"]  # the same person however written
    report = Path(out.split("report: ")[1].strip()).read_text(encoding="utf-8")
    everything = out + report + repr(patched_publisher.sent) + repr(published) + json.dumps(
        patched_publisher.messages("careledger.events.dlq"), ensure_ascii=False)
    assert ID not in _digits_only(everything)


def test_towns_are_master_data_and_invisible_characters_do_not_make_a_new_one(
        settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    """Issue 15.4: ``锦屏街`` became a 13th town; ``锦屏街道\\u200b`` would have been another."""
    path = write(tmp_path, [
        line(event("need.registered", event_id="t-1", town="锦屏街")),
        line(event("need.registered", event_id="t-2", town="锦屏街道\u200b", village="东村\u00a0１组")),
        line(event("need.registered", event_id="t-3", village="东\x00村")),
        line(event("need.registered", event_id="t-4\u200b")),
    ])
    code, out, _ = run(settings, path)
    assert code == 2 and "accepted: 1" in out and "rejected: 3" in out, out
    assert "line 1: town: must be one of the district's 12 towns (did you mean 锦屏街道?): 锦屏街道, 岳林街道" in out
    assert "line 3: village: contains a control character (U+0000)" in out
    assert "line 4: event_id: contains an invisible character (U+200B)" in out
    [(_, accepted)] = patched_publisher.messages("careledger.events")
    assert (accepted["event_id"], accepted["town"], accepted["village"]) == ("t-2", "锦屏街道", "东村 1组")


def test_occurred_at_far_outside_a_plausible_window_is_rejected(settings: Settings, tmp_path: Path,
                                                                 patched_publisher: FakeProducer) -> None:
    """Issue 15.2: year 9999 at -10:00 and year 0001 at +14:00 were accepted, then broke every
    reader downstream."""
    path = write(tmp_path, [
        line(event("need.registered", event_id="w-1", occurred_at="9999-12-31T23:00:00-10:00")),
        line(event("need.registered", event_id="w-2", occurred_at="0001-01-01T00:00:00+14:00")),
        line(event("need.registered", event_id="w-3", occurred_at="2008-06-30T09:00:00+08:00")),
    ])
    code, out, _ = run(settings, path)
    assert code == 2 and "accepted: 1" in out, out
    for number in (1, 2):
        assert f"line {number}: occurred_at: must be between 1949-10-01 and 3 days from now" in out
    assert [e["event_id"] for _, e in patched_publisher.messages("careledger.events")] == ["w-3"]


def test_workers_auto_is_one_per_core_for_a_large_file_and_none_otherwise(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.os, "cpu_count", lambda: 6)
    monkeypatch.setattr(ingest, "PARALLEL_MIN_BYTES", 100)
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_bytes(b"x" * 99)
    large.write_bytes(b"x" * 100)
    auto = dataclasses.replace(settings, ingest_workers=None)
    assert workers_for(auto, str(large)) == 6
    assert workers_for(auto, str(small)) == 0
    assert workers_for(auto, "-") == 0
    assert workers_for(auto, str(large), requested=0) == 0
    assert workers_for(dataclasses.replace(settings, ingest_workers=1), str(large)) == 1
