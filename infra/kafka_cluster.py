"""A three-node KRaft Kafka cluster on loopback, for fault tests and benchmarks.

Why: a single broker cannot show what replication buys.  Here every node is a combined controller
and broker (a three-voter quorum: one node may die and the controllers still have a majority),
topics have replication factor 3 and ``min.insync.replicas=2``, and unclean leader election is off.
A write acknowledged with ``acks=all`` (``producers/publisher.py``) is then on at least two nodes,
so killing any one node - the leader of the partitions being written included - loses nothing:
a follower that has every acknowledged record becomes leader, the idempotent producer resends
what was not acknowledged (the broker drops the duplicates), and consumers move to the new leader.

Ports are picked once and remembered in ``$CARELEDGER_HOME/run/kafka-cluster.json`` with the
cluster id, so a killed node comes back on the same ports with the same identity.  Node ``i``
keeps its files in ``$CARELEDGER_HOME/kafka/node-<i>`` and its log in ``logs/kafka-node-<i>.log``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from careledger.settings import Settings
from infra import process
from infra.kafka_broker import START_TIMEOUT_S, KafkaNode, ensure_jars, new_cluster_id

SIZE = 3
REPLICATION = 3  # every partition on every node; min.insync.replicas = 2
NODE_HEAP_MB = 384  # three JVMs share a small machine


@dataclass
class KafkaCluster:
    settings: Settings
    size: int = SIZE

    @property
    def layout_path(self) -> Path:
        return self.settings.run_dir / "kafka-cluster.json"

    def _layout(self) -> dict[str, Any]:
        """Ports and cluster id: chosen on the first start, the same ever after for this home."""
        if self.layout_path.exists():
            return json.loads(self.layout_path.read_text())
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        ports = [process.free_port() for _ in range(2 * self.size)]
        layout = {"cluster_id": new_cluster_id(),
                  "nodes": {str(i + 1): {"port": ports[2 * i], "controller_port": ports[2 * i + 1]}
                            for i in range(self.size)}}
        self.layout_path.write_text(json.dumps(layout))
        return layout

    @property
    def nodes(self) -> dict[int, KafkaNode]:
        layout = self._layout()
        voters = ",".join(f"{i}@127.0.0.1:{n['controller_port']}" for i, n in layout["nodes"].items())
        return {int(i): KafkaNode(self.settings, int(i), n["port"], n["controller_port"], voters,
                                  self.settings.kafka_dir / f"node-{i}", f"kafka-node-{i}",
                                  replication=REPLICATION, heap_mb=NODE_HEAP_MB)
                for i, n in layout["nodes"].items()}

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    def client_settings(self, **overrides: Any) -> Settings:
        """The settings clients of this cluster use (every node in the bootstrap list, RF 3)."""
        return dataclasses.replace(self.settings, kafka_bootstrap=self.bootstrap, replication_factor=REPLICATION,
                                   **overrides)

    def start(self) -> float:
        """Start every node that is not running (all launched before any is awaited: a node alone
        has no controller majority); return seconds until every node answers."""
        started = time.monotonic()
        libs = ensure_jars()
        layout = self._layout()
        pids = {}
        for node_id, node in self.nodes.items():
            if node.is_running():
                continue
            process.require_free_port(node.port, f"Kafka node {node_id}")
            process.require_free_port(node.controller_port, f"Kafka controller {node_id}")
            node.write_config()
            node.format_storage(libs, layout["cluster_id"])
            pids[node_id] = node.spawn(libs)
        for node_id in pids:
            self._wait_ready(node_id, pids[node_id])
        self.wait_for_brokers(set(self.nodes))
        return time.monotonic() - started

    def start_node(self, node_id: int) -> float:
        """Bring one (killed) node back; seconds until the others see it registered again."""
        node = self.nodes[node_id]
        started = time.monotonic()
        pid = node.spawn(ensure_jars())
        self._wait_ready(node_id, pid)
        self.wait_for_brokers({node_id})
        return time.monotonic() - started

    def _wait_ready(self, node_id: int, pid: int) -> None:
        node = self.nodes[node_id]
        process.wait_until(node.ready, timeout=START_TIMEOUT_S, what=f"Kafka node {node_id}",
                           log_path=node.log_path, alive=lambda: process.pid_alive(pid))

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (no clean shutdown: its leaderships move only when the controller notices)."""
        self.nodes[node_id].kill()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def running(self) -> list[int]:
        return [i for i, node in self.nodes.items() if node.is_running()]

    # ---- metadata ---------------------------------------------------------------------------
    def _admin(self) -> Any:
        from kafka import KafkaAdminClient

        alive = [self.nodes[i].bootstrap for i in self.running()] or [self.bootstrap]
        return KafkaAdminClient(bootstrap_servers=",".join(alive), request_timeout_ms=10_000)

    def wait_for_brokers(self, node_ids: Iterable[int], timeout: float = START_TIMEOUT_S) -> None:
        """Until the cluster's metadata lists every node in ``node_ids`` as a broker."""
        from kafka.errors import KafkaError

        wanted = set(node_ids)
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin = self._admin()
                try:
                    brokers = {b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")}
                finally:
                    admin.close()
                if wanted <= brokers:
                    return
            except (KafkaError, OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise process.StartTimeout(f"Kafka nodes {sorted(wanted)} not registered after {timeout:.0f}s")
            time.sleep(0.5)

    def partitions(self, topic: str) -> dict[int, dict[str, Any]]:
        """``{partition: {"leader": node, "replicas": [...], "isr": [...]}}`` of ``topic``."""
        admin = self._admin()
        try:
            described = admin.describe_topics([topic])
        finally:
            admin.close()
        return {p["partition_index"]: {"leader": p["leader_id"], "replicas": list(p["replica_nodes"]),
                                       "isr": list(p["isr_nodes"])}
                for t in described for p in t["partitions"]}

    def wait_in_sync(self, topic: str, timeout: float = START_TIMEOUT_S) -> float:
        """Until every partition of ``topic`` has all its replicas in sync again; seconds waited."""
        from kafka.errors import KafkaError

        started = time.monotonic()
        while True:
            try:
                parts = self.partitions(topic)
                if parts and all(len(p["isr"]) == len(p["replicas"]) for p in parts.values()):
                    return time.monotonic() - started
            except (KafkaError, OSError, ValueError, KeyError):
                pass
            if time.monotonic() - started > timeout:
                raise process.StartTimeout(f"{topic}: replicas not back in sync after {timeout:.0f}s")
            time.sleep(0.5)

    def busiest_leader(self, topic: str, sizes: dict[int, int], top: int = 4) -> int:
        """The node leading most of the ``top`` partitions of ``topic`` that hold the most records
        (``sizes``: partition -> end offset): the one whose death hurts most."""
        leaders = {p: info["leader"] for p, info in self.partitions(topic).items()}
        busiest = sorted(sizes, key=lambda p: (-sizes[p], p))[:top]
        votes: dict[int, int] = {}
        for partition in busiest:
            votes[leaders[partition]] = votes.get(leaders[partition], 0) + 1
        return max(sorted(votes), key=lambda node: votes[node])
