"""The one configuration object.

Everything a careledger process needs to know about its environment (state directory, ports,
servers, topics, secrets, batch sizes) is read here, once, from environment variables with
documented defaults.  Nothing else in the code base reads ``os.environ`` for configuration.

Business thresholds (alert ranges, warning deadlines) live in a separate, user-editable TOML file
(``rules_path``) because caseworkers tune them; see ``processors/domain/rules_config.py``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from careledger.secret_files import (  # noqa: F401 - InsecureSecretFile is re-exported
    TEMPORARY_PREFIX,
    InsecureSecretFile,
    check_private,
    create_secret_file,
    read_secret_file,
)
from schemas import enums

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "rules.toml"
DEFAULT_TARGETS_PATH = Path(__file__).resolve().parent / "targets.csv"


#: The district's towns (镇/街道): master data every event's ``town`` must be one of
#: (CARELEDGER_TOWNS).  By default the 12 of 奉化区 that the contract names (schemas/enums.py).
DEFAULT_TOWNS: tuple[str, ...] = enums.DEFAULT_TOWNS
#: ``occurred_at`` is refused before this day (CARELEDGER_OCCURRED_AT_EARLIEST): the founding of
#: the People's Republic, before any record a district federation keeps (history back to the
#: 2008 registrations and the certificates before them passes), yet it refuses the year-0001 /
#: year-0024 typos that break date arithmetic downstream.
DEFAULT_OCCURRED_AT_EARLIEST = date(1949, 10, 1)
#: ... and more than this many days ahead of now (CARELEDGER_OCCURRED_AT_AHEAD_DAYS): clock skew,
#: the 26 hours between time zones, a payroll entered on Friday for Monday - never a year-9999 typo.
DEFAULT_OCCURRED_AT_AHEAD_DAYS = 3.0


def parse_towns(text: str, name: str = "CARELEDGER_TOWNS") -> tuple[str, ...]:
    """Towns separated by commas (also ， and 、), blanks around them ignored; at least one,
    no repeats."""
    towns = tuple(t.strip() for t in re.split(r"[,，、]", text) if t.strip())
    if not towns:
        raise ValueError(f"{name} must list at least one town (comma-separated)")
    repeated = sorted({t for t in towns if towns.count(t) > 1})
    if repeated:
        raise ValueError(f"{name} lists a town twice: {', '.join(repeated)}")
    return towns


def _parse_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be a date YYYY-MM-DD, got {text!r}") from None


#: secrets every long-running process (worker, API) checks and loads at start
STARTUP_SECRETS: tuple[str, ...] = ("hmac-key", "master-key")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _env(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _clock_time(text: str, name: str) -> str:
    """``HH:MM`` (24 h) or a clear error naming the variable."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not (0 <= int(parts[0]) < 24 and 0 <= int(parts[1]) < 60):
        raise ValueError(f"{name} must be a time HH:MM, got {text!r}")
    return f"{int(parts[0]):02d}:{int(parts[1]):02d}"


def _instant(text: str, name: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset (empty: None), or a clear error naming the variable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValueError(f"{name} must be a time with its offset, e.g. 2024-07-01T08:00:00+08:00, got {text!r}")
    return value


def secret_env_var(name: str) -> str:
    """The environment variable that supplies secret ``name`` instead of ``secrets/<name>``."""
    return f"CARELEDGER_{name.upper().replace('-', '_')}"


def parse_workers(text: str, name: str = "CARELEDGER_INGEST_WORKERS") -> int | None:
    """``auto`` -> None, else a count >= 0 (a clear error naming ``name`` for anything else)."""
    if text.strip().lower() == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"{name} must be 'auto' or a number >= 0, got {text!r}")
    return count


LOCAL_SERVER_KINDS = frozenset({"clickhouse", "postgres"})


def parse_local_servers(text: str) -> frozenset[str]:
    """``clickhouse,postgres`` -> the set; a clear error naming CARELEDGER_LOCAL_SERVERS otherwise."""
    wanted = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = wanted - LOCAL_SERVER_KINDS
    if unknown:
        raise ValueError(f"CARELEDGER_LOCAL_SERVERS: unknown server(s) {', '.join(sorted(unknown))} "
                         "(allowed: clickhouse, postgres)")
    return wanted


@dataclass(frozen=True)
class Topics:
    """Topic names.  ``namespace`` (``CARELEDGER_TOPIC_NAMESPACE``) prefixes all of them so tests
    and side-by-side environments can share one broker; empty in production (contract names)."""

    events: str = "careledger.events"
    dlq: str = "careledger.events.dlq"
    alerts: str = "careledger.alerts"
    warnings: str = "careledger.warnings"  # need warnings as they become due or are cleared

    @classmethod
    def with_namespace(cls, namespace: str) -> Topics:
        if not namespace:
            return cls()
        return cls(
            events=f"{namespace}.careledger.events",
            dlq=f"{namespace}.careledger.events.dlq",
            alerts=f"{namespace}.careledger.alerts",
            warnings=f"{namespace}.careledger.warnings",
        )


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka_port: int
    kafka_controller_port: int
    api_port: int
    kafka_bootstrap: str
    event_partitions: int
    replication_factor: int
    topics: Topics
    sql_url: str
    clickhouse_url: str | None
    rules_path: Path
    targets_path: Path
    processor_group: str
    batch_size: int
    batch_within_s: float
    kafka_security: dict[str, str] = field(default_factory=dict)
    # aggregate answers with fewer distinct persons than this are suppressed for anonymous and
    # viewer callers of the read API (CARELEDGER_SMALL_CELL; 0 or 1 turns suppression off)
    small_cell_threshold: int = 5
    # Small-cell suppression for callers WITHOUT a token (CARELEDGER_ANONYMOUS_AGGREGATES):
    # "suppressed" (default) gives them what a viewer token gets; an operator may opt in to "exact"
    # (a stack on the federation's own network, the wall dashboard).  Viewers are always suppressed.
    anonymous_aggregates: str = "suppressed"
    # Key store of the per-person data keys and erasure tombstones (docs/privacy.md), a SQLAlchemy
    # URL (CARELEDGER_KEYSTORE_URL); empty: sqlite:///<home>/keys.sqlite3, see ``keystore_db_url``.
    keystore_url: str = ""
    # --- operations (issue 8) -------------------------------------------------------------------
    # Prometheus /metrics + /healthz + /readyz of a processor worker (CARELEDGER_METRICS_PORT;
    # 0 = no endpoint, the default; several workers on one host need one port each) and the
    # address it binds (CARELEDGER_METRICS_ADDR, loopback unless a scraper elsewhere needs it).
    metrics_port: int = 0
    metrics_addr: str = "127.0.0.1"
    # OTLP/HTTP endpoint the processes export their trace spans to (CARELEDGER_OTLP_ENDPOINT, e.g.
    # http://collector:4318/v1/traces; empty = no export, the default: trace ids still travel in
    # Kafka and HTTP headers).  Needs the optional package of ``careledger[otlp]`` (careledger/tracing.py).
    otlp_endpoint: str = ""
    # how long the consumer group waits for a silent worker (SIGKILL, power loss) before giving
    # its partitions to the others (CARELEDGER_SESSION_TIMEOUT_S; a clean stop leaves at once)
    session_timeout_s: float = 30.0
    # processes that check, seal and publish a share of a large JSON Lines file for
    # ``careledger ingest`` (CARELEDGER_INGEST_WORKERS; None = "auto": one per core, for files over
    # 16 MB; 0 = everything in the ingest process itself)
    ingest_workers: int | None = None
    # a replay that alone builds a store it found empty (a shard, a new shadow or snapshot) keeps
    # the read model's state in memory for up to this many events per worker process, then reads
    # it from the store again (CARELEDGER_REPLAY_RESIDENT_EVENTS; ~0.5 KB per event; 0 = never)
    replay_resident_events: int = 1_000_000
    # How long Kafka keeps alert messages and dead letters, in days (CARELEDGER_ALERTS_RETENTION_DAYS,
    # CARELEDGER_DLQ_RETENTION_DAYS; -1 = forever).  Both carry sensitive text in clear (hazards;
    # rejected input, ID numbers masked) and are delivery channels, not records: the alerts stay
    # in the read models, the rejected lines in the reject reports.  The events topic is the
    # source of truth and keeps everything.  Applied to existing topics by ``ensure_topics``.
    alerts_retention_days: float = 30.0
    dlq_retention_days: float = 90.0
    # the event loop of the projection workers (CARELEDGER_EVENT_LOOP: "uvloop" or "asyncio";
    # bench/pipeline.py measures both, docs/performance.md)
    event_loop: str = "uvloop"
    # a projection worker applies its batches in a process of its own, beside the faust process
    # (CARELEDGER_APPLY_PROCESS=0: in a thread of the faust process; processors/applier.py)
    apply_process: bool = True
    # need warnings due today are published once a day at this Asia/Shanghai time
    # (CARELEDGER_WARNING_SWEEP_AT, HH:MM) and by the events that make them due; a critical alert
    # unacknowledged this many hours after it was raised is published again, escalated
    # (CARELEDGER_ESCALATE_AFTER_H)
    warning_sweep_at: str = "07:30"
    escalate_after_h: float = 24.0
    # drills and tests of the sweep and escalation only: the processes pretend the time was this
    # when they started, and time flows on from there (CARELEDGER_NOW; careledger/clock.py)
    pretend_now: datetime | None = None
    # --- input master data and plausibility (issue 15) ----------------------------------------
    # the district's towns (CARELEDGER_TOWNS); the window of occurred_at accepted at ingest
    # (CARELEDGER_OCCURRED_AT_EARLIEST, CARELEDGER_OCCURRED_AT_AHEAD_DAYS); see DEFAULT_TOWNS
    towns: tuple[str, ...] = DEFAULT_TOWNS
    occurred_at_earliest: date = DEFAULT_OCCURRED_AT_EARLIEST
    occurred_at_ahead_days: float = DEFAULT_OCCURRED_AT_AHEAD_DAYS
    # Private servers ``careledger up`` starts for this home (CARELEDGER_LOCAL_SERVERS, a comma list
    # of ``clickhouse`` and ``postgres``); every command then uses their URLs (careledger/cli.py).
    local_servers: frozenset[str] = frozenset()

    # --- derived locations (all runtime state lives under ``home``) ---------------------------
    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin-token"

    @property
    def keystore_db_url(self) -> str:
        return self.keystore_url or f"sqlite:///{self.home / 'keys.sqlite3'}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("CARELEDGER_HOME", str(REPO_ROOT / ".careledger"))).resolve()
        kafka_port = int(_env("CARELEDGER_KAFKA_PORT", "9092"))
        security = {
            key[len("CARELEDGER_KAFKA_"):].lower(): value
            for key, value in os.environ.items()
            if key.startswith("CARELEDGER_KAFKA_")
            and key[len("CARELEDGER_KAFKA_"):] in {
                "SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_PLAIN_USERNAME",
                "SASL_PLAIN_PASSWORD", "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE",
                "SSL_PASSWORD",
            }
        }
        return cls(
            home=home,
            kafka_port=kafka_port,
            kafka_controller_port=int(_env("CARELEDGER_KAFKA_CONTROLLER_PORT", str(kafka_port + 1))),
            api_port=int(_env("CARELEDGER_API_PORT", "8000")),
            kafka_bootstrap=_env("CARELEDGER_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}"),
            event_partitions=int(_env("CARELEDGER_EVENT_PARTITIONS", "12")),
            replication_factor=int(_env("CARELEDGER_REPLICATION_FACTOR", "1")),
            topics=Topics.with_namespace(_env("CARELEDGER_TOPIC_NAMESPACE", "")),
            sql_url=_env("CARELEDGER_SQL_URL", f"sqlite:///{home / 'projections.sqlite3'}"),
            clickhouse_url=os.environ.get("CARELEDGER_CLICKHOUSE_URL") or None,
            rules_path=Path(_env("CARELEDGER_RULES", str(DEFAULT_RULES_PATH))),
            targets_path=Path(_env("CARELEDGER_TARGETS", str(DEFAULT_TARGETS_PATH))),
            processor_group=_env("CARELEDGER_PROCESSOR_GROUP", "careledger-processor"),
            batch_size=int(_env("CARELEDGER_BATCH_SIZE", "5000")),
            batch_within_s=float(_env("CARELEDGER_BATCH_WITHIN_S", "0.1")),
            kafka_security=security,
            small_cell_threshold=int(_env("CARELEDGER_SMALL_CELL", "5")),
            anonymous_aggregates=_env("CARELEDGER_ANONYMOUS_AGGREGATES", "suppressed"),
            keystore_url=_env("CARELEDGER_KEYSTORE_URL", ""),
            metrics_port=int(_env("CARELEDGER_METRICS_PORT", "0")),
            metrics_addr=_env("CARELEDGER_METRICS_ADDR", "127.0.0.1"),
            otlp_endpoint=_env("CARELEDGER_OTLP_ENDPOINT", ""),
            session_timeout_s=float(_env("CARELEDGER_SESSION_TIMEOUT_S", "30")),
            ingest_workers=parse_workers(_env("CARELEDGER_INGEST_WORKERS", "auto")),
            replay_resident_events=int(_env("CARELEDGER_REPLAY_RESIDENT_EVENTS", "1000000")),
            alerts_retention_days=float(_env("CARELEDGER_ALERTS_RETENTION_DAYS", "30")),
            dlq_retention_days=float(_env("CARELEDGER_DLQ_RETENTION_DAYS", "90")),
            event_loop=_choice("CARELEDGER_EVENT_LOOP", "uvloop", ("uvloop", "asyncio")),
            apply_process=_choice("CARELEDGER_APPLY_PROCESS", "1", ("0", "1")) == "1",
            warning_sweep_at=_clock_time(_env("CARELEDGER_WARNING_SWEEP_AT", "07:30"), "CARELEDGER_WARNING_SWEEP_AT"),
            escalate_after_h=float(_env("CARELEDGER_ESCALATE_AFTER_H", "24")),
            pretend_now=_instant(_env("CARELEDGER_NOW", ""), "CARELEDGER_NOW"),
            towns=parse_towns(_env("CARELEDGER_TOWNS", ",".join(DEFAULT_TOWNS))),
            occurred_at_earliest=_parse_date(_env("CARELEDGER_OCCURRED_AT_EARLIEST",
                                                  DEFAULT_OCCURRED_AT_EARLIEST.isoformat()),
                                             "CARELEDGER_OCCURRED_AT_EARLIEST"),
            occurred_at_ahead_days=float(_env("CARELEDGER_OCCURRED_AT_AHEAD_DAYS",
                                              str(DEFAULT_OCCURRED_AT_AHEAD_DAYS))),
            local_servers=parse_local_servers(_env("CARELEDGER_LOCAL_SERVERS", "")),
        )

    # --- secrets ----------------------------------------------------------------------------
    def secret(self, name: str, *, create: bool = True) -> bytes:
        """Return a secret from ``CARELEDGER_<NAME>`` or from ``home/secrets/<name>`` (mode 0600).

        A local stack generates missing secrets on first use, atomically (processes starting
        together all get the same one: careledger/secret_files.py).  A file readable by group or
        others, or an empty one, is refused: secrets never come from the repository, a
        world-readable file or a truncated one.
        """
        env_value = os.environ.get(secret_env_var(name))
        if env_value:
            return env_value.encode()
        path = self.secrets_dir / name
        if path.exists():
            return read_secret_file(path)
        if not create:
            raise FileNotFoundError(f"secret {name!r} not configured (set {secret_env_var(name)})")
        return create_secret_file(path, secrets.token_hex(32).encode())

    def check_secrets(self, required: tuple[str, ...] = STARTUP_SECRETS) -> None:
        """Startup check of a long-running process: every file under ``secrets_dir`` (and the
        admin token) must be 0600 (raises :class:`InsecureSecretFile` naming the file), and the
        ``required`` secrets load."""
        files = sorted(self.secrets_dir.iterdir()) if self.secrets_dir.is_dir() else []
        files += [self.admin_token_path] if self.admin_token_path.exists() else []
        for path in files:
            if path.name.startswith(TEMPORARY_PREFIX):
                continue  # another process creating a secret right now
            try:
                if path.is_file():
                    check_private(path)
            except FileNotFoundError:
                continue
        for name in required:
            self.secret(name)

    def to_env(self) -> dict[str, str]:
        """Environment variables that make a child process see these same settings."""
        namespace = self.topics.events[: -len(".careledger.events")] if self.topics.events != Topics.events else ""
        env = {
            "CARELEDGER_HOME": str(self.home),
            "CARELEDGER_KAFKA_PORT": str(self.kafka_port),
            "CARELEDGER_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "CARELEDGER_API_PORT": str(self.api_port),
            "CARELEDGER_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CARELEDGER_EVENT_PARTITIONS": str(self.event_partitions),
            "CARELEDGER_REPLICATION_FACTOR": str(self.replication_factor),
            "CARELEDGER_TOPIC_NAMESPACE": namespace,
            "CARELEDGER_SQL_URL": self.sql_url,
            "CARELEDGER_RULES": str(self.rules_path),
            "CARELEDGER_TARGETS": str(self.targets_path),
            "CARELEDGER_PROCESSOR_GROUP": self.processor_group,
            "CARELEDGER_BATCH_SIZE": str(self.batch_size),
            "CARELEDGER_BATCH_WITHIN_S": str(self.batch_within_s),
            "CARELEDGER_SMALL_CELL": str(self.small_cell_threshold),
            "CARELEDGER_ANONYMOUS_AGGREGATES": self.anonymous_aggregates,
            "CARELEDGER_METRICS_PORT": str(self.metrics_port),
            "CARELEDGER_METRICS_ADDR": self.metrics_addr,
            "CARELEDGER_OTLP_ENDPOINT": self.otlp_endpoint,
            "CARELEDGER_SESSION_TIMEOUT_S": str(self.session_timeout_s),
            "CARELEDGER_INGEST_WORKERS": "auto" if self.ingest_workers is None else str(self.ingest_workers),
            "CARELEDGER_REPLAY_RESIDENT_EVENTS": str(self.replay_resident_events),
            "CARELEDGER_ALERTS_RETENTION_DAYS": str(self.alerts_retention_days),
            "CARELEDGER_DLQ_RETENTION_DAYS": str(self.dlq_retention_days),
            "CARELEDGER_EVENT_LOOP": self.event_loop,
            "CARELEDGER_APPLY_PROCESS": "1" if self.apply_process else "0",
            "CARELEDGER_WARNING_SWEEP_AT": self.warning_sweep_at,
            "CARELEDGER_ESCALATE_AFTER_H": str(self.escalate_after_h),
            "CARELEDGER_NOW": self.pretend_now.isoformat() if self.pretend_now else "",
            "CARELEDGER_TOWNS": ",".join(self.towns),
            "CARELEDGER_OCCURRED_AT_EARLIEST": self.occurred_at_earliest.isoformat(),
            "CARELEDGER_OCCURRED_AT_AHEAD_DAYS": str(self.occurred_at_ahead_days),
            "CARELEDGER_LOCAL_SERVERS": ",".join(sorted(self.local_servers)),
        }
        if self.clickhouse_url:
            env["CARELEDGER_CLICKHOUSE_URL"] = self.clickhouse_url
        if self.keystore_url:
            env["CARELEDGER_KEYSTORE_URL"] = self.keystore_url
        env.update({f"CARELEDGER_KAFKA_{k.upper()}": v for k, v in self.kafka_security.items()})
        return env

    def kafka_client_options(self) -> dict[str, str]:
        """Options shared by kafka-python clients (bootstrap + optional SASL/TLS)."""
        return {"bootstrap_servers": self.kafka_bootstrap, **self.kafka_security}

    @property
    def kafka_bootstrap_servers(self) -> list[str]:
        """``CARELEDGER_KAFKA_BOOTSTRAP`` split on commas: ``["host1:9093", "host2:9093"]``."""
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]


def get_settings() -> Settings:
    return Settings.from_env()
