"""Driving the real pipeline from tests: publish events, run worker processes, wait for them.

Workers run as real ``careledger process`` subprocesses (so a test can SIGKILL them), each with
its own consumer group and store URL passed through the environment, exactly as ``make up`` does.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from careledger.settings import Settings
from processors.domain.rules_config import load_rules
from processors.lag import LagProbe
from producers.publisher import EventPublisher
from projections import open_store
from projections.store import ProjectionStore

REPO_ROOT = Path(__file__).resolve().parents[2]


def publish(settings: Settings, events: Iterable[dict[str, Any]]) -> int:
    """Publish canonical events (no validation: tests choose exactly what goes on the log)."""
    count = 0
    with EventPublisher(settings) as publisher:
        for event in events:
            publisher.publish(event)
            count += 1
    return count


@dataclasses.dataclass
class WorkerProcess:
    settings: Settings
    projection: str
    store_url: str
    group: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.settings.to_env(), "CARELEDGER_PROCESSOR_GROUP": self.group}
        if self.projection == "sql":
            env["CARELEDGER_SQL_URL"] = self.store_url
        else:
            env["CARELEDGER_CLICKHOUSE_URL"] = self.store_url
        return env

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        # supervised as under ``make up``: an abnormal exit is restarted; a SIGKILL of the
        # process group (``kill``) takes the supervisor down too, like a machine crash.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infra.supervise", self.group, "--",
             sys.executable, "-m", "careledger.cli", "process", "--projection", self.projection],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, whatever the worker was doing."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def worker(settings: Settings, projection: str, store_url: str, name: str) -> WorkerProcess:
    return WorkerProcess(settings, projection, store_url, group=f"{settings.processor_group}-{name}",
                         log_path=settings.home / "logs" / f"worker-{name}.log")


def open_test_store(settings: Settings, url: str) -> ProjectionStore:
    store = open_store(url, load_rules(settings.rules_path), topic=settings.topics.events)
    store.migrate()
    return store


def wait_caught_up(settings: Settings, stores: dict[str, ProjectionStore], *, expected_end: int | None = None,
                   timeout: float = 600.0, workers: Iterable[WorkerProcess] = ()) -> float:
    """Block until every store has applied every event on the topic; return seconds waited."""
    probe = LagProbe(settings, stores)
    started = time.monotonic()
    try:
        while True:
            report = probe.measure()
            end = sum(report.end_offsets.values())
            if report.total == 0 and (expected_end is None or end >= expected_end):
                return time.monotonic() - started
            for w in workers:
                if not w.alive():
                    raise AssertionError(f"worker {w.group} died; log:\n{tail(w.log_path)}")
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not caught up after {timeout}s: lag {report.per_projection}")
            time.sleep(0.5)
    finally:
        probe.close()


def around(text: str, marker: str, before: int = 4000, after: int = 1000) -> str:
    """The part of a log around the first ``marker`` (what made a worker restart), else its end."""
    at = text.find(marker)
    return text[-before:] if at < 0 else text[max(0, at - before):at + len(marker) + after]


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
