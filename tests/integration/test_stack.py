"""`make up` / `make down` (CONTRACT.md §3): idempotent, independent per CARELEDGER_HOME, clean exit.

Runs the real command (`careledger up`, what `make up` calls after installing) in subprocesses with
their own homes and ports, so it tests exactly what a user gets.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from infra.process import free_port, pid_alive
from tests.support.reliability import record

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
    return [int(p.read_text().split()[0]) for p in (home / "run").glob("*.pid")]


def home_processes(home: Path) -> dict[int, str]:
    """Every process of ``home`` as ``ps`` shows it (command + environment): its CARELEDGER_HOME
    (inherited from ``careledger up``) or its command line names the home."""
    listing = subprocess.run(["ps", "axeww", "-o", "pid=,command="], capture_output=True, text=True,
                             check=True).stdout
    found = {}
    for line in listing.splitlines():
        pid, _, rest = line.strip().partition(" ")
        if f"CARELEDGER_HOME={home} " in rest + " " or f"{home}/" in rest.split(" SHELL=")[0]:
            found[int(pid)] = rest.split(" SHELL=")[0][:120]
    found.pop(os.getpid(), None)
    return {pid: cmd for pid, cmd in found.items() if not cmd.startswith("ps ")}


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


def test_a_sigkilled_supervisor_blocks_a_second_start_and_down_stops_its_child(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kafka_port, api_port = free_port(), free_port()
    try:
        assert careledger(home, kafka_port, api_port, "up").returncode == 0
        supervisor = int((home / "run" / "processor-sql.pid").read_text().split()[0])
        workers_before = [p for p, cmd in home_processes(home).items() if "process --projection sql" in cmd
                          and "infra.supervise" not in cmd]
        assert len(workers_before) == 1, home_processes(home)
        os.kill(supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid_alive(workers_before[0]), "the worker died with its supervisor (nothing to find)"

        again = careledger(home, kafka_port, api_port, "up")  # must not start a second worker
        workers_after = [p for p, cmd in home_processes(home).items() if "process --projection sql" in cmd]
        assert again.returncode == 1, again.stdout + again.stderr
        assert "processor-sql" in again.stderr and "careledger down" in again.stderr
        assert workers_after == workers_before, home_processes(home)
        running_before_down = home_processes(home)
    finally:
        stopped = careledger(home, kafka_port, api_port, "down")
    deadline = time.monotonic() + 10
    while home_processes(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = home_processes(home)
    record("fault", "SIGKILL of a processor's supervisor, then `make up` and `make down`",
           claim="a second `up` refused (exit {second_up_exit}) and started {second_workers} extra worker(s); "
                 "`down` left {survivors} of {processes_before_down} processes of the home running",
           second_up_exit=again.returncode, second_workers=len(workers_after) - len(workers_before),
           processes_before_down=len(running_before_down), survivors=len(survivors))
    assert stopped.returncode == 0, stopped.stderr
    assert not survivors, f"processes of the home left after `down`: {survivors}"
    assert careledger(home, kafka_port, api_port, "down").returncode == 0  # harmless when nothing runs
