"""infra/metrics_targets.py: the ports ``make up`` gives its processes for /metrics, recorded for
Prometheus (file_sd) and reused by the next ``up``."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

from careledger.settings import Settings
from infra import metrics_targets


def settings_at(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env(), home=tmp_path, api_port=8123)


def test_ports_are_recorded_for_prometheus_and_reused(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    names = ["processor-sql", "webhooks"]
    first = metrics_targets.choose_ports(settings, names, lambda name: False)
    assert set(first) == set(names) and len(set(first.values())) == 2
    path = metrics_targets.write(settings, first)
    assert path == tmp_path / "run" / "prometheus-targets.json" and path.stat().st_mode & 0o777 == 0o600
    entries = json.loads(path.read_text())
    assert entries[-1] == {"targets": ["127.0.0.1:8123"], "labels": {"job": "careledger", "process": "api"}}
    assert {e["labels"]["process"]: e["targets"] for e in entries[:-1]} == {
        name: [f"127.0.0.1:{port}"] for name, port in first.items()}
    assert metrics_targets.recorded(settings) == {**first, "api": 8123}
    assert metrics_targets.choose_ports(settings, names, lambda name: False) == first  # free: the same again
    assert metrics_targets.urls(settings, first)["api"] == "http://127.0.0.1:8123/metrics"


def test_a_recorded_port_taken_by_someone_else_is_replaced(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    first = metrics_targets.choose_ports(settings, ["processor-sql", "webhooks"], lambda name: False)
    metrics_targets.write(settings, first)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first["webhooks"]))
        squatter.listen()
        again = metrics_targets.choose_ports(settings, ["processor-sql", "webhooks"], lambda name: False)
        kept = metrics_targets.choose_ports(settings, ["processor-sql", "webhooks"], lambda name: name == "webhooks")
    assert again["processor-sql"] == first["processor-sql"] and again["webhooks"] != first["webhooks"]
    assert kept == first  # its own process holds it: still right


def test_an_unreadable_record_or_a_process_of_an_older_release_is_not_guessed(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    (tmp_path / "run").mkdir()
    metrics_targets.targets_path(settings).write_text("{not json")
    assert metrics_targets.recorded(settings) == {}
    chosen = metrics_targets.choose_ports(settings, ["processor-sql", "webhooks"], lambda name: name == "webhooks")
    assert list(chosen) == ["processor-sql"]  # a running deliverer without a recorded port: unknown, left out
