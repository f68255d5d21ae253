"""The home is private (careledger/home_permissions.py): a loose home is tightened, links are
left alone, and only the way to another user's directory keeps "execute" for others."""

from __future__ import annotations

import json
import logging
import os
import pwd
import stat
from pathlib import Path

import pytest

from careledger import cli
from careledger.home_permissions import PRIVATE_UMASK, loose_paths, tighten, use_private_umask
from careledger.settings import Settings
from processors.logging_setup import configure_logging


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_loose_home_is_tightened_and_reported(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "kafka" / "data").mkdir(parents=True)
    (home / "projections.sqlite3").write_text("rows")
    (home / "kafka" / "data" / "00000.log").write_text("log")
    for path, m in ((home, 0o755), (home / "kafka", 0o775), (home / "kafka" / "data", 0o750),
                    (home / "projections.sqlite3", 0o644), (home / "kafka" / "data" / "00000.log", 0o660)):
        path.chmod(m)
    (home / "link").symlink_to("/etc/hostname")
    found = {loose.path: loose.mode for loose in loose_paths(home)}
    assert found == {home: 0o755, home / "kafka": 0o775, home / "kafka" / "data": 0o750,
                     home / "projections.sqlite3": 0o644, home / "kafka" / "data" / "00000.log": 0o660}
    changed = tighten(home)
    assert len(changed) == 5 and loose_paths(home) == []
    assert mode(home) == mode(home / "kafka") == mode(home / "kafka" / "data") == 0o700
    assert mode(home / "projections.sqlite3") == 0o600 and mode(home / "kafka" / "data" / "00000.log") == 0o600
    assert mode(Path("/etc/hostname")) & 0o004  # the link's target was not touched
    assert tighten(home) == []  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_only_the_way_to_another_users_directory_keeps_traverse(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = home / "postgres" / "data"
    data.mkdir(parents=True)
    other = pwd.getpwnam("nobody")
    os.chown(data, other.pw_uid, other.pw_gid)
    data.chmod(0o700)
    (home / "postgres").chmod(0o701)
    home.chmod(0o751)  # group r-x is too much even here
    (home / "logs").mkdir()
    (home / "logs").chmod(0o701)  # not on the way: no exception
    found = {loose.path: (loose.mode, loose.allowed) for loose in loose_paths(home)}
    assert found == {home: (0o751, 0o001), home / "logs": (0o701, 0)}
    tighten(home)
    assert mode(home) == 0o701 and mode(home / "postgres") == 0o701 and mode(home / "logs") == 0o700
    assert loose_paths(home) == []


def test_the_private_umask_makes_new_files_0600_and_directories_0700(tmp_path: Path) -> None:
    previous = use_private_umask()
    try:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f").write_text("x")
    finally:
        os.umask(previous)
    assert PRIVATE_UMASK == 0o077
    assert mode(tmp_path / "d") == 0o700 and mode(tmp_path / "d" / "f") == 0o600


def test_every_careledger_command_runs_with_the_private_umask(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from careledger import cli

    seen: list[int] = []

    def command(_: argparse.Namespace) -> int:
        current = os.umask(0)
        os.umask(current)
        seen.append(current)  # what every file it writes and every process it starts inherits
        return 0

    parser = argparse.ArgumentParser()
    parser.add_subparsers(dest="command").add_parser("probe").set_defaults(func=command)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    before = os.umask(0o022)
    try:
        assert cli.main(["probe"]) == 0
        assert seen == [0o077]
        assert os.umask(0o022) == 0o022  # restored for an in-process caller
    finally:
        os.umask(before)


def test_a_json_logging_process_reports_the_tightening_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The worker's every stderr line is JSON (test_ops_worker): the notice waits for its logs."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    monkeypatch.setenv("CARELEDGER_HOME", str(home))
    try:
        assert cli._check_home("process") is None
        assert capsys.readouterr().err == ""  # nothing plain before the logs exist
        configure_logging(Settings.from_env(), "processor-sql")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(e["process"], e["level"]) for e in lines] == [("processor-sql", "warning")]
        assert "removed group/other access from 1 path(s)" in lines[0]["msg"]
        home.chmod(0o755)
        assert cli._check_home("up") is None
        assert "removed group/other access" in capsys.readouterr().err  # up talks to a person: plain text
    finally:
        logging.getLogger().handlers.clear()
