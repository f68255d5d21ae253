"""Generated secrets appear whole or not at all, and processes starting together share one."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from careledger.secret_files import (
    EmptySecretFile,
    InsecureSecretFile,
    create_secret_file,
    read_secret_file,
)
from careledger.settings import Settings
from tests.support.races import race


def _secret_in(home: str) -> str:
    os.environ.pop("CARELEDGER_HMAC_KEY", None)
    return dataclasses.replace(Settings.from_env(), home=Path(home)).secret("hmac-key").decode()


def test_processes_starting_together_all_get_one_whole_secret(tmp_path: Path) -> None:
    # before secret_files.py, one of 8 processes failed with FileExistsError in the first round
    for round_ in range(5):  # the race window is small: several rounds on fresh homes
        home = tmp_path / f"home-{round_}"
        outcomes = race(_secret_in, (str(home),), racers=8)
        assert all(kind == "ok" for kind, _ in outcomes), outcomes
        values = {value for _, value in outcomes}
        assert len(values) == 1 and len(values.pop()) == 64, outcomes
        assert sorted(p.name for p in (home / "secrets").iterdir()) == ["hmac-key"]  # no temporary left


def test_the_first_writer_wins(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "master-key"
    assert create_secret_file(path, b"first") == b"first"
    assert create_secret_file(path, b"second") == b"first"
    assert path.read_bytes() == b"first"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(("content", "mode", "error", "message"), [
    (b"\n", 0o600, EmptySecretFile, r"hmac-key is empty"),  # a key of no bytes: the wrong key
    (b"s3cret", 0o640, InsecureSecretFile, r"chmod 600"),  # readable by the group
])
def test_unusable_secret_files_are_refused(tmp_path: Path, content: bytes, mode: int,
                                           error: type[Exception], message: str) -> None:
    path = tmp_path / "hmac-key"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(error, match=message):
        read_secret_file(path)
