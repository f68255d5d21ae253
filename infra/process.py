"""Background server processes: spawn detached with a pid file and a log file, stop them cleanly.

Every server careledger starts (Kafka, ClickHouse, PostgreSQL, processors, API) goes through here,
so ``make down`` can find and stop them all from pid files under ``$CARELEDGER_HOME/run``.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class PortInUse(RuntimeError):
    """A configured port is taken by another process: a clear error instead of a hang."""


class StartTimeout(RuntimeError):
    """A server did not become ready in time; the message points at its log."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def require_free_port(port: int, what: str, env_var: str | None = None, grace_s: float = 5.0) -> None:
    """Fail clearly if ``port`` is taken; a process stopped a moment ago gets ``grace_s`` to let go."""
    deadline = time.monotonic() + grace_s
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not port_is_free(port):
        hint = f" (set {env_var} to another port)" if env_var else ""
        raise PortInUse(f"{what}: port {port} on 127.0.0.1 is already in use{hint}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_pid(pid_path: Path) -> int | None:
    try:
        pid = int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def spawn(
    cmd: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start ``cmd`` detached (own session), stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            user=user,
        )
    pid_path.write_text(str(proc.pid))
    return proc.pid


def stop(pid_path: Path, *, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the process group recorded in ``pid_path``; SIGKILL after ``timeout``."""
    pid = read_pid(pid_path)
    if pid is None:
        pid_path.unlink(missing_ok=True)
        return False
    if not _signal_group_and_wait(pid, sig, timeout):
        _signal_group_and_wait(pid, signal.SIGKILL, 5.0)
    pid_path.unlink(missing_ok=True)
    return True


def kill_hard(pid_path: Path) -> None:
    """SIGKILL the whole process group (fault tests): no clean shutdown on purpose."""
    pid = read_pid(pid_path)
    if pid is not None:
        _signal_group_and_wait(pid, signal.SIGKILL, 5.0)
    pid_path.unlink(missing_ok=True)


def _signal_group_and_wait(pid: int, sig: int, timeout: float) -> bool:
    """Send ``sig`` to the process group led by ``pid``; wait up to ``timeout`` s; True if it died."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        _reap(pid)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log_path: Path | None = None,
               alive: Callable[[], bool] | None = None) -> float:
    """Poll ``check`` until true; return seconds waited.  Fail fast if ``alive`` turns false."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if alive is not None and not alive():
            raise StartTimeout(f"{what} exited during start-up; see {log_path}:\n{tail(log_path)}")
        if time.monotonic() - start > timeout:
            raise StartTimeout(f"{what} not ready after {timeout:.0f}s; see {log_path}:\n{tail(log_path)}")
        time.sleep(0.2)


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
