"""Where ``make up``'s processes serve their Prometheus metrics: ``$CARELEDGER_HOME/run/prometheus-targets.json``.

``careledger up`` gives every worker and the webhook deliverer a loopback port of its own for
``/metrics`` (workers: ``/healthz`` and ``/readyz`` too; ``CARELEDGER_METRICS_PORT`` in their
environment) and records all of them, the API included, in Prometheus' ``file_sd`` format::

    [{"targets": ["127.0.0.1:41234"], "labels": {"job": "careledger", "process": "processor-sql"}}, ...]

so a Prometheus on the host scrapes the stack with ``file_sd_configs: [{files: [<that file>]}]``
(docs/metrics.md).  The next ``up`` reuses a recorded port when its process still runs or the port
is free, so the targets stay the same across restarts; ``down`` leaves the file (the targets then
answer nothing, which is what ``up == 0`` alerts on).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from careledger.settings import Settings
from infra import process

TARGETS_FILE = "prometheus-targets.json"
JOB = "careledger"


def targets_path(settings: Settings) -> Path:
    return settings.run_dir / TARGETS_FILE


def scrape_host(settings: Settings) -> str:
    """The address a scraper on this host uses for ``CARELEDGER_METRICS_ADDR``."""
    return "127.0.0.1" if settings.metrics_addr in ("", "0.0.0.0", "127.0.0.1") else settings.metrics_addr  # noqa: S104


def recorded(settings: Settings) -> dict[str, int]:
    """``{process: port}`` of the last ``up`` (empty when none, or the file is unreadable)."""
    try:
        entries = json.loads(targets_path(settings).read_text(encoding="utf-8"))
        return {e["labels"]["process"]: int(e["targets"][0].rsplit(":", 1)[1]) for e in entries}
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return {}


def choose_ports(settings: Settings, names: Iterable[str], running: Callable[[str], bool]) -> dict[str, int]:
    """A port per process: the recorded one while its process runs (it holds it) or the port is
    free, else a free loopback port; never one port twice.  A process running without a recorded
    port (started by a release before metrics were on by default) is left out: nobody knows it."""
    before = recorded(settings)
    chosen: dict[str, int] = {}
    for name in names:
        port = before.get(name)
        if port is None and running(name):
            continue
        if port is None or port in chosen.values() or not (running(name) or process.port_is_free(port)):
            port = process.free_port()
            while port in chosen.values():
                port = process.free_port()
        chosen[name] = port
    return chosen


def write(settings: Settings, ports: dict[str, int]) -> Path:
    """Record ``{process: port}`` (plus the API) for Prometheus; owner-only, replaced atomically."""
    host = scrape_host(settings)
    entries = [{"targets": [f"{host}:{port}"], "labels": {"job": JOB, "process": name}}
               for name, port in ports.items()]
    entries.append({"targets": [f"127.0.0.1:{settings.api_port}"], "labels": {"job": JOB, "process": "api"}})
    path = targets_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(entries, out, indent=1)
        out.write("\n")
    os.replace(tmp, path)
    return path


def urls(settings: Settings, ports: dict[str, int]) -> dict[str, str]:
    """``{process: metrics URL}``, the API's last."""
    host = scrape_host(settings)
    return {**{name: f"http://{host}:{port}/metrics" for name, port in ports.items()},
            "api": f"{settings.api_url}/metrics"}
