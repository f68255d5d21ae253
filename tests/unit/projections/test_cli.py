"""``careledger token create --towns`` accepts only the district's towns (issue 15.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from careledger.cli import main


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "home").mkdir(mode=0o700)
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CARELEDGER_SQL_URL", raising=False)
    monkeypatch.delenv("CARELEDGER_TOWNS", raising=False)


def test_token_create_refuses_unknown_towns(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["token", "create", "--name", "cw", "--role", "caseworker", "--towns", "锦屏街道,锦屏街"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown town 锦屏街" in err and "did you mean 锦屏街道?" in err and "松岙镇" in err


def test_token_create_takes_the_towns_as_configured(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--name", "cw", "--role", "caseworker", "--towns", "锦屏街道\u200b，岳林街道"]) == 0
    token = capsys.readouterr().out.strip()
    assert token
    assert main(["token", "list"]) == 0
    assert "锦屏街道,岳林街道" in capsys.readouterr().out


def test_token_towns_follow_configuration(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CARELEDGER_TOWNS", "城关镇,东城街道")
    assert main(["token", "create", "--name", "cw", "--role", "caseworker", "--towns", "锦屏街道"]) == 2
    assert "城关镇, 东城街道" in capsys.readouterr().err
    assert main(["token", "create", "--name", "cw2", "--role", "caseworker", "--towns", "城关镇"]) == 0
