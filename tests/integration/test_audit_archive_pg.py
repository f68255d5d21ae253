"""``careledger audit archive`` and ``audit search`` on PostgreSQL: the old rows move to the file,
the newer ones stay, and a search finds each row once in both (the checks are in
tests/unit/projections/test_audit_archive.py and test_audit_search.py; SQLite runs them there)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.projections.test_audit_archive import check_old_rows_move_to_the_file_and_newer_ones_stay
from tests.unit.projections.test_audit_search import (
    check_rows_come_from_the_database_and_the_archives_once_each,
)


def test_old_rows_move_to_the_file_and_newer_ones_stay_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    check_old_rows_move_to_the_file_and_newer_ones_stay(pg_url, out)


def test_a_search_finds_each_row_once_in_the_database_and_the_archives_on_postgresql(pg_url: str,
                                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    check_rows_come_from_the_database_and_the_archives_once_each(pg_url, out)
