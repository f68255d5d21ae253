"""Secrets come from the environment or 0600 files only; long-running processes refuse to start
with a group/world-readable secret file (issue 7).  Needs no servers: the check runs first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from careledger.settings import InsecureSecretFile, Settings
from tests.support.pipeline import REPO_ROOT


def settings_at(home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CARELEDGER_HOME", str(home))
    for name in ("CARELEDGER_HMAC_KEY", "CARELEDGER_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    return Settings.from_env()


def test_generated_secrets_are_0600_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_at(tmp_path / "home", monkeypatch)
    settings.check_secrets()  # generates hmac-key and master-key
    for name in ("hmac-key", "master-key"):
        assert (settings.secrets_dir / name).stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("CARELEDGER_MASTER_KEY", "from-the-environment")
    assert settings.secret("master-key") == b"from-the-environment"


@pytest.mark.parametrize("name", ["hmac-key", "master-key", "webhook-key"])
def test_check_refuses_readable_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    settings = settings_at(tmp_path / "home", monkeypatch)
    settings.check_secrets()
    path = settings.secrets_dir / name
    path.write_bytes(b"s3cret")
    path.chmod(0o644)
    with pytest.raises(InsecureSecretFile, match=r"chmod 600"):
        settings.check_secrets()


@pytest.mark.parametrize("command", [["process", "--projection", "sql"], ["serve"]])
def test_long_running_processes_refuse_to_start(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    secret = home / "secrets" / "master-key"
    secret.write_bytes(b"0" * 64)
    secret.chmod(0o604)  # world-readable
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELEDGER_")}
    env["CARELEDGER_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "careledger.cli", *command], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert "refusing to start" in proc.stderr and str(secret) in proc.stderr and "0o604" in proc.stderr
    assert "0000000000" not in proc.stdout + proc.stderr  # the secret itself is never shown
