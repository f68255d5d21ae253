"""A webhook POST ends within its deadline whatever the receiver does (projections/webhooks/poster.py).

Receivers here are raw sockets on 127.0.0.1 that answer byte by byte: each byte comes well inside
httpx's per-operation timeout, so only a deadline for the whole request stops them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from projections.webhooks.poster import ERROR_SNIPPET, Poster
from projections.webhooks.signing import delivery_id, new_secret

DELIVERY = {"delivery_id": delivery_id("wh_t", "A1", 1), "body": '{"alert_id":"A1","outbox_seq":1}'}


@contextmanager
def receiver(answer: bytes, *, every_s: float = 0.0, then_forever: bytes = b"") -> Iterator[str]:
    """Accepts connections, reads each request and sends ``answer`` - a byte each ``every_s`` when
    that is set - then ``then_forever`` again and again until the client goes."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for i in range(len(answer)) if every_s else [None]:
                    if stop.is_set():
                        return
                    conn.sendall(answer if i is None else answer[i:i + 1])
                    if every_s:
                        time.sleep(every_s)
                while then_forever and not stop.is_set():
                    conn.sendall(then_forever)
                    time.sleep(0.01)
            except OSError:  # the client closed the connection: what the deadline does
                return

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        server.close()


def post(url: str, timeout_s: float) -> tuple[bool, int | None, str | None, float]:
    with Poster(timeout_s) as poster:
        started = time.monotonic()
        attempt = poster.post(url, "wh_t", new_secret(), DELIVERY)
        return attempt.ok, attempt.status, attempt.error, time.monotonic() - started


def test_a_status_line_trickled_byte_by_byte_is_cut_off_at_the_deadline() -> None:
    """Before (httpx's own timeout, per socket read): this POST took ~2 s and was 'delivered' -
    the worker held past its lease while another deliverer could claim the same row."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with receiver(answer, every_s=0.05) as url:
        ok, status, error, took = post(url, 0.5)
    assert not ok and status is None and error is not None and "timed out" in error
    assert took < 1.0, took


def test_a_2xx_is_delivered_without_reading_an_endless_body() -> None:
    with receiver(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", then_forever=b"400\r\n" + b"x" * 1024 + b"\r\n") as url:
        ok, status, error, took = post(url, 2.0)
    assert ok and status == 200 and error is None
    assert took < 1.0, took


def test_an_error_answer_keeps_a_snippet_of_its_body_however_long_it_is() -> None:
    with receiver(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100000000\r\n\r\n" + b"busy " * 100,
                  then_forever=b"z" * 4096) as url:
        ok, status, error, took = post(url, 2.0)
    assert not ok and status == 503 and error is not None
    assert error.startswith("HTTP 503: busy busy") and len(error) <= len("HTTP 503: ") + ERROR_SNIPPET
    assert took < 1.0, took


def test_a_slow_but_timely_answer_is_delivered() -> None:
    with receiver(b"HTTP/1.1 204 No Content\r\n\r\n", every_s=0.01) as url:
        ok, status, error, _ = post(url, 3.0)
    assert ok and status == 204 and error is None
