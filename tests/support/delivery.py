"""What the delivery tests share: the API under uvicorn, an SSE reader, the webhook deliverer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from careledger.settings import Settings
from infra.process import free_port
from tests.support.pipeline import REPO_ROOT


class ApiServer:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def read_sse(url: str, token: str, want: int, *, last_event_id: int | None = None, query: str = "",
             timeout: float = 60.0, events: list[str] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """Read ``want`` events from the live stream (``query``: its filters), then hang up;
    ``events`` collects the event names (alert, warning) in order."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    got: list[tuple[int, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(5.0, read=20.0)) as client, \
            client.stream("GET", url + "/api/alerts/stream" + (f"?{query}" if query else ""),
                          headers=headers) as response:
        assert response.status_code == 200, response.read()
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "id" in current:
                    got.append((int(current["id"]), json.loads(current["data"])))
                    if events is not None:
                        events.append(current.get("event", ""))
                    if len(got) >= want:
                        break
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = value
            assert time.monotonic() < deadline, f"SSE: {len(got)} of {want} events"
    return got


@contextmanager
def run_deliverer(kafka_settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """``careledger deliver-webhooks`` as a subprocess (short retry delays), stopped at the end."""
    log_path = kafka_settings.home / "logs" / "webhooks.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "careledger.cli", "deliver-webhooks", "--base-delay", "0.2", "--max-delay", "1",
             "--timeout", "5"],
            env={**os.environ, **kafka_settings.to_env()}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    proc.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
