"""The backup's own formats: the events dump line and the manifest's checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.backups.layout import BackupError, Manifest, parse_record_line, record_line, sha256_file


@given(offset=st.integers(0, 2**62), timestamp=st.integers(0, 2**45),
       key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=200))
def test_a_dumped_record_comes_back_byte_for_byte(offset: int, timestamp: int, key: bytes | None,
                                                  value: bytes | None) -> None:
    line = record_line(offset, timestamp, key, value)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_record_line(line) == (offset, timestamp, key, value)


def test_utf8_json_values_are_kept_as_readable_text() -> None:
    line = record_line(7, 1, b"p-1", '{"town":"锦屏街道"}'.encode())
    assert '"value":"{\\"town\\":\\"锦屏街道\\"}"' in line.decode("utf-8")
    assert b"_b64" not in line


def _manifest(directory: Path) -> Manifest:
    (directory / "a.bin").write_bytes(b"abc")
    return Manifest("2026-01-01T00:00:00+00:00", "careledger.events", {0: {"records": 1, "first_offset": 0,
                                                                           "last_offset": 0}},
                    {"a.bin": sha256_file(directory / "a.bin")}, {"hmac-key": "not included"})


def test_the_manifest_round_trips_and_verifies(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    again = Manifest.read(tmp_path)
    assert again == manifest
    again.verify(tmp_path)


def test_a_changed_or_missing_file_is_named(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"abd")
    with pytest.raises(BackupError, match="a.bin: checksum mismatch"):
        manifest.verify(tmp_path)
    (tmp_path / "a.bin").unlink()
    with pytest.raises(BackupError, match="a.bin: missing"):
        manifest.verify(tmp_path)


def test_a_directory_without_a_manifest_or_of_another_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="not a careledger backup manifest"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 99}', encoding="utf-8")
    with pytest.raises(BackupError, match="format 99"):
        Manifest.read(tmp_path)


def test_the_commands_refuse_with_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from careledger.cli import main

    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["backup", str(tmp_path / "full"), "--include-secrets", "--no-progress"]) == 1
    assert main(["restore", str(tmp_path / "nothing-here")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"careledger backup: {tmp_path / 'full'} is not empty: a backup goes into a new directory"
    assert err[1].startswith(f"careledger restore: {tmp_path / 'nothing-here' / 'manifest.json'}: not a careledger")


def _backup_dir(directory: Path, offsets: list[int], claimed: int) -> Path:
    """A backup written by hand: one partition with records at ``offsets``, empty tables."""
    import gzip

    from sqlalchemy import create_engine

    from infra.backups import layout, tables

    (directory / "events").mkdir(parents=True)
    with gzip.open(directory / "events" / "p0.jsonl.gz", "wb") as fh:
        for offset in offsets:
            fh.write(record_line(offset, 1_700_000_000_000, b"p-1", b'{"event_id":"e"}'))
    for name, (metadata, _) in ((layout.KEYS_FILE, tables.keystore_tables()), (layout.API_FILE, tables.api_tables())):
        metadata.create_all(create_engine(f"sqlite:///{directory / name}"))
    files = ["events/p0.jsonl.gz", layout.KEYS_FILE, layout.API_FILE]
    manifest = Manifest("2026-11-29T00:00:00+00:00", "careledger.events",
                        {0: {"records": claimed, "first_offset": offsets[0], "last_offset": offsets[-1]}},
                        {name: sha256_file(directory / name) for name in files}, {"hmac-key": "not included"})
    (directory / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return directory


def test_check_reads_every_record_and_counts_them_against_the_manifest(tmp_path: Path) -> None:
    import io

    from infra.backups import check

    out = io.StringIO()
    check(_backup_dir(tmp_path / "good", [0, 1, 2, 5], claimed=4), out=out)
    assert "4 records of careledger.events in 1 partitions, 0 data keys" in out.getvalue()
    with pytest.raises(BackupError, match="3 records, the manifest says 4"):
        check(_backup_dir(tmp_path / "short", [0, 1, 2], claimed=4), out=out)
    with pytest.raises(BackupError, match="offset 1 after 2: records out of order"):
        check(_backup_dir(tmp_path / "shuffled", [0, 2, 1], claimed=3), out=out)


def test_stamped_backups_sort_by_age_and_only_finished_ones_are_pruned(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from infra.backups import prune_backups, stamped_dir

    assert stamped_dir(tmp_path, datetime(2026, 11, 29, 2, 0, 5, tzinfo=UTC)).name == "careledger-20261129T020005Z"
    finished = []
    for day in range(1, 6):
        path = stamped_dir(tmp_path, datetime(2026, 11, day, 2, 0, 0, tzinfo=UTC))
        path.mkdir()
        (path / "manifest.json").write_text("{}")
        finished.append(path)
    unfinished = stamped_dir(tmp_path, datetime(2026, 10, 1, tzinfo=UTC))
    unfinished.mkdir()  # a run that died before its manifest: left for a human to look at
    (tmp_path / "careledger-notes").mkdir()  # not ours
    assert prune_backups(tmp_path, keep=2) == finished[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [finished[3].name, finished[4].name, unfinished.name, "careledger-notes"])
    with pytest.raises(BackupError, match="at least 1"):
        prune_backups(tmp_path, keep=0)


def test_keep_without_stamp_is_refused_before_anything_is_written(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from careledger.cli import main

    assert main(["backup", str(tmp_path / "b"), "--keep", "3"]) == 2
    assert main(["backup", str(tmp_path / "b"), "--stamp", "--keep", "0"]) == 2
    assert not (tmp_path / "b").exists()
    assert "--keep N (N >= 1) only prunes --stamp backups" in capsys.readouterr().err


def test_a_backup_of_release_dd36c12_is_restored_with_unlinkable_tombstones(tmp_path: Path) -> None:
    import sqlite3

    from infra.backups.tables import upgraded_keystore_copy
    from producers.keystore import KeyStore
    from tests.unit.careledger.test_migrations import FIXTURES, MADE, MASTER_KEY

    old = tmp_path / "backup" / "keys.sqlite3"  # what an older release's `careledger backup` wrote
    old.parent.mkdir()
    conn = sqlite3.connect(old)
    conn.executescript((FIXTURES / "keys.sql").read_text(encoding="utf-8"))
    conn.close()
    before = old.read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    engine = upgraded_keystore_copy(old, work, MASTER_KEY)
    assert old.read_bytes() == before  # the backup itself is never changed
    assert str(work) in str(engine.url)
    with engine.connect() as conn2:
        rows = conn2.exec_driver_sql("SELECT * FROM tombstones").all()
    assert len(rows) == 2 and not {v for r in rows for v in r} & {*MADE["tombstones"], *MADE["tombstones"].values()}
    restored = KeyStore(str(engine.url), MASTER_KEY)
    assert set(restored.lookup(list(MADE["kids"]))[1]) == set(MADE["tombstones"])
    current = upgraded_keystore_copy(work / "keys.sqlite3", tmp_path, MASTER_KEY)
    assert str(current.url).endswith(str(work / "keys.sqlite3"))  # already current: used as it is
