"""``careledger replay swap`` (projections/replay/ops.py ``swap``): a swap by hand does the same
hand-over as a rebuild's - before, it only rewrote the registry, so after swapping in a shadow that
verified ``different`` (what the rebuild tells people to do after inspecting it) or swapping back
to a retired store, SSE clients' and webhooks' positions pointed at other outbox rows and the
need-warning notices were gone (warnings published again)."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from careledger.retrying import call_retrying
from careledger.settings import Settings
from projections.registry import Registry, RegistryError
from projections.replay import ops
from projections.sql import tables as t
from projections.sql.outbox import SEQ_MARGIN
from projections.sql.store import SqlStore
from tests.unit.projections.gen import Gen, batches, to_records
from tests.unit.projections.replay.test_hand_over import outbox, store_at


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env(), home=tmp_path, sql_url=f"sqlite:///{tmp_path / 'p.sqlite3'}",
                               clickhouse_url=None)


def test_a_swap_by_hand_hands_the_outbox_over(settings: Settings, tmp_path: Path) -> None:
    records = to_records(Gen(seed=7, persons=30).stream(500))
    active = store_at(tmp_path / "p.sqlite3")  # the settings' store, active until the swap
    shadow = store_at(tmp_path / "shadow.sqlite3")
    try:
        for batch in batches(records, 50):
            active.apply_batch(batch)
        active.mark_sent(r["seq"] for r in active.outbox_pending(100_000)[:-3])  # the relay is 3 rows behind
        for batch in batches(records, 250):
            shadow.apply_batch(batch)
        with active.engine.begin() as conn:
            conn.execute(t.warning_notices.insert(), [{"warning_id": "w1", "person_id": "p1", "rule": "visit_overdue",
                                                       "state": "due", "due_at": "2024-06-01T00:00:00+00:00"}])
        before = outbox(active)
        Registry(settings).register("shadow", f"sqlite:///{tmp_path / 'shadow.sqlite3'}", "sql", "building")
        said: list[str] = []

        assert ops.swap(settings, "sql", "shadow", said.append) == "sql-initial"

        rows = outbox(shadow)
        assert rows[:len(before)] == before  # seqs, bodies and sent marks: the active store's
        assert rows[len(before)][0] == before[-1][0] + SEQ_MARGIN and len(rows) == len(before) + 1  # the floor
        assert [r["seq"] for r in shadow.outbox_pending(100)] == [r[0] for r in before[-3:]]
        with shadow.engine.connect() as conn:
            assert conn.execute(t.warning_notices.select()).all()  # published warnings are not published again
        assert any(line.startswith("hand-over:") for line in said)
        assert Registry(settings).active_name("sql") == "shadow"
    finally:
        active.close()
        shadow.close()


def test_a_swap_that_cannot_happen_changes_no_store(settings: Settings, tmp_path: Path) -> None:
    snapshot = store_at(tmp_path / "march.sqlite3")
    try:
        for batch in batches(to_records(Gen(seed=2, persons=10).stream(100)), 50):
            snapshot.apply_batch(batch)
        rows = outbox(snapshot)
        Registry(settings).register("march", f"sqlite:///{tmp_path / 'march.sqlite3'}", "sql", "snapshot",
                                    until="2024-03-31")
        with pytest.raises(RegistryError, match="cannot activate"):
            ops.swap(settings, "sql", "march", print)
        assert outbox(snapshot) == rows
    finally:
        snapshot.close()


def test_a_store_of_another_projection_is_refused_before_it_is_opened(settings: Settings) -> None:
    Registry(settings).register("ch", "clickhouse://nowhere.invalid/db", "clickhouse", "building")
    with pytest.raises(RegistryError, match="not sql"):  # not a connection error: nothing was opened
        ops.swap(settings, "sql", "ch", print)


def _stores_for_a_swap(settings: Settings, tmp_path: Path) -> tuple[SqlStore, SqlStore, int]:
    records = to_records(Gen(seed=7, persons=30).stream(500))
    active, shadow = store_at(tmp_path / "p.sqlite3"), store_at(tmp_path / "shadow.sqlite3")
    for batch in batches(records, 50):
        active.apply_batch(batch)
    active.mark_sent(r["seq"] for r in active.outbox_pending(100_000))
    for batch in batches(records, 250):
        shadow.apply_batch(batch)
    Registry(settings).register("shadow", f"sqlite:///{tmp_path / 'shadow.sqlite3'}", "sql", "building")
    return active, shadow, active.outbox_last_seq()


def failing_offsets(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The active store's (p.sqlite3) first ``times`` answers fail as a dropped connection does."""
    real, calls = SqlStore.offsets, [0]

    def offsets(self: SqlStore) -> Any:
        if Path(str(self.engine.url.database)).name != "p.sqlite3":  # not the active store
            return real(self)
        calls[0] += 1
        if calls[0] <= times:
            raise OperationalError("SELECT ...", {}, Exception("server closed the connection unexpectedly"))
        return real(self)

    monkeypatch.setattr(SqlStore, "offsets", offsets)
    monkeypatch.setattr(ops, "call_retrying", functools.partial(call_retrying, sleep=lambda _s: None))
    return calls


def test_an_active_store_that_fails_once_is_waited_for(settings: Settings, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, one failed read of the active store counted as "no store": the shadow kept its own
    (low) outbox seqs and subscribers positioned above them got nothing for ~1M changes."""
    active, shadow, top = _stores_for_a_swap(settings, tmp_path)
    try:
        failing_offsets(monkeypatch, 1)
        ops.swap(settings, "sql", "shadow", print)
        assert shadow.outbox_last_seq() == top + SEQ_MARGIN  # the old outbox was taken over (its floor row)
        assert Registry(settings).active_name("sql") == "shadow"
    finally:
        active.close()
        shadow.close()


def test_an_active_store_that_does_not_answer_refuses_the_swap(settings: Settings, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    active, shadow, _top = _stores_for_a_swap(settings, tmp_path)
    try:
        before = outbox(shadow)
        calls = failing_offsets(monkeypatch, 10**6)
        with pytest.raises(RegistryError, match="did not answer for the hand-over.*not swapped"):
            ops.swap(settings, "sql", "shadow", print)
        assert calls[0] == ops.HAND_OVER_ATTEMPTS
        assert outbox(shadow) == before and Registry(settings).active_name("sql") is None
    finally:
        active.close()
        shadow.close()


def test_a_first_build_has_no_store_to_hand_over_from(settings: Settings, tmp_path: Path) -> None:
    shadow = store_at(tmp_path / "shadow.sqlite3")
    try:
        for batch in batches(to_records(Gen(seed=2, persons=10).stream(100)), 50):
            shadow.apply_batch(batch)
        Registry(settings).register("shadow", f"sqlite:///{tmp_path / 'shadow.sqlite3'}", "sql", "building")
        said: list[str] = []
        ops.swap(settings, "sql", "shadow", said.append)  # the settings' store has no tables yet
        assert shadow.outbox_pending(10_000) == [] and Registry(settings).active_name("sql") == "shadow"
        assert any("'outbox_marked_sent'" in line for line in said)
    finally:
        shadow.close()


def test_the_swap_settles_the_persons_the_live_worker_was_applying(settings: Settings, tmp_path: Path) -> None:
    """The active store is 40 events ahead of the shadow (the old worker kept going): the swap
    waits until the live worker - a thread here, following the registry as the worker does - has
    applied them to the new store, then compares those persons' alerts with what subscribers last
    received (shadow.settle_left_out; its own test has edited rules and counts what it queues)."""
    records = to_records(Gen(seed=7, persons=30).stream(500))
    active, shadow = store_at(tmp_path / "p.sqlite3"), store_at(tmp_path / "shadow.sqlite3")
    try:
        for batch in batches(records, 50):
            active.apply_batch(batch)
        for batch in batches(records[:460], 230):
            shadow.apply_batch(batch)
        Registry(settings).register("shadow", f"sqlite:///{tmp_path / 'shadow.sqlite3'}", "sql", "building")

        def live_worker() -> None:
            while Registry(settings).active_name("sql") != "shadow":
                time.sleep(0.05)
            for batch in batches(records[460:], 20):
                shadow.apply_batch(batch)

        follower = threading.Thread(target=live_worker, daemon=True)
        follower.start()
        said: list[str] = []
        ops.swap(settings, "sql", "shadow", said.append)
        follower.join(10)
        settled = [line for line in said if line.startswith("after the swap: {")]
        assert settled and "'left_out_persons': 0" not in settled[0], said
    finally:
        active.close()
        shadow.close()


def test_a_swap_without_a_live_worker_says_what_it_could_not_settle(settings: Settings, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    records = to_records(Gen(seed=7, persons=30).stream(300))
    active, shadow = store_at(tmp_path / "p.sqlite3"), store_at(tmp_path / "shadow.sqlite3")
    try:
        for batch in batches(records, 50):
            active.apply_batch(batch)
        shadow.apply_batch(records[:250])
        Registry(settings).register("shadow", f"sqlite:///{tmp_path / 'shadow.sqlite3'}", "sql", "building")
        monkeypatch.setattr(ops, "SETTLE_WAIT_S", 0.3)
        said: list[str] = []
        ops.swap(settings, "sql", "shadow", said.append)
        assert any("did not apply the events" in line for line in said), said
        assert Registry(settings).active_name("sql") == "shadow"  # the swap itself happened
    finally:
        active.close()
        shadow.close()
