"""`make up` / `make down` (CONTRACT.md §3): idempotent, independent per CARELEDGER_HOME, clean exit.

Runs the real command (`careledger up`, what `make up` calls after installing) in subprocesses with
their own homes and ports, so it tests exactly what a user gets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from infra.process import free_port, pid_alive

REPO = Path(__file__).resolve().parents[2]


def careledger(home: Path, kafka_port: int, api_port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELEDGER_")}
    env.update(CARELEDGER_HOME=str(home), CARELEDGER_KAFKA_PORT=str(kafka_port),
               CARELEDGER_KAFKA_CONTROLLER_PORT=str(free_port()), CARELEDGER_API_PORT=str(api_port))
    return subprocess.run([sys.executable, "-m", "careledger.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def status(api_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/status", timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def pids(home: Path) -> list[int]:
    return [int(p.read_text()) for p in (home / "run").glob("*.pid")]


def test_up_twice_two_homes_then_down_leaves_nothing_behind(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ports = {a: (free_port(), free_port()), b: (free_port(), free_port())}
    try:
        first = careledger(a, *ports[a], "up")
        assert first.returncode == 0, first.stderr
        again = careledger(a, *ports[a], "up")  # harmless the second time
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        other = careledger(b, *ports[b], "up")  # a second, independent stack
        assert other.returncode == 0, other.stderr

        assert status(ports[a][1])["caught_up"] is True
        assert status(ports[b][1])["caught_up"] is True
        assert (a / "admin-token").stat().st_mode & 0o777 == 0o600
        running = pids(a) + pids(b)
        assert running and all(pid_alive(pid) for pid in running)
    finally:
        for home in (a, b):
            careledger(home, *ports[home], "down")
    assert not [pid for pid in running if pid_alive(pid)], "processes left behind after make down"
    assert not pids(a) and not pids(b)


def test_a_port_in_use_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    kafka_port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", kafka_port))
        blocker.listen()
        result = careledger(tmp_path / "home", kafka_port, free_port(), "up")
    assert result.returncode == 1
    assert f"port {kafka_port}" in result.stderr and "already in use" in result.stderr
