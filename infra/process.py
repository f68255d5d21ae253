"""Background server processes: spawn detached with a pid file, a lock and a log file; stop them.

Every server careledger starts (Kafka, ClickHouse, PostgreSQL, processors, API) goes through here,
so ``make down`` can find and stop them all: from the pid files under ``$CARELEDGER_HOME/run``
(pid + start time; the whole process group, so a child whose supervisor was SIGKILLed is found
too), and, as a last resort, by the ``CARELEDGER_STACK_HOME`` marker in their environment.  A lock
file per service, held by the service's processes for their lifetime, makes a second start refuse
while an old one runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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


#: environment variable marking every process a stack spawned (inherited by their children):
#: ``careledger down`` finds what escaped its process group or lost its pid file by it
STACK_MARKER = "CARELEDGER_STACK_HOME"
#: descriptor number of the service's lock file, for a supervisor to hand on to its child
LOCK_FD_ENV = "CARELEDGER_LOCK_FD"


class AlreadyRunning(RuntimeError):
    """A second start of a service whose earlier process (or a child of it) still runs."""


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds: the process (and group) leader and its start time.

    Why the start time: a pid is reused once its process is gone; a pid file that outlived its
    process must not make us signal whoever got the number next.  Why the group: a supervisor
    killed with SIGKILL leaves its child running in the group it led; the kernel never gives a
    pid that is still some group's id to a new process, so the group's survivors are ours."""

    pid: int
    start: int | None  # /proc/<pid>/stat start time (clock ticks after boot); None: older pid file

    def leader_alive(self) -> bool:
        return pid_alive(self.pid) and (self.start is None or proc_start_time(self.pid) == self.start)

    def members(self) -> list[int]:
        """Live processes of the group this record's leader started (leader first if alive)."""
        if pid_alive(self.pid) and not self.leader_alive():
            return []  # the pid was reused, so our group has no member left
        return sorted(group_members(self.pid), key=lambda p: p != self.pid)


def proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used so far, from ``/proc``; 0 once it is gone."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def proc_start_time(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = proc_stat(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def marked_processes(home: Path) -> list[int]:
    """Live processes spawned for the stack of ``home`` (their environment carries the marker)."""
    marker = f"{STACK_MARKER}={home}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue
        if marker in environ and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def read_record(pid_path: Path) -> PidRecord | None:
    try:
        parts = pid_path.read_text().split()
        return PidRecord(int(parts[0]), int(parts[1]) if len(parts) > 1 else None)
    except (FileNotFoundError, ValueError, IndexError):
        return None


def read_pid(pid_path: Path) -> int | None:
    """The pid recorded in ``pid_path`` if that very process (same start time) still runs."""
    record = read_record(pid_path)
    return record.pid if record is not None and record.leader_alive() else None


def running_members(pid_path: Path) -> list[int]:
    """Every live process of the group recorded in ``pid_path`` (the leader may be gone)."""
    record = read_record(pid_path)
    return record.members() if record is not None else []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); treat it as gone
    fields = proc_stat(pid)
    return fields is None or fields[0] not in ("Z", "X")


def _take_lock(lock_path: Path) -> int:
    """An exclusive ``flock`` on ``lock_path`` (fd returned), or :class:`AlreadyRunning`."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"{lock_path.stem}: an earlier start still runs (it holds {lock_path})") from None
    return fd


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` for the block (waits for another holder):
    ``careledger up`` and ``down`` of one home never run interleaved."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_is_held(lock_path: Path) -> bool:
    """True while some process holds the lock a :func:`spawn` took for ``lock_path``."""
    if not lock_path.exists():
        return False
    try:
        os.close(_take_lock(lock_path))
    except AlreadyRunning:
        return True
    return False


def drop_privileges(user: str | None) -> dict[str, object]:
    """``subprocess`` arguments that run a child as ``user`` entirely: its uid, its primary group and
    no supplementary groups (with only ``user=``, a child of root keeps group root and reaches
    root's group-accessible files - and is refused where only "others" may pass)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def spawn(
    cmd: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    home: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start ``cmd`` detached (own session and process group), stdout+stderr appended to
    ``log_path``; record it in ``pid_path`` (pid + start time).

    The new process inherits an exclusive lock on ``pid_path.with_suffix(".lock")`` (descriptor in
    ``$CARELEDGER_LOCK_FD``; a supervisor hands it on to its child), so a second start fails with
    :class:`AlreadyRunning` for as long as any holder lives - even if the pid file was lost or the
    supervisor was killed.  Every spawned process carries ``CARELEDGER_STACK_HOME=<home>``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = _take_lock(pid_path.with_suffix(".lock"))
    try:
        full_env = {**os.environ, **(env or {}), STACK_MARKER: str(home), LOCK_FD_ENV: str(lock_fd)}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                list(cmd),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                **drop_privileges(user),
                pass_fds=(lock_fd,),
            )
    finally:
        os.close(lock_fd)  # the child keeps the lock; this process never held it for itself
    start = proc_start_time(proc.pid)
    pid_path.write_text(f"{proc.pid} {start}\n" if start is not None else f"{proc.pid}\n")
    return proc.pid


def stop(pid_path: Path, *, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the process group recorded in ``pid_path`` (survivors of a dead leader included);
    SIGKILL after ``timeout``.  True if something was running."""
    record = read_record(pid_path)
    members = record.members() if record is not None else []
    if record is None or not members:
        pid_path.unlink(missing_ok=True)
        return False
    if not _signal_group_and_wait(record.pid, sig, timeout):
        _signal_group_and_wait(record.pid, signal.SIGKILL, 5.0)
    pid_path.unlink(missing_ok=True)
    return True


def kill_hard(pid_path: Path) -> None:
    """SIGKILL the whole process group (fault tests): no clean shutdown on purpose."""
    record = read_record(pid_path)
    if record is not None and record.members():
        _signal_group_and_wait(record.pid, signal.SIGKILL, 5.0)
    pid_path.unlink(missing_ok=True)


def terminate(pids: Sequence[int], timeout: float = 20.0) -> list[int]:
    """SIGTERM ``pids``, SIGKILL what is left after ``timeout``; return those that were signalled."""
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in signalled) and time.monotonic() < deadline:
        for pid in signalled:
            _reap(pid)
        time.sleep(0.1)
    for pid in signalled:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return signalled


def _signal_group_and_wait(pgid: int, sig: int, timeout: float) -> bool:
    """Send ``sig`` to process group ``pgid``; wait up to ``timeout`` s for every member to end."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        _reap(pgid)
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
