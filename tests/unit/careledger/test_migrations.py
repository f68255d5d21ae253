"""Alembic histories of the tables replay cannot rebuild (careledger/migrations.py): stores made by
release dd36c12 upgrade without losing a row, a fresh schema matches the code's table definitions,
and processes starting together upgrade one database without tripping over each other.

The release-dd36c12 stores are SQL dumps written by that release's own code
(tests/fixtures/release_dd36c12/make.py says how)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, inspect

from careledger import migrations
from producers import keystore as keystore_module
from producers.keystore import KeyStore
from projections import webhook_store as subscriptions
from projections.api import auth
from projections.api.auth import TokenStore
from projections.webhook_store import SecretBox, WebhookStore, sql_engine
from projections.webhooks.queue import DeliveryQueue
from tests.support.races import open_api_tables_at, open_keystore_at, race

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "release_dd36c12"
MASTER_KEY = b"release-dd36c12-fixture-master-key"
WEBHOOK_KEY = b"release-dd36c12-fixture-webhook-key"
MADE: dict[str, Any] = json.loads((FIXTURES / "made.json").read_text(encoding="utf-8"))


def load_dump(name: str, path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / f"{name}.sql").read_text(encoding="utf-8"))
    conn.close()
    return f"sqlite:///{path}"


def rows(path: Path, table: str, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    names = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    try:
        return sorted(conn.execute(f"SELECT {names} FROM {table}").fetchall())  # noqa: S608 - our table names
    finally:
        conn.close()


def column_names(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def test_a_key_store_of_release_dd36c12_upgrades_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    url = load_dump("keys", path)
    keys_before = rows(path, "person_keys")
    assert len(keys_before) == 2 and len(rows(path, "tombstones")) == 2  # what the old release wrote

    keystore = KeyStore(url, MASTER_KEY)  # opening it runs the migrations, as every process does at start
    assert migrations.current(keystore.engine, migrations.KEYSTORE) == migrations.head(migrations.KEYSTORE)
    assert rows(path, "person_keys") == keys_before  # every wrapped data key, byte for byte
    keys, tombs = keystore.lookup(["p-alive-1", "p-alive-2", "p-forgotten-1", "p-forgotten-2"])
    assert {pid: kid for pid, (kid, _) in keys.items()} == {p: MADE["kids"][p] for p in ("p-alive-1", "p-alive-2")}
    assert all(len(dek) == 32 for _, dek in keys.values())  # they still open under the master key
    assert set(tombs) == {"p-forgotten-1", "p-forgotten-2"}  # every forgotten person stays forgotten
    forgotten = keystore.forgotten()
    assert "p-forgotten-1" in forgotten and "p-alive-1" not in forgotten
    assert keystore.generation() == 2
    again = keystore.erase("p-forgotten-1")
    assert not again.newly_forgotten and not again.key_destroyed
    # ...and the link is gone: no pseudonym of the forgotten, no old tombstone id in the table
    tombstone_values = {v for row in rows(path, "tombstones") for v in row}
    assert not tombstone_values & {"p-forgotten-1", "p-forgotten-2", *MADE["tombstones"].values()}
    assert {c["name"] for c in inspect(keystore.engine).get_columns("tombstones")} == {"person_digest",
                                                                                       "forgotten_at"}
    keystore.close()
    assert KeyStore(url, MASTER_KEY).lookup(["p-alive-1"])[0]  # a second start is a no-op


def test_the_read_apis_tables_of_release_dd36c12_upgrade_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "projections.sqlite3"
    url = load_dump("api", path)
    tables = ("api_tokens", "audit_log", "webhook_subscriptions", "webhook_deliveries")
    before = {table: rows(path, table) for table in tables}
    columns = {table: column_names(path, table) for table in tables}
    assert [len(before[t]) for t in tables] == [3, 4, 1, 2]

    tokens = TokenStore(url)
    tokens.migrate()
    engine = sql_engine(url)
    webhooks = WebhookStore(engine, SecretBox(WEBHOOK_KEY))
    webhooks.migrate()
    DeliveryQueue(engine).migrate()
    assert migrations.current(engine, migrations.API) == migrations.head(migrations.API)
    assert {table: rows(path, table, columns[table]) for table in tables} == before  # every row, every column
    assert rows(path, "webhook_deliveries", ["traceparent"]) == [(None,), (None,)]  # added by revision 0002
    viewer, caseworker = tokens.verify(MADE["tokens"]["viewer"]), tokens.verify(MADE["tokens"]["caseworker"])
    assert viewer is not None and viewer.role == "viewer"
    assert caseworker is not None and caseworker.towns == ("溪口镇", "莼湖镇")
    assert tokens.verify(MADE["tokens"]["revoked"]) is None
    assert tokens.audit_rows(person_id="p-alive-1")["total"] == 2
    assert webhooks.active_with_secrets()[0]["secret"] == MADE["subscription_secret"]
    log = webhooks.deliveries(webhooks.list()[0]["subscription_id"])
    assert log["by_status"] == {"delivered": 1, "pending": 1}
    tokens.audit(principal=None, method="GET", path="/api/counts", query=None, person_id=None, status=200)
    assert tokens.audit_rows()["total"] == 5  # the table keeps taking rows after the upgrade
    tokens.close()
    engine.dispose()


def _columns(metadata: MetaData, names: tuple[str, ...]) -> dict[str, set[str]]:
    return {name: {c.name for c in metadata.tables[name].columns} for name in names}


def test_a_fresh_schema_is_what_the_code_defines(tmp_path: Path) -> None:
    keystore = KeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}", b"m")
    found = inspect(keystore.engine)
    names = ("person_keys", "tombstones", "keystore_meta")
    assert {n: {c["name"] for c in found.get_columns(n)} for n in names} == _columns(keystore_module.metadata, names)
    engine = sql_engine(f"sqlite:///{tmp_path / 'api.sqlite3'}")
    TokenStore("unused", engine=engine).migrate()
    found = inspect(engine)
    for metadata, names in ((auth.metadata, ("api_tokens", "audit_log")),
                            (subscriptions.metadata, ("webhook_subscriptions", "webhook_deliveries"))):
        assert {n: {c["name"] for c in found.get_columns(n)} for n in names} == _columns(metadata, names)
    assert {i["name"] for i in found.get_indexes("webhook_deliveries")} == {
        "ix_webhook_deliveries_due", "ix_webhook_deliveries_sub_seq"}


def test_processes_starting_together_all_upgrade_one_database(tmp_path: Path) -> None:
    for round_ in range(4):
        for action, history in ((open_keystore_at, migrations.KEYSTORE), (open_api_tables_at, migrations.API)):
            url = f"sqlite:///{tmp_path / f'{history.name}-{round_}.sqlite3'}"
            outcomes = race(action, (url,), racers=5)
            assert outcomes == [("ok", migrations.head(history))] * 5, outcomes
