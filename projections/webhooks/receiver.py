"""A reference webhook receiver (stdlib ``http.server``): verifies the Standard Webhooks signature
(and the timestamp's freshness), de-duplicates by ``webhook-id``, and can fail the first tries of
every delivery.  Used by the tests and the latency bench, and as an example of what a subscriber
has to do (docs/alert-delivery.md)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from projections.webhooks.signing import ID_HEADER, TIMESTAMP_HEADER, InvalidSignature, verify


@dataclass
class Received:
    delivery_id: str
    body: dict[str, Any]
    signature_ok: bool
    timestamp: str | None
    at: float  # time.time() when it arrived
    traceparent: str | None = None  # the W3C header (the trace of the event that raised the alert)


@dataclass
class ReceiverState:
    secrets: list[str]
    fail_first: int = 0
    delay_s: float = 0.0
    tries: Counter[str] = field(default_factory=Counter)
    accepted: list[Received] = field(default_factory=list)  # answered 2xx
    duplicates: list[str] = field(default_factory=list)  # delivery ids answered 2xx more than once
    bad_signatures: list[str] = field(default_factory=list)
    on_accept: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        state: ReceiverState = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        delivery = self.headers.get(ID_HEADER) or ""
        signature_ok = any(_verifies(s, dict(self.headers.items()), body) for s in state.secrets)
        if state.delay_s:
            time.sleep(state.delay_s)
        with state.lock:
            state.tries[delivery] += 1
            if not signature_ok:
                state.bad_signatures.append(delivery)
                status = 401
            elif state.tries[delivery] <= state.fail_first:
                status = 503
            else:
                if any(r.delivery_id == delivery for r in state.accepted):
                    state.duplicates.append(delivery)
                item = Received(delivery, json.loads(body), signature_ok, self.headers.get(TIMESTAMP_HEADER),
                                time.time(), self.headers.get("traceparent"))
                state.accepted.append(item)
                if state.on_accept is not None:
                    state.on_accept(item)
                status = 200
            state.arrived.notify_all()
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the deliverer timed out and hung up


def _verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    try:
        verify(secret, headers, body)
    except InvalidSignature:
        return False
    return True


class Receiver:
    """``with Receiver([secret], fail_first=2) as r: r.url ...``; ``r.state`` holds what arrived."""

    def __init__(self, secrets: list[str] | None = None, *, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.state = ReceiverState(list(secrets or []), fail_first, delay_s)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until ``count`` deliveries were accepted (distinct ids); False on timeout."""
        deadline = time.monotonic() + timeout
        with self.state.arrived:
            while len({r.delivery_id for r in self.state.accepted}) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.state.arrived.wait(left)
        return True
