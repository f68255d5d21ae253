"""projections/binding.py: a worker's store source travels to the applier process (pickled) and
opens the same active store there; a replay's shards are private scratch stores."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from processors.replay.engine import runtime_for
from processors.runtime.apply import commit_batch
from processors.runtime.resident import ResidentWriter
from projections.binding import ActiveStoreSource, StoreRef
from projections.sql.shards import sqlite_file


def test_the_store_source_pickles_and_opens_the_same_store(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), home=tmp_path / "home",
                                   sql_url=f"sqlite:///{tmp_path / 'projections.sqlite3'}")
    source = ActiveStoreSource(settings, "sql", default_rules())
    copy = pickle.loads(pickle.dumps(source))
    assert (copy.settings, copy.projection, copy.rules) == (settings, "sql", source.rules)
    binding = copy.open()
    try:
        assert binding.writer.name == "sql" and binding.ping()
        assert copy.swapped() is False
    finally:
        binding.close()


def test_shards_are_private_scratch_stores_and_the_target_keeps_its_journal(tmp_path: Path) -> None:
    """A shard is only ever written by its build and removed when the build fails: no WAL, no
    fsync (projections/sql/engines.py ``scratch_url``); the store it is merged into is durable."""
    settings = dataclasses.replace(Settings.from_env(), home=tmp_path / "home")
    target = StoreRef("sql", f"sqlite:///{tmp_path / 'shadow.sqlite3'}", private=True)
    shards = target.shards(2)
    assert shards is not None and all(shard.private for shard in shards)
    for ref, journal, sync in ((shards[0], "memory", 0), (target, "wal", 1)):
        store = ref.open_store(settings)
        try:
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == journal
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == sync
        finally:
            store.close()
    assert sqlite_file(shards[0].url) == tmp_path / "shadow.sqlite3.shard0"
    target.drop_shards(shards)
    assert not (tmp_path / "shadow.sqlite3.shard0").exists()


def test_a_build_keeps_its_state_resident_only_in_a_private_empty_store(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), home=tmp_path / "home")
    ref = StoreRef("sql", f"sqlite:///{tmp_path / 'new.sqlite3'}", private=True)
    binding = ref.open(settings)
    try:
        assert isinstance(runtime_for(settings, binding, private=True).writer, ResidentWriter)
        assert not isinstance(runtime_for(settings, binding, private=False).writer, ResidentWriter)  # e.g. backfill
        off = dataclasses.replace(settings, replay_resident_events=0)
        assert not isinstance(runtime_for(off, binding, private=True).writer, ResidentWriter)
        commit_batch(binding.projection, binding.writer, [Consumed(0, 0, None)])  # no longer empty
        assert not isinstance(runtime_for(settings, binding, private=True).writer, ResidentWriter)
    finally:
        binding.close()
