"""``careledger audit archive``: old audit rows leave the database only once a checked file holds them.

The ``check_*`` functions take a database URL; SQLite runs them here and PostgreSQL in
tests/integration/test_audit_archive_pg.py."""

from __future__ import annotations

import gzip
import json
import stat
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from careledger.cli import main
from careledger.settings import Settings
from projections import audit_archive
from projections.api.auth import Principal, TokenStore
from projections.audit_archive import ArchiveError, archive
from projections.audit_search import RegisteredArchive, registered
from projections.audit_tables import audit_archives, audit_log, audit_subjects

CW = Principal("cw-a", "caseworker")
TODAY = date(2026, 12, 4)


def _seed(tokens: TokenStore, days: list[str]) -> list[int]:
    """One list read naming two persons per day, dated that day (the log writes the time of writing)."""
    ids = [tokens.audit(principal=CW, method="GET", path="/api/alerts", query=None, person_id=None, status=200,
                        subjects=[f"p-{day}", "p-common"]) for day in days]
    with tokens.engine.begin() as conn:
        for audit_id, day in zip(ids, days, strict=True):
            conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(at=f"{day}T08:00:00.000+00:00"))
    return ids


def _counts(tokens: TokenStore) -> tuple[int, int]:
    with tokens.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(audit_log)).scalar_one(),
                conn.execute(select(func.count()).select_from(audit_subjects)).scalar_one())


def _lines(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def check_old_rows_move_to_the_file_and_newer_ones_stay(url: str, tmp_path: Path) -> None:
    tokens = TokenStore(url)
    tokens.migrate()
    ids = _seed(tokens, ["2024-03-01", "2024-12-31", "2025-01-01", "2025-06-30"])
    out = tmp_path / "audit-2024.jsonl.gz"
    seen: list[tuple[int, int]] = []
    result = archive(tokens.engine, "2025-01-01", out, written=lambda done, total: seen.append((done, total)),
                     today=TODAY)
    assert (result.rows, result.subjects, result.deleted) == (2, 4, 2)
    assert (result.first_at, result.last_at) == ("2024-03-01T08:00:00.000+00:00", "2024-12-31T08:00:00.000+00:00")
    assert seen and seen[-1] == (2, 2)
    archived = _lines(out)
    assert [row["id"] for row in archived] == ids[:2]
    assert archived[1]["subjects"] == ["p-2024-12-31", "p-common"]
    assert archived[0]["token_name"] == "cw-a" and archived[0]["path"] == "/api/alerts"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it says who read whose data
    assert _counts(tokens) == (2, 4)  # 2025's two rows and their four persons stay
    remaining = tokens.audit_rows(person_id="p-common")["items"]
    assert sorted(row["id"] for row in remaining) == ids[2:]
    assert list(tmp_path.iterdir()) == [out]  # no partial file left behind
    # the archive is recorded: the audit's readers know the rows before the day may be in it only
    assert registered(tokens.engine) == [RegisteredArchive("2025-01-01", out.resolve(), 2, result.sha256 or "")]
    assert tokens.audit_rows()["archived_before"] == "2025-01-01"
    tokens.close()


def test_old_rows_move_to_the_file_and_newer_ones_stay(tmp_path: Path) -> None:
    check_old_rows_move_to_the_file_and_newer_ones_stay(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path / "out")


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    store = TokenStore(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    store.migrate()
    return store


@pytest.fixture(autouse=True)
def _out_dir(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()


def test_an_archive_is_never_overwritten_and_nothing_is_deleted(tokens: TokenStore, tmp_path: Path) -> None:
    _seed(tokens, ["2024-01-01"])
    out = tmp_path / "out" / "audit.jsonl.gz"
    out.write_bytes(b"last year's archive")
    with pytest.raises(ArchiveError, match="never overwritten"):
        archive(tokens.engine, "2025-01-01", out, today=TODAY)
    assert out.read_bytes() == b"last year's archive"
    assert _counts(tokens) == (1, 2)
    assert registered(tokens.engine) == [] and tokens.audit_rows()["archived_before"] is None


def test_a_file_that_reads_back_wrong_deletes_nothing(tokens: TokenStore, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tokens, ["2024-01-01", "2024-02-01"])
    monkeypatch.setattr(audit_archive, "_read_back", lambda path: (1, 0))  # a disk that lost a row
    out = tmp_path / "out" / "audit.jsonl.gz"
    with pytest.raises(ArchiveError, match="nothing was deleted"):
        archive(tokens.engine, "2025-01-01", out, today=TODAY)
    assert _counts(tokens) == (2, 4)
    assert list((tmp_path / "out").iterdir()) == []  # neither the archive nor its partial file


def test_a_stop_while_deleting_loses_nothing_and_the_next_run_finishes(tokens: TokenStore, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _seed(tokens, [f"2024-01-{d:02d}" for d in range(1, 6)])
    monkeypatch.setattr(audit_archive, "BATCH", 2)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt  # the operator's ^C after the first delete batch

    first = tmp_path / "out" / "a.jsonl.gz"
    with pytest.raises(KeyboardInterrupt):
        archive(tokens.engine, "2025-01-01", first, removed=stop, today=TODAY)
    assert [row["id"] for row in _lines(first)] == ids  # the archive is whole
    assert _counts(tokens) == (3, 6)  # two rows deleted, three still here
    second = tmp_path / "out" / "b.jsonl.gz"
    result = archive(tokens.engine, "2025-01-01", second, today=TODAY)
    assert [row["id"] for row in _lines(second)] == ids[2:] and result.deleted == 3
    assert _counts(tokens) == (0, 0)


def test_the_day_is_checked_and_a_dry_run_only_counts(tokens: TokenStore, tmp_path: Path) -> None:
    _seed(tokens, ["2024-01-01"])
    with pytest.raises(ArchiveError, match="after today"):
        archive(tokens.engine, "2026-12-05", tmp_path / "out" / "x.gz", today=TODAY)
    with pytest.raises(ArchiveError, match="not a date"):
        archive(tokens.engine, "2024-13-01", tmp_path / "out" / "x.gz", today=TODAY)
    assert archive(tokens.engine, "2025-01-01", None, dry_run=True, today=TODAY).rows == 1
    assert _counts(tokens) == (1, 2)
    assert list((tmp_path / "out").iterdir()) == []


def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TokenStore:
    """A private ``CARELEDGER_HOME`` for the command line, and its audit log (the SQLite default)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("CARELEDGER_HOME", str(home))
    monkeypatch.delenv("CARELEDGER_SQL_URL", raising=False)
    monkeypatch.delenv("CARELEDGER_TOWNS", raising=False)
    tokens = TokenStore.from_settings(Settings.from_env())
    tokens.migrate()
    return tokens


def _admin_token(tokens: TokenStore, path: Path, role: str = "admin") -> Path:
    path.write_text(tokens.create(f"ops-{role}", role, "锦屏街道" if role == "caseworker" else None))
    path.chmod(0o600)
    return path


def test_the_command_needs_an_admin_token_and_is_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    tokens = cli_home(tmp_path, monkeypatch)
    _seed(tokens, ["2024-01-01", "2024-02-01"])
    out = tmp_path / "out" / "audit.jsonl.gz"
    caseworker = _admin_token(tokens, tmp_path / "cw-token", "caseworker")
    assert main(["audit", "archive", "--before", "2025-01-01", "--out", str(out), "--token-file", str(caseworker),
                 "--no-progress"]) == 2
    assert "not an active admin token" in capsys.readouterr().err
    assert not out.exists() and _counts(tokens)[0] == 3  # two rows, and the refusal's own row

    admin = _admin_token(tokens, tmp_path / "admin-token")
    assert main(["audit", "archive", "--before", "2025-01-01", "--out", str(out), "--token-file", str(admin),
                 "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "archived 2 audit rows" in said and "deleted 2 from the database" in said and str(out) in said
    runs = [(row["token_name"], row["status"], row["query"]) for row in tokens.audit_rows()["items"]
            if row["path"] == "careledger audit archive"]
    assert runs == [("ops-admin", 200, "before=2025-01-01"), ("ops-caseworker", 403, "before=2025-01-01")]
    assert [row["path"] for row in _lines(out)] == ["/api/alerts", "/api/alerts"]
    with tokens.engine.connect() as conn:
        assert conn.execute(select(audit_archives.c.made_by, audit_archives.c.rows)).all() == [("ops-admin", 2)]
    tokens.close()


def test_an_archive_of_an_older_release_is_recorded_once_its_file_reads_to_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = cli_home(tmp_path, monkeypatch)
    _seed(tokens, ["2024-03-01", "2024-12-30"])
    out = tmp_path / "out" / "audit-2024.jsonl.gz"
    archive(tokens.engine, "2025-01-01", out, today=TODAY)
    with tokens.engine.begin() as conn:  # as an archive of a release before the record existed
        conn.execute(audit_archives.delete())
    admin = _admin_token(tokens, tmp_path / "admin-token")
    broken = tmp_path / "out" / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(gzip.decompress(out.read_bytes()) + b"{\n"))  # a third line cut short

    assert main(["audit", "register", str(broken), "--token-file", str(admin)]) == 2
    assert f"{broken} line 3: not JSON; not recorded" in capsys.readouterr().err
    assert main(["audit", "register", str(out), "--before", "2024-12-30", "--token-file", str(admin)]) == 2
    assert "the file has rows written on 2024-12-30, not before it" in capsys.readouterr().err
    assert registered(tokens.engine) == []

    assert main(["audit", "register", str(out), "--token-file", str(admin)]) == 0
    assert "2 audit rows written before 2024-12-31" in capsys.readouterr().out  # the day after its last row
    made = registered(tokens.engine)
    assert [(m.before, m.file, m.rows) for m in made] == [("2024-12-31", out.resolve(), 2)]
    assert tokens.audit_rows()["archived_before"] == "2024-12-31"
    assert main(["audit", "register", str(out), "--token-file", str(admin)]) == 2
    assert "recorded already" in capsys.readouterr().err
    runs = [(row["status"], row["query"]) for row in tokens.audit_rows()["items"]
            if row["path"] == "careledger audit register"]
    assert runs == [(200, "file=audit-2024.jsonl.gz")] * 2 + [(200, "file=audit-2024.jsonl.gz&before=2024-12-30"),
                                                              (200, "file=broken.jsonl.gz")]
    tokens.close()
