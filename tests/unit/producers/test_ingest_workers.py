"""Routing lines to ingest workers, and the workers' answers taken back in input order.

The routing is what keeps a person's events in order once several processes send
(producers/ingest_workers.py, step 1 and 2); the dry runs here start real worker processes
(no Kafka: a dry run checks only).  tests/integration/test_ingest.py sends through a real broker.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import DefaultPartitioner

from careledger.settings import Settings
from producers.ingest_workers import Router, WorkerArgs, WorkerFailed, WorkerPool, route_key
from producers.pipeline import NO_RULES
from producers.pseudonym import Pseudonymiser
from producers.state_errors import StateWriteError, state_write_error
from schemas.idnumber import checksum_char
from tests.unit.producers.test_ingest import line, run, write
from tests.unit.schemas.examples import event

PSEUDONYMISER = Pseudonymiser(b"unit-test-secret")


def id_numbers(count: int) -> list[str]:
    firsts = [f"1101011990{i:07d}" for i in range(count)]
    return [first + checksum_char(first) for first in firsts]


def encoded(obj: Any) -> bytes:
    return line(obj).encode()


def test_a_person_named_by_id_number_or_by_pseudonym_takes_one_worker() -> None:
    router = Router(PSEUDONYMISER, 3, 12)
    used = set()
    for n, id_number in enumerate(id_numbers(30)):
        pid = PSEUDONYMISER.person_id(id_number)
        by_id = router.route(1, encoded(event("payment.disbursed", person_id=None, id_number=id_number,
                                              event_id=f"a{n}")))
        by_pid = router.route(2, encoded(event("visit.completed", person_id=pid, event_id=f"b{n}")))
        escaped = router.route(3, f'{{"event_id":"c{n}","person\\u005fid":"{pid}"}}'.encode())
        assert by_id == by_pid == escaped
        used.add(by_id)
    assert used == {0, 1, 2}  # spread over the workers


def test_a_repeated_event_id_goes_to_the_worker_of_its_first_occurrence() -> None:
    router = Router(PSEUDONYMISER, 4, 12)
    first = router.route(1, encoded(event("payment.disbursed", person_id="p-a", event_id="same")))
    others = {router.route(n, encoded(event("payment.disbursed", person_id=f"p-{n}", event_id="same")))
              for n in range(2, 40)}
    assert others == {first}


def test_job_postings_route_by_employer_and_persons_by_person() -> None:
    posting = event("job.posted", event_id="j1")
    assert route_key(encoded(posting), PSEUDONYMISER) == (posting["payload"]["employer"], "j1")
    assert route_key(encoded(event("need.registered", person_id="p-1", event_id="n1")), PSEUDONYMISER) == ("p-1", "n1")


class OneTopic:
    """The cluster metadata kafka-python's partitioner reads: one topic of 12 partitions."""

    def topics(self) -> set[str]:
        return {"events"}

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return set(range(12))

    available_partitions_for_topic = partitions_for_topic


def test_each_partition_is_written_by_one_worker() -> None:
    """Two producers writing one partition halve its batches (the broker's CPU per event tripled)."""
    router = Router(PSEUDONYMISER, 3, 12)
    writers: dict[int, set[int]] = {}
    for n in range(400):
        key = f"p{n:05x}"
        partition = DefaultPartitioner().partition("events", key, key.encode(), None, None, OneTopic())
        writers.setdefault(partition, set()).add(router.route(n + 2, encoded(event("need.registered", person_id=key,
                                                                                       event_id=f"n{n}"))))
    assert len(writers) == 12 and all(len(workers) == 1 for workers in writers.values())
    assert set().union(*writers.values()) == {0, 1, 2}


@pytest.mark.parametrize("text", [b'{"event_id": "x", ', b"\xff\xfe{}", b"[1, 2]", b"", b"null",
                                  b'{"id_number": "110101199003071234"}', b'{"person_id": 5}',
                                  b'{"type": "job.posted", "payload": "no"}'])
def test_lines_that_name_no_person_still_get_a_worker(text: bytes) -> None:
    assert route_key(text, PSEUDONYMISER)[0] is None
    assert Router(PSEUDONYMISER, 3, 12).route(7, text) in (0, 1, 2)


def test_an_over_long_line_and_a_byte_order_mark_are_routed() -> None:
    router = Router(PSEUDONYMISER, 2, 12)
    assert router.route(5, None) in (0, 1)
    plain = router.route(2, encoded(event("need.registered", person_id="p-bom", event_id="n2")))
    assert router.route(1, b"\xef\xbb\xbf" + encoded(event("need.registered", person_id="p-bom", event_id="n3"))) == plain


def mixed_lines() -> list[str | bytes]:
    registered = event("person.registered", person_id=None, id_number=id_numbers(1)[0], event_id="reg-1")
    bad = event("payment.disbursed", event_id="bad-1")
    bad["payload"]["amount_fen"] = -5
    return [
        "\ufeff" + line(registered), "", line(bad), '{"event_id": "x", ', b"\xff\xfe{}",
        line(registered), "[1, 2]", line(event("job.posted", event_id="post-1")),
    ] + [line(event("visit.completed", event_id=f"v{i % 17}", person_id=f"p{i % 5}")) for i in range(40)]


def test_worker_processes_answer_as_one_process_does(settings: Settings, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Same counts, same rejected lines in the same order (a dry run: the verdicts, no Kafka)."""
    import producers.ingest

    monkeypatch.setattr(producers.ingest, "CHUNK_LINES", 3)  # many chunks, several in flight
    path = write(tmp_path, mixed_lines())
    alone, with_workers = run(settings, path, dry_run=True, workers=0), run(settings, path, dry_run=True, workers=3)
    assert with_workers[0] == alone[0] == 2
    assert with_workers[1].split("report: ")[0] == alone[1].split("report: ")[0]
    assert "accepted: 19" in alone[1] and "duplicates: 24" in alone[1] and "rejected: 4" in alone[1]
    reports = sorted((settings.reports_dir).glob("ingest-*.jsonl"), key=os.path.getmtime)
    lines_of = [[json.loads(x)["line"] for x in report.read_text().splitlines()] for report in reports[-2:]]
    assert lines_of[0] == lines_of[1] == [3, 4, 5, 7]


def dry_args(settings: Settings) -> WorkerArgs:
    return WorkerArgs(settings, b"unit-test-secret", 1024 * 1024, NO_RULES, publish=False)


def test_a_worker_that_dies_fails_the_run_instead_of_hanging(settings: Settings) -> None:
    pool = WorkerPool(dry_args(settings), 2)
    try:
        pool.submit(0, [[(1, encoded(event("need.registered")), 10)], []])
        assert pool.answers(0, 0) == ["accepted"]
        victim = pool._processes[1]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        pool.submit(1, [[], [(2, encoded(event("need.registered", event_id="n-2")), 10)]])
        with pytest.raises(WorkerFailed, match="ingest worker 1 died"):
            pool.answers(1, 1)
    finally:
        pool.stop()


def test_a_worker_error_fails_the_run_with_its_traceback(settings: Settings) -> None:
    broken = WorkerArgs(settings, b"", 1024 * 1024, NO_RULES, publish=False)  # no HMAC secret
    pool = WorkerPool(broken, 1)
    try:
        pool.submit(0, [[(1, encoded(event("need.registered")), 10)]])
        with pytest.raises(WorkerFailed, match="HMAC secret must not be empty"):
            pool.answers(0, 0)
    finally:
        pool.stop()


def test_a_state_write_error_seen_in_a_worker_reads_as_one_in_the_ingest_process() -> None:
    try:
        raise WorkerFailed("wrapper") from StateWriteError("database or disk is full")
    except WorkerFailed as exc:
        assert state_write_error(exc) == "database or disk is full"


def test_worker_processes_apply_the_configured_input_rules(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, [line(event("need.registered", event_id="x-1", town="城关镇")),
                            line(event("need.registered", event_id="x-2", town="\u200b岳林街道"))])
    code, out, _ = run(settings, path, dry_run=True, workers=2)
    assert code == 2 and "line 1: town: must be one of" in out and "accepted: 1" in out
