"""projections/sql/shards.py: shards built by separate runtimes, merged into an empty store, give
that store the rows and the indexes a build straight into it would have."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from projections.sql.shards import merge_shards, remove_shard, shard_url, sqlite_file
from tests.support.sql_builds import build, simulated_raws, store_at, store_rows


def indexes(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'index' "
                                 "AND sql IS NOT NULL").fetchall())


def test_merged_shards_equal_a_direct_build_and_keep_every_index(tmp_path: Path) -> None:
    records = simulated_raws(2000)
    direct = store_at(tmp_path, "direct")
    build(direct, records, 200, None)
    target = store_at(tmp_path, "target")
    urls = [shard_url(target.url, k) for k in range(2)]
    for k, url in enumerate(urls):
        shard = store_at(tmp_path, f"shard{k}", url)
        build(shard, [r for r in records if r.partition % 2 == k], 200, 1_000_000)
        shard.close()
    before = indexes(tmp_path / "target.sqlite3")
    assert len(before) > 10
    merge_shards(target, urls)
    assert indexes(tmp_path / "target.sqlite3") == before == indexes(tmp_path / "direct.sqlite3")
    # the merge renumbers the ledger and the outbox shard by shard: compare them without seq
    assert store_rows(target, skip=("seq",)) == store_rows(direct, skip=("seq",))
    for url in urls:
        remove_shard(url)
        assert not Path(f"{sqlite_file(url)}").exists()
