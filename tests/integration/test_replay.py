"""Replay (docs/replay.md): rebuilds equal live read models; rebuild while events flow; snapshots.

(a) the simulated log processed live by the faust workers, then rebuilt by the fast path into
    shadow stores: identical rows (``snapshot_rows()``) in SQLite, PostgreSQL and ClickHouse;
(b) a rebuild while a thread keeps publishing, swapped under the running live worker: the result
    equals a clean run (no gap, no double count);
(c) a snapshot ``--until`` a business date equals a clean run over only the events up to it, is
    served by the API with ``?snapshot=NAME``, and ``--rules`` changes what it raises.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from careledger.settings import Settings
from processors.domain.calendar import event_date
from producers.simulate.generator import SimConfig, generate
from projections.registry import Registry
from projections.replay import ops
from tests.support.pipeline import open_test_store, publish, wait_caught_up, worker
from tests.support.servers import TestStack


def _home(settings: Settings, name: str, **changes: Any) -> Settings:
    home = settings.home / name
    home.mkdir(parents=True, exist_ok=True)
    if (settings.home / "secrets").exists() and not (home / "secrets").exists():  # same master key
        shutil.copytree(settings.home / "secrets", home / "secrets")
    # same key store as the producers of this test (it lives under the original home)
    keystore = {"keystore_url": settings.keystore_db_url} if hasattr(settings, "keystore_db_url") else {}
    return dataclasses.replace(settings, home=home, **keystore, **changes)


def _live(settings: Settings, projection: str, url: str, name: str, expected: int) -> None:
    store = open_test_store(settings, url)
    w = worker(settings, projection, url, name)
    try:
        w.start()
        wait_caught_up(settings, {name: store}, expected_end=expected, timeout=900, workers=[w])
    finally:
        w.stop()
        store.close()


def _rows(settings: Settings, url: str) -> dict[str, list[tuple[Any, ...]]]:
    store = open_test_store(settings, url)
    try:
        return store.snapshot_rows()
    finally:
        store.close()


def test_rebuild_equals_the_live_read_models_in_every_store(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(persons=3000, seed=11)))
    assert any(e["type"] == "visit.completed" and e["version"] == 1 for e in events)  # upcast on replay
    publish(settings, events)
    live = {"sqlite": settings.sql_url, "postgresql": stack.fresh_pg_url(), "clickhouse": stack.fresh_clickhouse_url()}
    failures: list[BaseException] = []

    def run_live(*args: Any) -> None:
        try:
            _live(*args)
        except BaseException as exc:  # a thread's exception would otherwise only be a warning
            failures.append(exc)

    threads = [threading.Thread(target=run_live, args=(settings, "clickhouse" if n == "clickhouse" else "sql", url,
                                                       n, len(events)))
               for n, url in live.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    for name, url in live.items():
        projection = "clickhouse" if name == "clickhouse" else "sql"
        home = _home(settings, f"rebuild-{name}", **({"clickhouse_url": url} if projection == "clickhouse"
                                                      else {"sql_url": url}))
        # two workers: SQLite builds shards and merges them, PostgreSQL and ClickHouse take two
        # writers side by side under per-worker aliases; the second rebuild below is one worker
        result = ops.rebuild(home, projection, workers=2, progress=False, say=lambda _: None)
        assert result["verification"]["status"] == "equal", (name, result["verification"])
        assert result["stats"].workers == 2, name
        assert result["swapped"] and result["stats"].records == len(events)
        assert Registry(home).active_url(projection) == result["url"] != url
        assert _rows(settings, result["url"]) == _rows(settings, url), name
        ops.drop(home, result["previous"], say=lambda _: None)  # the live one: tables emptied, not owned
        ops.drop(home, ops.rebuild(home, projection, progress=False, swap=False,
                                   say=lambda _: None)["name"], say=lambda _: None)


@pytest.mark.slow
def test_rebuild_of_the_calibrated_half_year_equals_live_sqlite(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(calibrate="2024H1", seed=2024)))
    publish(settings, events)
    _live(settings, "sql", settings.sql_url, "h1", len(events))
    result = ops.rebuild(settings, "sql", workers=2, progress=False, say=lambda _: None)
    assert result["verification"]["status"] == "equal"
    assert _rows(settings, result["url"]) == _rows(settings, settings.sql_url)


def test_rebuild_while_events_keep_flowing_equals_a_clean_run(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(persons=1500, seed=5)))
    half = len(events) // 2
    publish(settings, events[:half])
    live = worker(settings, "sql", settings.sql_url, "live").start()
    clean_settings = _home(settings, "clean", sql_url=f"sqlite:///{settings.home / 'clean.sqlite3'}")
    clean = worker(clean_settings, "sql", clean_settings.sql_url, "clean").start()
    errors: list[BaseException] = []

    def keep_publishing() -> None:
        try:
            rest = events[half:]
            for i in range(0, len(rest), 500):
                publish(settings, rest[i:i + 500])
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        publisher = threading.Thread(target=keep_publishing)
        publisher.start()
        result = ops.rebuild(settings, "sql", progress=False, say=lambda _: None)
        publisher.join()
        assert not errors
        assert result["swapped"], result["verification"]
        new_store = open_test_store(settings, result["url"])
        clean_store = open_test_store(settings, clean_settings.sql_url)
        wait_caught_up(settings, {"new": new_store, "clean": clean_store}, expected_end=len(events), timeout=900,
                       workers=[live, clean])
        time.sleep(1.0)  # the worker's last batch commits
        assert new_store.snapshot_rows() == clean_store.snapshot_rows()
        assert new_store.event_count() == len({e["event_id"] for e in events})
        new_store.close()
        clean_store.close()
    finally:
        live.stop()
        clean.stop()


def test_snapshot_until_a_date_equals_a_clean_run_of_those_events(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(persons=1500, seed=9)))
    publish(settings, events)
    until = "2024-03-31"
    ops.snapshot(settings, "march", until=until, progress=False, say=lambda _: None)
    entry = Registry(settings).snapshot("march")
    assert entry["status"] == "ready" and entry["until"] == until

    clean_settings = stack.fresh_settings()
    kept = [e for e in events if event_date(e["occurred_at"]) <= until]
    assert 0 < len(kept) < len(events)
    publish(clean_settings, kept)
    _live(clean_settings, "sql", clean_settings.sql_url, "clean", len(kept))
    assert _rows(settings, entry["url"]) == _rows(clean_settings, clean_settings.sql_url)

    # different rules: visit hazards switched off -> no visit_hazard alerts in that snapshot
    rules_text = settings.rules_path.read_text(encoding="utf-8")
    no_hazards = re.sub(r"(\[alerts\.visit_hazard\][^\n]*\nenabled = )true", r"\1false", rules_text)
    assert no_hazards != rules_text
    rules = Path(settings.home / "no-hazards.toml")
    rules.write_text(no_hazards, encoding="utf-8")
    ops.snapshot(settings, "march-no-hazards", until=until, rules=str(rules), progress=False, say=lambda _: None)

    from fastapi.testclient import TestClient

    from projections.api.app import create_app
    from projections.api.auth import TokenStore

    class NoLag:
        def close(self) -> None:
            pass

        def measure(self) -> Any:
            raise RuntimeError("not used")

    live_store = open_test_store(settings, settings.sql_url)  # empty: no worker ran on this topic
    tokens = TokenStore(settings.sql_url)
    tokens.migrate()
    admin = tokens.create("admin-test", "admin")
    app = create_app(settings, store=live_store, lag_probe=NoLag(), tokens=tokens)
    auth = {"Authorization": f"Bearer {admin}"}
    with TestClient(app) as client:
        # exact counts: an admin's (callers without a token get small cells suppressed)
        march = client.get("/api/counts", params={"kind": "payment", "snapshot": "march"}, headers=auth).json()
        clean = open_test_store(clean_settings, clean_settings.sql_url)
        assert march == clean.counts("payment")
        assert client.get("/api/counts", params={"kind": "payment"}, headers=auth).json()["events"] == 0
        assert client.get("/api/counts", params={"kind": "payment", "snapshot": "nope"}).status_code == 404
        hazards = client.get("/api/alerts", params={"rule": "visit_hazard", "snapshot": "march"}, headers=auth).json()
        assert hazards["total"] == clean.alerts(rule="visit_hazard")["total"] > 0
        off = client.get("/api/alerts", params={"rule": "visit_hazard", "snapshot": "march-no-hazards"},
                         headers=auth).json()
        assert off["total"] == 0
        warn = client.get("/api/warnings", params={"as_of": until, "snapshot": "march"}, headers=auth)
        assert warn.status_code == 200 and warn.json()["total"] == clean.warnings(until)["total"]
        clean.close()
    live_store.close()
    ops.drop(settings, "march", say=lambda _: None)
    assert not Path(entry["url"].split(":///", 1)[1]).exists()
