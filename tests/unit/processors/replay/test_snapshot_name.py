"""Issue 15.13: ``replay snapshot '../../x'`` refused the name only after it had written a file
outside the home.  The name is checked before anything touches the filesystem (or Kafka)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from careledger.cli import main


@pytest.mark.parametrize("argv", [
    ["replay", "snapshot", "../../x", "--until", "2024-01-01", "--no-progress"],
    ["replay", "snapshot", "/tmp/x", "--until", "2024-01-01", "--no-progress"],
    ["replay", "rebuild", "--projection", "sql", "--name", "../x", "--no-progress"],
])
def test_a_name_that_leaves_the_home_is_refused_before_anything_is_written(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "a" / "b" / "home"
    home.mkdir(parents=True)
    monkeypatch.setenv("CARELEDGER_HOME", str(home))
    monkeypatch.setenv("CARELEDGER_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing may get as far as Kafka
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "invalid name" in capsys.readouterr().err
    assert time.monotonic() - started < 5
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/b", "a/b/home"]
