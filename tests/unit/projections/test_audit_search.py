"""``careledger audit search``: every audit row naming a person, from the database and the archives.

``check_rows_come_from_the_database_and_the_archives_once_each`` takes a database URL; SQLite runs it
here and PostgreSQL in tests/integration/test_audit_archive_pg.py."""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import update

from careledger.cli import main
from careledger.settings import Settings
from producers.pseudonym import SECRET_NAME, Pseudonymiser
from projections.api.auth import Principal, TokenStore
from projections.audit_archive import archive
from projections.audit_search import search
from projections.audit_tables import audit_log
from tests.unit.projections.test_audit_archive import cli_home

CW = Principal("cw-a", "caseworker")
TODAY = date(2026, 12, 4)
ID_NUMBER = "11010519491231002X"  # a valid check digit (GB 11643), made up


def _read(tokens: TokenStore, day: str, *, person_id: str | None = None, subjects: tuple[str, ...] = (),
          path: str = "/api/alerts") -> int:
    """One audit row dated ``day`` (the log writes the time of writing)."""
    audit_id = tokens.audit(principal=CW, method="GET", path=path, query=None, person_id=person_id, status=200,
                            subjects=subjects)
    with tokens.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(at=f"{day}T08:00:00.000+00:00"))
    return audit_id


def _seed(tokens: TokenStore) -> dict[str, int]:
    return {
        "listed-2024": _read(tokens, "2024-03-01", subjects=("p-x", "p-y", "p-z")),
        "other-2024": _read(tokens, "2024-05-01", subjects=("p-y",)),
        "named-2024": _read(tokens, "2024-11-30", person_id="p-x", path="/api/persons/p-x/record"),
        "listed-2025": _read(tokens, "2025-02-01", subjects=("p-x",)),
        "named-2025": _read(tokens, "2025-03-01", person_id="p-x", path="/api/persons/p-x/record"),
        "other-2025": _read(tokens, "2025-04-01", person_id="p-y", path="/api/persons/p-y/record"),
    }


def check_rows_come_from_the_database_and_the_archives_once_each(url: str, out: Path) -> None:
    tokens = TokenStore(url)
    tokens.migrate()
    ids = _seed(tokens)
    first = out / "audit-2024-h1.jsonl.gz"
    second = out / "audit-2024-h2.jsonl.gz"
    archive(tokens.engine, "2024-06-01", first, today=TODAY)
    archive(tokens.engine, "2025-01-01", second, today=TODAY)

    result = search(tokens.engine, "p-x", [first, second, first])  # a file given twice counts once
    assert [hit.id for hit in result.hits] == [ids["listed-2024"], ids["named-2024"], ids["listed-2025"],
                                               ids["named-2025"]]
    assert [(hit.named, hit.listed, hit.source) for hit in result.hits] == [
        (False, 3, first.name), (True, 0, second.name), (False, 1, "database"), (True, 0, "database")]
    assert result.hits[1].row["path"] == "/api/persons/p-x/record"
    assert result.found_in == {"database": 2, str(first): 1, str(second): 1}
    assert result.complete

    # without the archives only the database's rows answer (what /api/audit sees)
    assert [hit.id for hit in search(tokens.engine, "p-x").hits] == [ids["listed-2025"], ids["named-2025"]]
    assert [hit.id for hit in search(tokens.engine, "p-y", [first, second]).hits] == [
        ids["listed-2024"], ids["other-2024"], ids["other-2025"]]
    tokens.close()


def test_rows_come_from_the_database_and_the_archives_once_each(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    check_rows_come_from_the_database_and_the_archives_once_each(f"sqlite:///{tmp_path / 'db.sqlite3'}", out)


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    store = TokenStore(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    store.migrate()
    return store


def _archive_file(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))
    return path


def _row(audit_id: int, person_id: str | None = None, subjects: list[str] | None = None) -> bytes:
    return json.dumps({"id": audit_id, "at": f"2023-01-{audit_id:02d}T08:00:00.000+00:00", "token_name": "cw-a",
                       "role": "caseworker", "method": "GET", "path": "/api/alerts", "query": None,
                       "person_id": person_id, "status": 200, "subjects": subjects or []}).encode()


def test_a_line_or_file_that_cannot_be_read_is_named_and_the_rest_still_answers(tokens: TokenStore,
                                                                                 tmp_path: Path) -> None:
    broken = _archive_file(tmp_path / "broken.jsonl.gz", [
        _row(1, subjects=["p-x"]), b"{not json", b"[1, 2]", _row(4, person_id="p-x")[:-1] + b', "status": "200"}',
        b'{"id": 5, "at": "2023-01-05", "method": "GET", "path": "/", "status": true}',
        _row(6, person_id="p-x")])
    cut = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress(b"".join(_row(i, person_id="p-x") + b"\n" for i in range(10, 400)))
    cut.write_bytes(whole[: len(whole) // 2])  # a copy that stopped half way
    not_gzip = tmp_path / "plain.jsonl"
    not_gzip.write_bytes(_row(7, person_id="p-x"))

    result = search(tokens.engine, "p-x", [broken, cut, not_gzip, tmp_path / "missing.jsonl.gz"])
    assert [hit.id for hit in result.hits][:2] == [1, 6]  # the good lines of the broken file still answer
    assert not result.complete
    problems = "\n".join(result.problems)
    assert f"{broken} line 2: not JSON" in problems
    assert f"{broken} line 3: not a JSON object" in problems
    assert f"{broken} line 4: field 'status' missing or not int" in problems
    assert f"{broken} line 5: field 'status' missing or not int" in problems  # true is no HTTP status
    assert f"{cut}: cannot be read to its end" in problems
    assert f"{not_gzip}: cannot be read to its end" in problems
    assert f"{tmp_path / 'missing.jsonl.gz'}: no such file" in problems
    assert len(result.problems) == 7


def test_a_row_both_archived_and_still_in_the_database_is_shown_once_as_the_database_has_it(
        tokens: TokenStore, tmp_path: Path) -> None:
    """An archive stopped while deleting leaves rows in both; a webhook POST's answer may be
    recorded in the database after its row was archived with status 0 (no answer yet)."""
    audit_id = _read(tokens, "2024-03-01", person_id="p-x")
    row = tokens.audit_rows(person_id="p-x")["items"][0]
    copy = json.dumps({**row, "status": 0, "subjects": []}).encode()
    archived = _archive_file(tmp_path / "a.jsonl.gz", [copy])
    result = search(tokens.engine, "p-x", [archived, archived])
    assert [(hit.id, hit.row["status"], hit.source) for hit in result.hits] == [(audit_id, 200, "database")]
    assert result.found_in == {"database": 1, str(archived): 1}


def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, TokenStore]:
    tokens = cli_home(tmp_path, monkeypatch)
    return Settings.from_env(), tokens


def _token(tokens: TokenStore, path: Path, role: str) -> Path:
    path.write_text(tokens.create(f"ops-{role}", role, "锦屏街道" if role == "caseworker" else None))
    path.chmod(0o600)
    return path


def test_the_command_needs_an_admin_token_and_audits_the_search_under_the_person(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _settings, tokens = _home(tmp_path, monkeypatch)
    ids = _seed(tokens)
    tokens.audit(principal=Principal("webhook:wh_1", "subscriber"), method="POST", path="https://hooks.example/a",
                 query="delivery_id=d1&town=锦屏街道", person_id="p-x", status=0)  # claimed, answer never recorded
    old = tmp_path / "audit-2024.jsonl.gz"
    archive(tokens.engine, "2025-01-01", old, today=TODAY)
    caseworker = _token(tokens, tmp_path / "cw-token", "caseworker")
    admin = _token(tokens, tmp_path / "admin-token", "admin")

    assert main(["audit", "search", "--person-id", "p-x", "--archive", str(old), "--token-file", str(caseworker)]) == 2
    assert "not an active admin token" in capsys.readouterr().err

    assert main(["audit", "search", "--person-id", "p-x", "--archive", str(old), "--token-file", str(admin)]) == 0
    table = capsys.readouterr().out
    assert "查阅记录 audit rows naming p-x: 7" in table  # four reads, a POST, the refused search and this one
    assert "POST https://hooks.example/a?delivery_id=d1&town=锦屏街道  → 0 (未记录应答 no answer recorded)" in table
    assert "列表 listed among 3" in table and "本人 named" in table and f"[{old.name}]" in table
    assert "/api/persons/p-x/record" in table
    assert "careledger audit search?archives=1  → 403" in table  # the refused search is named too

    searches = [(row["token_name"], row["status"], row["query"], row["person_id"])
                for row in tokens.audit_rows()["items"] if row["path"] == "careledger audit search"]
    assert searches == [("ops-admin", 200, "archives=1", "p-x"), ("ops-caseworker", 403, "archives=1", "p-x")]

    assert main(["audit", "search", "--person-id", "p-x", "--archive", str(old), "--token-file", str(admin),
                 "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["listed"]) for r in rows[:2]] == [3, 0] and rows[0]["how"] == "listed"
    assert rows[0]["source"] == old.name and rows[-1]["path"] == "careledger audit search"

    # without --archive: every archive the command made, where it wrote it
    assert main(["audit", "search", "--person-id", "p-x", "--token-file", str(admin), "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {ids["listed-2025"], ids["named-2024"]} <= {line["id"] for line in lines}
    assert {line["source"] for line in lines} == {"database", old.name}

    # an archive moved to cold storage: named, the answer incomplete; found again at its new place
    moved = tmp_path / "cold" / old.name
    moved.parent.mkdir()
    old.rename(moved)
    assert main(["audit", "search", "--person-id", "p-x", "--token-file", str(admin)]) == 1
    said = capsys.readouterr()
    assert f"{old}: no such file" in said.err and "the answer is incomplete" in said.err
    assert "2024-11-30" not in said.out and "2025-03-01" in said.out  # 2024's read is in the moved file only
    assert main(["audit", "search", "--person-id", "p-x", "--token-file", str(admin), "--archive", str(moved)]) == 0
    assert f"归档 archive {moved}: 2 rows naming the person" in capsys.readouterr().out
    tokens.close()


def test_an_incomplete_answer_exits_1_and_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _settings, tokens = _home(tmp_path, monkeypatch)
    admin = _token(tokens, tmp_path / "admin-token", "admin")
    broken = _archive_file(tmp_path / "broken.jsonl.gz", [_row(1, person_id="p-x"), b"{"])
    assert main(["audit", "search", "--person-id", "p-x", "--archive", str(broken), "--token-file", str(admin)]) == 1
    said = capsys.readouterr()
    # the readable row is still shown, beside the database's row 1 (this search's own): another row
    # with the same id, written at another time
    assert "2023-01-01T08:00:00.000+00:00" in said.out and "audit rows naming p-x: 2" in said.out
    assert f"{broken} line 2: not JSON" in said.err and "the answer is incomplete" in said.err
    tokens.close()


def test_an_id_number_is_read_from_stdin_only_and_never_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    settings, tokens = _home(tmp_path, monkeypatch)
    admin = _token(tokens, tmp_path / "admin-token", "admin")
    person = Pseudonymiser(settings.secret(SECRET_NAME)).person_id(ID_NUMBER)
    _read(tokens, "2025-03-01", person_id=person, path=f"/api/persons/{person}/record")

    assert main(["audit", "search", "--person-id", ID_NUMBER, "--token-file", str(admin)]) == 2
    assert "--id-number-stdin" in capsys.readouterr().err  # refused on the command line

    monkeypatch.setattr(sys, "stdin", io.StringIO(ID_NUMBER + "\n"))
    assert main(["audit", "search", "--id-number-stdin", "--token-file", str(admin)]) == 0
    said = capsys.readouterr()
    assert f"audit rows naming {person}: 2" in said.out  # the read, and this search
    assert ID_NUMBER not in said.out + said.err

    monkeypatch.setattr(sys, "stdin", io.StringIO("110105194912310021\n"))  # a wrong check digit
    assert main(["audit", "search", "--id-number-stdin", "--token-file", str(admin)]) == 2
    err = capsys.readouterr().err
    assert "--id-number-stdin: id_number:" in err and "110105194912310021" not in err

    dumped = "\n".join(str(row) for row in tokens.audit_rows(limit=1000)["items"])
    assert ID_NUMBER not in dumped and "110105194912310021" not in dumped
    tokens.close()
