"""KRaft Apache Kafka nodes for local stacks and tests: the stack's single broker
(:class:`KafkaBroker`) and the node both it and the three-node cluster (``infra/kafka_cluster.py``)
are made of (:class:`KafkaNode`), plus topic creation.

The jars come from Maven Central (``infra/kafka/pom.xml`` pins the release) and are cached in
``infra/.cache``; data lives under ``$CARELEDGER_HOME/kafka``.  No scripts from a Kafka tarball are
needed: a node is ``java -cp 'libs/*' kafka.Kafka server.properties``.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError, UnknownBrokerIdError

from careledger.retrying import call_retrying, is_transient
from careledger.settings import Settings
from infra import process

log = logging.getLogger("careledger.infra")

KAFKA_VERSION = "4.0.2"  # keep in step with infra/kafka/pom.xml
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
JAR_CACHE = Path(__file__).resolve().parent / ".cache" / f"kafka-{KAFKA_VERSION}"
START_TIMEOUT_S = 90.0


def ensure_jars(cache: Path = JAR_CACHE) -> Path:
    """Fetch the broker jars with Maven once; return the directory holding them."""
    marker = cache / ".complete"
    if marker.exists():
        return cache
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch Apache Kafka from Maven Central")
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={cache}", "-DincludeScope=runtime"],
        check=True,
    )
    marker.write_text(KAFKA_VERSION)
    return cache


def new_cluster_id() -> str:
    """A KRaft cluster id (22 url-safe base64 characters, never starting with '-')."""
    cluster_id = "-"
    while cluster_id.startswith("-"):  # StorageTool would read "-t -Abc..." as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


@dataclass
class KafkaNode:
    """One KRaft node (combined controller + broker) on loopback, its files under ``directory``."""

    settings: Settings
    node_id: int
    port: int
    controller_port: int
    voters: str  # controller.quorum.voters: "1@127.0.0.1:p1,2@127.0.0.1:p2,..."
    directory: Path
    name: str  # pid file, lock and log name
    replication: int = 1  # of the internal topics; also min.insync.replicas = replication - 1 (>= 1)
    heap_mb: int = 768

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def pid_path(self) -> Path:
        return self.settings.run_dir / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.settings.logs_dir / f"{self.name}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        return process.read_pid(self.pid_path) is not None

    def write_config(self) -> None:
        s = self.settings
        min_isr = max(1, self.replication - 1)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "\n".join([
                "process.roles=broker,controller",
                f"node.id={self.node_id}",
                f"controller.quorum.voters={self.voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={self.data_dir}",
                f"num.partitions={s.event_partitions}",
                f"default.replication.factor={self.replication}",
                f"min.insync.replicas={min_isr}",
                "unclean.leader.election.enable=false",  # a lagging replica never becomes leader
                f"offsets.topic.replication.factor={self.replication}",
                "offsets.topic.num.partitions=12",
                f"transaction.state.log.replication.factor={self.replication}",
                f"transaction.state.log.min.isr={min_isr}",
                "group.initial.rebalance.delay.ms=0",
                # a restarted node must not wait out its own old registration
                "broker.heartbeat.interval.ms=500",
                "broker.session.timeout.ms=3000",
                "auto.create.topics.enable=false",
                "log.retention.hours=-1",
                "message.max.bytes=2097152",
                "",
            ])
        )

    def format_storage(self, libs: Path, cluster_id: str) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        subprocess.run(
            ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(self.config_path)],
            check=True, capture_output=True,
        )

    def spawn(self, libs: Path) -> int:
        """Launch the JVM (config written, storage formatted first); its pid."""
        return process.spawn(
            ["java", f"-Xms{min(256, self.heap_mb)}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
             "-Djava.awt.headless=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
             "-cp", f"{libs}/*", "kafka.Kafka", str(self.config_path)],
            log_path=self.log_path, pid_path=self.pid_path, home=self.settings.home,
        )

    def ready(self) -> bool:
        """This node accepts connections and answers a metadata request."""
        if not process.port_accepts(self.port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        except (KafkaError, OSError, ValueError):  # not listening or not answering yet
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def stop(self) -> None:
        process.stop(self.pid_path, timeout=30)

    def kill(self) -> None:
        process.kill_hard(self.pid_path)


@dataclass
class KafkaBroker:
    """The local stack's single KRaft node (``CARELEDGER_KAFKA_PORT``), data in ``$CARELEDGER_HOME/kafka``."""

    settings: Settings

    @property
    def node(self) -> KafkaNode:
        s = self.settings
        return KafkaNode(s, 1, s.kafka_port, s.kafka_controller_port, f"1@127.0.0.1:{s.kafka_controller_port}",
                         s.kafka_dir, "kafka")

    @property
    def data_dir(self) -> Path:
        return self.node.data_dir

    @property
    def config_path(self) -> Path:
        return self.node.config_path

    @property
    def pid_path(self) -> Path:
        return self.node.pid_path

    @property
    def log_path(self) -> Path:
        return self.node.log_path

    def is_running(self) -> bool:
        return self.node.is_running()

    def start(self) -> float:
        """Start the broker if it is not running; return seconds from launch to ready."""
        if self.is_running():
            return 0.0
        s = self.settings
        process.require_free_port(s.kafka_port, "Kafka broker", "CARELEDGER_KAFKA_PORT")
        process.require_free_port(s.kafka_controller_port, "Kafka controller", "CARELEDGER_KAFKA_CONTROLLER_PORT")
        libs = ensure_jars()
        node = self.node
        node.write_config()
        node.format_storage(libs, new_cluster_id())
        pid = node.spawn(libs)
        return process.wait_until(node.ready, timeout=START_TIMEOUT_S, what="Kafka broker", log_path=node.log_path,
                                  alive=lambda: process.pid_alive(pid))

    def ready(self) -> bool:
        return self.node.ready()

    def stop(self) -> None:
        self.node.stop()

    def kill(self) -> None:
        self.node.kill()


def retention_ms(days: float) -> str:
    """Kafka's ``retention.ms`` for a number of days (negative: keep forever, ``-1``)."""
    return "-1" if days < 0 else str(int(days * 86_400_000))


def topic_plan(settings: Settings) -> dict[str, tuple[int, str]]:
    """Every careledger topic: name -> (partitions, retention.ms)."""
    return {
        settings.topics.events: (settings.event_partitions, "-1"),  # the source of truth: forever
        settings.topics.dlq: (1, retention_ms(settings.dlq_retention_days)),
        settings.topics.alerts: (3, retention_ms(settings.alerts_retention_days)),
        settings.topics.warnings: (3, retention_ms(settings.alerts_retention_days)),
    }


def is_transient_kafka(exc: BaseException) -> bool:
    """Kafka errors worth waiting out: those the client marks retriable, and a broker the client
    has not learnt about yet (a cluster that is still electing its controller)."""
    if isinstance(exc, UnknownBrokerIdError):
        return True
    return (isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))) or is_transient(exc)


def ensure_topics(settings: Settings, attempts: int = 8) -> list[str]:
    """Create the careledger topics if missing and give every topic its configured retention
    (idempotent); return the names created.  A changed retention setting reaches existing topics
    here, logged (``careledger topics create`` and ``careledger up`` call this).  A cluster that
    has just started (controller not yet known to the client) is waited for, ``attempts`` times."""
    return call_retrying(lambda: _ensure_topics_once(settings), "Kafka topic creation",
                         transient=is_transient_kafka, attempts=attempts, max_s=5.0)


def _ensure_topics_once(settings: Settings) -> list[str]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    plan = topic_plan(settings)
    admin = KafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name=name, num_partitions=parts, replication_factor=settings.replication_factor,
                     topic_configs={"retention.ms": retention})
            for name, (parts, retention) in plan.items() if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        _align_retention(admin, {name: retention for name, (_, retention) in plan.items() if name in existing})
        return [t.name for t in missing]
    finally:
        admin.close()


def _align_retention(admin: Any, wanted: dict[str, str]) -> None:
    """Set ``retention.ms`` where an existing topic differs.  A cluster that refuses (no
    DescribeConfigs/AlterConfigs permission for our principal) gets a warning, not a failed start."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    results: dict[str, str] = {}
    stale: dict[str, str] = {}
    try:
        current = topic_retentions(admin, list(wanted))
        stale = {name: retention for name, retention in wanted.items() if current.get(name) != retention}
        if stale:
            answer = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                         configs={"retention.ms": retention})
                                          for name, retention in stale.items()])
            results = {name: str(result) for by_name in answer.values() for name, result in by_name.items()}
    except KafkaError as exc:
        results = {name: f"{type(exc).__name__}: {exc}" for name in wanted}
    for name, result in results.items():
        if result == "OK":
            log.info("retention of %s set to %s ms", name, stale[name])
        else:
            log.warning("retention of %s not checked or set (%s): set retention.ms on the cluster by hand",
                        name, result)


def topic_retentions(admin: Any, topics: list[str]) -> dict[str, str | None]:
    """Each topic's ``retention.ms`` as the broker reports it (None if unknown), in one request."""
    from kafka.admin import ConfigResource, ConfigResourceType

    if not topics:
        return {}
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics],
                                       config_filter="all")
    found: dict[str, str | None] = dict.fromkeys(topics)
    for by_name in described.values():
        for topic in topics:
            entry = (by_name.get(topic) or {}).get("retention.ms")
            if entry is not None:
                found[topic] = str(entry.get("value") if isinstance(entry, dict) else entry)
    return found
