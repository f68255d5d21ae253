"""Pid files with start times, process groups, per-service locks and the stack marker
(infra/process.py): what ``make down`` relies on to find every process a home started."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import process

REPO = Path(__file__).resolve().parents[3]


def _wait(check, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Path]:
    run_dir = tmp_path / "run"
    yield run_dir
    for pid in process.marked_processes(tmp_path):  # never leave a sleeper behind
        os.kill(pid, signal.SIGKILL)


def test_pid_file_holds_pid_and_start_time_and_a_reused_pid_is_not_ours(tmp_path: Path, run: Path) -> None:
    pid_path = run / "sleeper.pid"
    pid = process.spawn(["sleep", "60"], log_path=tmp_path / "sleeper.log", pid_path=pid_path, home=tmp_path)
    recorded = pid_path.read_text().split()
    assert int(recorded[0]) == pid and int(recorded[1]) == process.proc_start_time(pid)
    assert process.read_pid(pid_path) == pid and process.running_members(pid_path) == [pid]
    # the same pid with another start time: the number was reused by some other process
    pid_path.write_text(f"{pid} {int(recorded[1]) + 1}\n")
    assert process.read_pid(pid_path) is None and process.running_members(pid_path) == []
    assert not process.stop(pid_path, timeout=1) and process.pid_alive(pid)  # never signalled
    pid_path.write_text(" ".join(recorded))
    assert process.stop(pid_path, timeout=5) and not process.pid_alive(pid)
    assert not pid_path.exists()


def test_survivors_of_a_dead_leader_are_found_and_stopped(tmp_path: Path, run: Path) -> None:
    pid_path = run / "family.pid"
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    leader = process.spawn([sys.executable, "-c", code], log_path=tmp_path / "f.log", pid_path=pid_path,
                           home=tmp_path)
    _wait(lambda: len(process.running_members(pid_path)) == 2)
    child = [p for p in process.running_members(pid_path) if p != leader][0]
    os.kill(leader, signal.SIGKILL)
    _wait(lambda: not process.pid_alive(leader))
    assert process.read_pid(pid_path) is None  # the leader is gone...
    assert process.running_members(pid_path) == [child]  # ...its child is not, and is found
    assert process.stop(pid_path, timeout=5)
    assert not process.pid_alive(child)


def test_a_second_start_refuses_while_a_supervised_child_holds_the_lock(tmp_path: Path, run: Path) -> None:
    pid_path = run / "svc.pid"
    supervised = [sys.executable, "-m", "infra.supervise", "svc", "--", "sleep", "60"]
    supervisor = process.spawn(supervised, log_path=tmp_path / "svc.log", pid_path=pid_path, home=tmp_path,
                               cwd=REPO)
    _wait(lambda: len(process.running_members(pid_path)) == 2)
    with pytest.raises(process.AlreadyRunning):
        process.spawn(supervised, log_path=tmp_path / "svc.log", pid_path=pid_path, home=tmp_path, cwd=REPO)
    os.kill(supervisor, signal.SIGKILL)
    _wait(lambda: not process.pid_alive(supervisor))
    pid_path.unlink()  # even without its pid file, the child still holds the service's lock
    assert process.lock_is_held(pid_path.with_suffix(".lock"))
    with pytest.raises(process.AlreadyRunning):
        process.spawn(supervised, log_path=tmp_path / "svc.log", pid_path=pid_path, home=tmp_path, cwd=REPO)
    strays = process.marked_processes(tmp_path)  # the marker finds it without any pid file
    assert len(strays) == 1 and "sleep 60" in process.command_line(strays[0])
    process.terminate(strays, timeout=5)
    _wait(lambda: not process.lock_is_held(pid_path.with_suffix(".lock")))
    process.spawn(["sleep", "60"], log_path=tmp_path / "svc.log", pid_path=pid_path, home=tmp_path)
    assert process.stop(pid_path, timeout=5)


def test_marker_is_per_home(tmp_path: Path, run: Path) -> None:
    other = tmp_path / "other"
    pid = process.spawn(["sleep", "60"], log_path=tmp_path / "a.log", pid_path=run / "a.pid", home=tmp_path)
    _wait(lambda: process.marked_processes(tmp_path) == [pid])  # once it has exec'd with its own environment
    assert process.marked_processes(other) == []
    process.stop(run / "a.pid", timeout=5)


def test_cpu_seconds_reads_this_process_and_is_zero_for_a_gone_one() -> None:
    before = process.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn 0.2 s of CPU
        pass
    assert process.cpu_seconds(os.getpid()) >= before + 0.1
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    assert process.cpu_seconds(child) == 0.0
