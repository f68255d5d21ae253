"""A private ClickHouse server (Debian's ``clickhouse-server``, 18.16 on bookworm) on loopback.

Installed from Debian's packages when missing; config, data and logs live under
``$CARELEDGER_HOME/clickhouse``; the chosen port is remembered in ``run/clickhouse.port`` so the
same home keeps the same server.  ClickHouse sets its own umask (027 unless configured), so the
config says 077: its data, parts and logs are private like the rest of the home.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from careledger.settings import Settings
from infra import process
from infra.packages import ensure_debian_packages

SERVER_BINARY = Path("/usr/sbin/clickhouse-server")
START_TIMEOUT_S = 60.0


def server_binary() -> list[str]:
    """Debian's ``/usr/sbin/clickhouse-server``, a ``clickhouse`` multi-binary, or install it."""
    if SERVER_BINARY.exists():
        return [str(SERVER_BINARY)]
    found = shutil.which("clickhouse")
    if found:
        return [found, "server"]
    ensure_debian_packages(["clickhouse-server", "clickhouse-client"])
    return [str(SERVER_BINARY)]


@dataclass
class ClickHouseServer:
    settings: Settings

    @property
    def root(self) -> Path:
        return self.settings.home / "clickhouse"

    @property
    def pid_path(self) -> Path:
        return self.settings.run_dir / "clickhouse.pid"

    @property
    def port_path(self) -> Path:
        return self.settings.run_dir / "clickhouse.port"

    @property
    def log_path(self) -> Path:
        return self.settings.logs_dir / "clickhouse.log"

    @property
    def port(self) -> int:
        return int(self.port_path.read_text())

    def url(self, database: str = "careledger") -> str:
        return f"clickhouse://127.0.0.1:{self.port}/{database}"

    def is_running(self) -> bool:
        return process.read_pid(self.pid_path) is not None

    def _write_config(self, tcp_port: int, http_port: int) -> Path:
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        users = self.root / "users.xml"
        users.write_text(USERS_XML)
        config = self.root / "config.xml"
        config.write_text(CONFIG_XML.format(
            tcp_port=tcp_port, http_port=http_port, root=self.root, users=users,
            log=self.settings.logs_dir / "clickhouse-server.log",
            errlog=self.settings.logs_dir / "clickhouse-server.err.log",
        ))
        return config

    def start(self) -> float:
        if self.is_running():
            return 0.0
        binary = server_binary()
        if self.port_path.exists() and process.port_is_free(self.port):
            tcp_port = self.port
        else:
            tcp_port = process.free_port()
        http_port = process.free_port()
        config = self._write_config(tcp_port, http_port)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.port_path.write_text(str(tcp_port))
        pid = process.spawn([*binary, f"--config-file={config}"], log_path=self.log_path,
                            pid_path=self.pid_path, home=self.settings.home, cwd=self.root)
        return process.wait_until(self.ready, timeout=START_TIMEOUT_S, what="ClickHouse",
                                  log_path=self.log_path, alive=lambda: process.pid_alive(pid))

    def ready(self) -> bool:
        if not process.port_accepts(self.port):
            return False
        from clickhouse_driver import Client

        try:
            Client(host="127.0.0.1", port=self.port, connect_timeout=2).execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False

    def stop(self) -> None:
        process.stop(self.pid_path, timeout=30)

    def kill(self) -> None:
        process.kill_hard(self.pid_path)


USERS_XML = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""

CONFIG_XML = """<?xml version="1.0"?>
<yandex>
  <umask>077</umask>
  <logger><level>warning</level><log>{log}</log><errorlog>{errlog}</errorlog><size>100M</size><count>3</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{users}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>Asia/Shanghai</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
"""
