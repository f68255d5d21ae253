"""A private PostgreSQL server (Debian's ``postgresql``) on loopback, data under ``$CARELEDGER_HOME``.

PostgreSQL refuses to run as root, so when careledger runs as root the cluster is owned by and run
as the ``postgres`` system user that Debian's package creates.  Authentication is ``trust`` on
127.0.0.1 only: this server is for a local stack and tests; production points
``CARELEDGER_SQL_URL`` at a managed server instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from careledger.settings import Settings
from infra import process
from infra.packages import ensure_debian_packages

START_TIMEOUT_S = 60.0
SERVICE_USER = "postgres"


def bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    if not candidates:
        ensure_debian_packages(["postgresql"])
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    return Path(candidates[0]).parent


@dataclass
class PostgresServer:
    settings: Settings

    @property
    def data_dir(self) -> Path:
        return self.settings.home / "postgres" / "data"

    @property
    def pid_path(self) -> Path:
        return self.settings.run_dir / "postgres.pid"

    @property
    def port_path(self) -> Path:
        return self.settings.run_dir / "postgres.port"

    @property
    def log_path(self) -> Path:
        return self.settings.logs_dir / "postgres.log"

    @property
    def port(self) -> int:
        return int(self.port_path.read_text())

    def url(self, database: str = "careledger") -> str:
        return f"postgresql+psycopg://{SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    def _user(self) -> str | None:
        return SERVICE_USER if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVICE_USER)
            shutil.chown(path, entry.pw_uid, entry.pw_gid)

    def is_running(self) -> bool:
        return process.read_pid(self.pid_path) is not None

    def _initdb(self, binaries: Path) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._chown(self.data_dir)
        if self._user() is not None:  # the server runs as another user: it must reach its data dir
            _make_traversable(self.data_dir.parent)
        done = subprocess.run(
            [str(binaries / "initdb"), "-D", str(self.data_dir), "-U", SERVICE_USER,
             "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True, **process.drop_privileges(self._user()),
        )
        if done.returncode != 0:
            raise process.StartTimeout(f"PostgreSQL: initdb of {self.data_dir} failed: {done.stderr.strip()[-500:]}")

    def start(self) -> float:
        if self.is_running():
            return 0.0
        binaries = bin_dir()
        self._initdb(binaries)
        port = self.port if self.port_path.exists() and process.port_is_free(self.port) else process.free_port()
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.port_path.write_text(str(port))
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.log_path.touch()
            self._chown(self.log_path)
        pid = process.spawn(
            [str(binaries / "postgres"), "-D", str(self.data_dir), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data_dir}",
             "-c", "fsync=on", "-c", "max_connections=200", "-c", "shared_buffers=256MB"],
            log_path=self.log_path, pid_path=self.pid_path, home=self.settings.home, user=self._user(),
        )
        waited = process.wait_until(self._accepts_queries, timeout=START_TIMEOUT_S, what="PostgreSQL",
                                    log_path=self.log_path, alive=lambda: process.pid_alive(pid))
        self.create_database("careledger")
        return waited

    def _accepts_queries(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=SERVICE_USER, dbname="postgres",
                                 connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing; return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SERVICE_USER, dbname="postgres",
                             autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        # SIGINT = PostgreSQL's "fast shutdown": roll back clients, checkpoint, exit
        import signal

        process.stop(self.pid_path, timeout=30, sig=signal.SIGINT)

    def kill(self) -> None:
        process.kill_hard(self.pid_path)


def _make_traversable(path: Path) -> None:
    """The service user must be able to reach its data dir through the state directory: "execute"
    for others on each directory on the way (pass through only; careledger/home_permissions.py
    keeps exactly this exception)."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)
