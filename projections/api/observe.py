"""Metrics for every request and an audit row for every person-level or admin request.

The audit row is written before the response starts: if it cannot be written the caller gets a
500 instead of unaudited person data.  The persons a list showed (``guard.audit_listed``) are
written with it; a stream names the persons of each frame under the row's id (``audit["id"]``)
before it sends the frame.  What goes into the row is redacted by
``TokenStore.audit`` (credentials in the query, national ID numbers anywhere).
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any
from urllib.parse import parse_qs

from fastapi.concurrency import run_in_threadpool

from projections.api import metrics
from projections.api.auth import TokenStore
from projections.api.guard import AUDIT_KEY

log = logging.getLogger("careledger.api")


class ObserveMiddleware:
    """ASGI middleware: request metrics (by route template) and the audit row."""

    def __init__(self, app: Any, tokens: TokenStore) -> None:
        self.app = app
        self.tokens = tokens

    def _audit(self, scope: dict[str, Any], status: int) -> None:
        audit = scope.get(AUDIT_KEY)
        if audit is None or audit.get("done"):
            return
        audit["done"] = True
        query = scope.get("query_string", b"").decode("latin-1")
        person_id = audit.get("person_id") or (scope.get("path_params") or {}).get("person_id")
        if person_id is None and query:
            person_id = (parse_qs(query).get("person_id") or [None])[0]
        audit["id"] = self.tokens.audit(principal=audit["principal"], method=scope["method"], path=scope["path"],
                                        query=query, person_id=person_id, status=status,
                                        subjects=audit.get("subjects", ()))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                if scope.get(AUDIT_KEY) is not None:
                    await run_in_threadpool(self._audit, scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if scope.get(AUDIT_KEY) is not None and not scope[AUDIT_KEY].get("done"):
                try:
                    await run_in_threadpool(self._audit, scope, 500)
                except Exception:  # noqa: BLE001 - the original error matters more
                    log.exception("could not write the audit row of a failed request")
            raise
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            metrics.HTTP_REQUESTS.labels(scope["method"], label, str(status[0])).inc()
            metrics.HTTP_SECONDS.labels(scope["method"], label).observe(perf_counter() - started)


__all__ = ["ObserveMiddleware"]
