"""A single-node KRaft Apache Kafka broker for local stacks and tests.

The broker's jars come from Maven Central (``infra/kafka/pom.xml`` pins the release) and are cached
in ``infra/.cache``; its data lives under ``$CARELEDGER_HOME/kafka``.  No scripts from a Kafka
tarball are needed: the broker is ``java -cp 'libs/*' kafka.Kafka server.properties``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from careledger.settings import Settings
from infra import process

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


@dataclass
class KafkaBroker:
    settings: Settings

    @property
    def data_dir(self) -> Path:
        return self.settings.kafka_dir / "data"

    @property
    def config_path(self) -> Path:
        return self.settings.kafka_dir / "server.properties"

    @property
    def pid_path(self) -> Path:
        return self.settings.run_dir / "kafka.pid"

    @property
    def log_path(self) -> Path:
        return self.settings.logs_dir / "kafka.log"

    def is_running(self) -> bool:
        return process.read_pid(self.pid_path) is not None

    def _write_config(self) -> None:
        s = self.settings
        self.settings.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={self.data_dir}",
                f"num.partitions={s.event_partitions}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=12",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # single node: a restarted broker must not wait out its own old registration
                "broker.heartbeat.interval.ms=500",
                "broker.session.timeout.ms=3000",
                "auto.create.topics.enable=false",
                "log.retention.hours=-1",
                "message.max.bytes=2097152",
                "",
            ])
        )

    def _format_storage(self, libs: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = "-"
        while cluster_id.startswith("-"):  # StorageTool would read "-t -Abc..." as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(self.config_path)],
            check=True, capture_output=True,
        )

    def start(self) -> float:
        """Start the broker if it is not running; return seconds from launch to ready."""
        if self.is_running():
            return 0.0
        s = self.settings
        process.require_free_port(s.kafka_port, "Kafka broker", "CARELEDGER_KAFKA_PORT")
        process.require_free_port(s.kafka_controller_port, "Kafka controller", "CARELEDGER_KAFKA_CONTROLLER_PORT")
        libs = ensure_jars()
        self._write_config()
        self._format_storage(libs)
        pid = process.spawn(
            ["java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
             "-cp", f"{libs}/*", "kafka.Kafka", str(self.config_path)],
            log_path=self.log_path, pid_path=self.pid_path,
        )
        return process.wait_until(
            self.ready, timeout=START_TIMEOUT_S, what="Kafka broker", log_path=self.log_path,
            alive=lambda: process.pid_alive(pid),
        )

    def ready(self) -> bool:
        if not process.port_accepts(self.settings.kafka_port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                     request_timeout_ms=3000)
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


def ensure_topics(settings: Settings) -> list[str]:
    """Create the careledger topics if missing (idempotent); return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = {
        settings.topics.events: settings.event_partitions,
        settings.topics.dlq: 1,
        settings.topics.alerts: 3,
    }
    admin = KafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name=name, num_partitions=parts, replication_factor=settings.replication_factor,
                     topic_configs={"retention.ms": "-1"})
            for name, parts in wanted.items() if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in missing]
    finally:
        admin.close()
