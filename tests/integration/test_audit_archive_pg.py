"""``careledger audit archive`` on PostgreSQL: the old rows move to the file, the newer ones stay
(the checks are in tests/unit/projections/test_audit_archive.py; SQLite runs them there)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.projections.test_audit_archive import check_old_rows_move_to_the_file_and_newer_ones_stay


def test_old_rows_move_to_the_file_and_newer_ones_stay_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    check_old_rows_move_to_the_file_and_newer_ones_stay(pg_url, out)
