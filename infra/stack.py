"""The whole local stack in the background: ``make up`` / ``make down`` (``careledger up|down``).

Starts, in order: the Kafka broker (and topics), optionally private ClickHouse and PostgreSQL
servers (``CARELEDGER_LOCAL_SERVERS=clickhouse,postgres``), one processor per projection, and the
HTTP API; returns when the API answers.  Every process has a pid file (pid + start time) and a
lock under ``$CARELEDGER_HOME/run`` and a log under ``$CARELEDGER_HOME/logs``; every worker and the
webhook deliverer serve Prometheus metrics on a loopback port of their own, listed (with the API's)
in ``run/prometheus-targets.json`` and printed at the end (``infra/metrics_targets.py``); running ``up`` again
only starts what is not running and refuses while a process of an earlier start survives without
its supervisor; ``down`` stops everything it finds (``infra/process.py`` says how).
"""

from __future__ import annotations

import dataclasses
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from careledger.settings import Settings
from infra import metrics_targets, process
from infra.clickhouse_server import ClickHouseServer
from infra.kafka_broker import KafkaBroker, ensure_topics
from infra.postgres_server import PostgresServer

API_START_TIMEOUT_S = 90.0
STACK_LOCK = "stack.lock"  # held by ``up`` and ``down`` while they work


@dataclass
class Service:
    name: str
    settings: Settings

    @property
    def pid_path(self) -> Path:
        return self.settings.run_dir / f"{self.name}.pid"

    @property
    def lock_path(self) -> Path:
        return self.pid_path.with_suffix(".lock")

    @property
    def log_path(self) -> Path:
        return self.settings.logs_dir / f"{self.name}.log"

    def running(self) -> bool:
        """Its supervisor runs (the service is up and looked after)."""
        return process.read_pid(self.pid_path) is not None

    def start(self, cmd: list[str], env: dict[str, str]) -> bool:
        """Start it under a supervisor; False if it runs already.  Refuses (``AlreadyRunning``)
        while processes of an earlier start survive without their supervisor."""
        if self.running():
            return False
        left = process.running_members(self.pid_path)
        if left or process.lock_is_held(self.lock_path):
            described = ", ".join(f"{pid} ({process.command_line(pid)[:80]})" for pid in left) or "unknown pid"
            raise process.AlreadyRunning(
                f"{self.name}: its supervisor is gone but the earlier start still runs ({described}); "
                "stop it with `careledger down` (make down), then start again")
        supervised = [sys.executable, "-m", "infra.supervise", self.name, "--", *cmd]
        process.spawn(supervised, log_path=self.log_path, pid_path=self.pid_path, home=self.settings.home,
                      env=env, cwd=Path(__file__).resolve().parent.parent)
        return True

    def stop(self) -> bool:
        """Stop its process group (an orphaned child included); True if anything ran."""
        return process.stop(self.pid_path, timeout=45)


SERVICES = ("api", "webhooks", "processor-clickhouse", "processor-sql")  # stop order


def effective_settings(settings: Settings) -> Settings:
    """Settings with the URLs of the local ClickHouse/PostgreSQL servers this home runs, if any
    (``CARELEDGER_LOCAL_SERVERS``; a server never started yet has no URL to use)."""
    if "clickhouse" in settings.local_servers and ClickHouseServer(settings).port_path.exists():
        settings = dataclasses.replace(settings, clickhouse_url=ClickHouseServer(settings).url())
    if "postgres" in settings.local_servers and PostgresServer(settings).port_path.exists():
        settings = dataclasses.replace(settings, sql_url=PostgresServer(settings).url())
    return settings


def up(settings: Settings, out=print) -> Settings:  # noqa: ANN001 - out is print-like
    """Start what is not running (in order); return the settings the services run with."""
    settings.home.mkdir(parents=True, exist_ok=True)
    for sub in (settings.logs_dir, settings.run_dir):
        sub.mkdir(parents=True, exist_ok=True)
    with process.exclusive(settings.run_dir / STACK_LOCK):
        return _up(settings, out)


def _up(settings: Settings, out) -> Settings:  # noqa: ANN001
    broker = KafkaBroker(settings)
    if settings.kafka_bootstrap != f"127.0.0.1:{settings.kafka_port}":
        out(f"kafka      external cluster {settings.kafka_bootstrap} (no local broker)")
    elif broker.is_running():
        out(f"kafka      already running on 127.0.0.1:{settings.kafka_port}")
    else:
        seconds = broker.start()
        out(f"kafka      started on 127.0.0.1:{settings.kafka_port} (ready in {seconds:.1f}s)")
    created = ensure_topics(settings)
    if created:
        out(f"topics     created {', '.join(created)}")
    wanted = settings.local_servers
    if "clickhouse" in wanted:
        server = ClickHouseServer(settings)
        server.start()
        out(f"clickhouse {server.url()}")
    if "postgres" in wanted:
        server = PostgresServer(settings)
        server.start()
        out(f"postgres   {server.url()}")
    settings = effective_settings(settings)
    env = settings.to_env()

    from projections.api.auth import ensure_admin_token

    token_created = ensure_admin_token(settings)
    if token_created:
        out(f"admin      token written to {settings.admin_token_path} (mode 0600)")

    cli = [sys.executable, "-m", "careledger.cli"]
    processors = ["sql"] + (["clickhouse"] if settings.clickhouse_url else [])
    ports = metrics_targets.choose_ports(settings, [*(f"processor-{p}" for p in processors), "webhooks"],
                                         lambda name: Service(name, settings).running())
    for projection in processors:
        service = Service(f"processor-{projection}", settings)
        if service.start([*cli, "process", "--projection", projection], _with_metrics(env, ports.get(service.name, 0))):
            out(f"processor  {projection} started (log {service.log_path})")
        else:
            out(f"processor  {projection} already running")

    if Service("webhooks", settings).start([*cli, "deliver-webhooks"], _with_metrics(env, ports.get("webhooks", 0))):
        out(f"webhooks   deliverer started (log {Service('webhooks', settings).log_path})")
    targets = metrics_targets.write(settings, ports)
    api = Service("api", settings)
    if api.running():
        out(f"api        already running on {settings.api_url}")
    else:
        process.require_free_port(settings.api_port, "HTTP API", "CARELEDGER_API_PORT")
        api.start([*cli, "serve"], env)
        waited = process.wait_until(lambda: _answers(settings.api_url + "/healthz"), timeout=API_START_TIMEOUT_S,
                                    what="HTTP API", log_path=api.log_path, alive=api.running)
        out(f"api        {settings.api_url} (ready in {waited:.1f}s)")
    for name, url in metrics_targets.urls(settings, ports).items():
        out(f"metrics    {name:<21}{url}")
    out(f"prometheus {targets} (file_sd targets of all of them)")
    out(f"dashboard  {settings.api_url}/")
    return settings


def _with_metrics(env: dict[str, str], port: int) -> dict[str, str]:
    """The environment of a process that serves its metrics on ``port`` (docs/metrics.md)."""
    return {**env, "CARELEDGER_METRICS_PORT": str(port)}


def down(settings: Settings, out=print) -> None:  # noqa: ANN001
    """Stop every process this home started: the services (whole process groups, so a child whose
    supervisor died is stopped too), the servers, then anything else still carrying the home's
    stack marker (a process that escaped its group or whose pid file was lost)."""
    if not settings.home.is_dir():
        return
    with process.exclusive(settings.run_dir / STACK_LOCK):
        for name in SERVICES:
            if Service(name, settings).stop():
                out(f"stopped {name}")
        for server_type in (ClickHouseServer, PostgresServer, KafkaBroker):
            server = server_type(settings)
            if process.running_members(server.pid_path):
                server.stop()
                out(f"stopped {server_type.__name__}")
        strays = process.marked_processes(settings.home)
        if strays:
            described = ", ".join(f"{pid} ({process.command_line(pid)[:60]})" for pid in strays)
            process.terminate(strays)
            out(f"stopped {len(strays)} leftover process(es) of this home: {described}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
            return response.status == 200
    except OSError:
        return False
