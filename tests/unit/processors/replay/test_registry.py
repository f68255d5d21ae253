"""The projection registry: atomic writes, swaps, snapshots, defaults."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from careledger.settings import Settings
from projections.registry import ActiveStore, Registry, RegistryError, SnapshotStores


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env(), home=tmp_path, sql_url=f"sqlite:///{tmp_path / 'p.sqlite3'}",
                               clickhouse_url=None)


def test_without_a_file_the_settings_decide(settings: Settings) -> None:
    reg = Registry(settings)
    assert reg.active_url("sql") == settings.sql_url
    assert reg.active_name("sql") is None
    assert not reg.path.exists()
    with pytest.raises(RegistryError, match="no store configured"):
        reg.active_url("clickhouse")
    assert reg.active_url("monthly_program_totals").endswith("monthly_program_totals.sqlite3")


def test_swap_keeps_the_previous_store_until_removed(settings: Settings) -> None:
    reg = Registry(settings)
    reg.register("sql-new", "sqlite:////x/new.sqlite3", "sql", "building", owned=True)
    assert reg.active_url("sql") == settings.sql_url  # building: not active yet
    previous = reg.swap("sql", "sql-new")
    assert previous == "sql-initial"
    assert reg.active_url("sql") == "sqlite:////x/new.sqlite3"
    old = reg.entry("sql-initial")
    assert (old["role"], old["url"], old["owned"]) == ("retired", settings.sql_url, False)
    with pytest.raises(RegistryError, match="active"):
        reg.remove("sql-new")
    # swap back, then the second shadow retires the first
    assert reg.swap("sql", "sql-initial") == "sql-new"
    assert reg.active_url("sql") == settings.sql_url
    assert reg.entry("sql-new")["role"] == "retired"
    reg.remove("sql-new")
    assert [s["name"] for s in reg.stores()] == ["sql-initial"]


def test_swap_rejects_wrong_projection_and_snapshots(settings: Settings) -> None:
    reg = Registry(settings)
    reg.register("ch", "clickhouse://h/db", "clickhouse", "building")
    reg.register("march", "sqlite:////x/m.sqlite3", "sql", "snapshot", until="2024-03-31")
    with pytest.raises(RegistryError, match="not sql"):
        reg.swap("sql", "ch")
    with pytest.raises(RegistryError, match="cannot activate"):
        reg.swap("sql", "march")
    with pytest.raises(RegistryError, match="already exists"):
        reg.register("march", "sqlite:////x/m2.sqlite3", "sql", "snapshot")
    with pytest.raises(RegistryError, match="invalid store name"):
        reg.register("../evil", "sqlite:////x", "sql", "snapshot")
    assert reg.snapshot("march")["until"] == "2024-03-31"
    with pytest.raises(RegistryError, match="not a snapshot"):
        reg.snapshot("ch")


def test_writes_are_atomic_and_private(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(settings)
    reg.register("a", "sqlite:////x/a.sqlite3", "sql", "building")
    before = reg.path.read_text()
    assert stat.S_IMODE(os.stat(reg.path).st_mode) == 0o600

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        reg.register("b", "sqlite:////x/b.sqlite3", "sql", "building")
    monkeypatch.undo()
    assert reg.path.read_text() == before  # the old document is intact
    assert [p.name for p in reg.path.parent.iterdir() if p.name.startswith(".registry.")] == []
    assert json.loads(before)["stores"].keys() == {"a"}


def test_concurrent_writers_lose_nothing(settings: Settings) -> None:
    def register(i: int) -> None:
        Registry(settings).register(f"s{i}", f"sqlite:////x/{i}.sqlite3", "sql", "snapshot")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Registry(settings).stores("snapshot")) == 16


def test_signature_changes_on_every_write(settings: Settings) -> None:
    reg = Registry(settings)
    assert reg.signature() is None
    reg.register("a", "sqlite:////x/a.sqlite3", "sql", "building")
    first = reg.signature()
    reg.update("a", status="ready")
    assert reg.signature() != first


def test_active_store_follows_a_swap(settings: Settings, tmp_path: Path) -> None:
    reg = Registry(settings)
    active = ActiveStore(reg, "sql", migrate=True)
    assert active.current().url == settings.sql_url
    assert not hasattr(active, "engine")  # the API keeps its tokens in the settings' database
    new_url = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"
    reg.register("shadow", new_url, "sql", "building")
    reg.swap("sql", "shadow")
    assert active.current().url == new_url
    assert active.offsets() == {}
    active.close()


def test_snapshot_stores_only_serve_ready_snapshots(settings: Settings, tmp_path: Path) -> None:
    reg = Registry(settings)
    url = f"sqlite:///{tmp_path / 'snap.sqlite3'}"
    reg.register("march", url, "sql", "snapshot", status="building")
    snaps = SnapshotStores(settings)
    assert snaps.get("march") is None
    assert snaps.get("nope") is None
    reg.update("march", status="ready")
    store = snaps.get("march")
    assert store is not None and store.url == url
    assert snaps.get("march") is store
    snaps.close()
