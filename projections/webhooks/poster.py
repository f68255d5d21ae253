"""One signed webhook POST, finished or abandoned within a deadline for the whole request.

httpx's ``timeout`` bounds each socket operation, not the request: a receiver (or a proxy in
front of it) that trickles its status line, headers or body a byte at a time kept a POST going
for as long as it liked - the subscription's worker stuck on it, and past the lease of its
claimed batch, so another deliverer process could claim and send the same rows meanwhile
(``projections/webhooks/deliverer.py``: no POST may start that could still run when the lease
ends - which only holds if a POST cannot outlive its timeout).  Here every POST runs on the
worker thread's own event loop under ``asyncio.timeout``: at the deadline the request is
cancelled and its connection closed.  Only the status decides (Standard Webhooks: any 2xx is
delivered); a 2xx answer's body is not read, an error's at most ``ERROR_SNIPPET`` bytes - an
endless or enormous answer costs neither time nor memory.  Any other exception of a POST (a URL
httpx cannot use: ``InvalidURL``, ``IDNAError``) is a failed attempt too, never raised: it killed
the subscription's worker thread on every claim.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from careledger import tracing
from projections.webhooks.signing import SUBSCRIPTION_HEADER, signed_headers

USER_AGENT = "careledger-webhooks/1"
ERROR_SNIPPET = 200  # bytes of an error answer kept in the delivery's last_error


@dataclass
class Attempt:
    ok: bool
    status: int | None
    error: str | None


class Poster:
    """The POSTs of one worker thread: an event loop and a connection pool of its own (an
    ``httpx.AsyncClient`` belongs to the loop it first ran on).  Use as a context manager."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def __enter__(self) -> Poster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()

    def post(self, url: str, subscription_id: str, secret: str, delivery: dict[str, Any],
             now: float | None = None) -> Attempt:
        """POST ``delivery["body"]`` to ``url``, signed with ``secret`` (``signing.py``), as a
        ``deliver webhook`` span, child of the delivery's ``traceparent`` (sent as the W3C
        header); an answer not complete within ``timeout_s`` of the start is a failed attempt."""
        body = delivery["body"].encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept-Encoding": "identity",  # an error's snippet is read raw: nothing to inflate
            "User-Agent": USER_AGENT,
            SUBSCRIPTION_HEADER: subscription_id,
            **signed_headers(secret, delivery["delivery_id"], body, now),
        }
        with tracing.span("deliver webhook", delivery.get("traceparent"), kind=tracing.SpanKind.CLIENT,
                          attributes={"http.request.method": "POST",
                                      "careledger.delivery_id": delivery["delivery_id"]}) as traceparent:
            headers[tracing.TRACEPARENT] = traceparent
            return self._runner.run(self._post(url, body, headers))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    if 200 <= response.status_code < 300:
                        return Attempt(True, response.status_code, None)
                    snippet = b""
                    async for chunk in response.aiter_raw():
                        snippet += chunk
                        if len(snippet) >= ERROR_SNIPPET:
                            break
        except TimeoutError:
            return Attempt(False, None, f"timed out: no complete answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - whatever the URL or headers, the worker records a failed try
            return Attempt(False, None, f"request not sent: {type(exc).__name__}: {exc}"[:500])
        text = snippet[:ERROR_SNIPPET].decode("utf-8", "replace")
        return Attempt(False, response.status_code, f"HTTP {response.status_code}: {text}")
