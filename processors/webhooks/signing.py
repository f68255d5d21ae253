"""Pure helpers of webhook delivery: request signatures, delivery ids and the retry schedule.

- ``X-Careledger-Signature: sha256=<hex>`` is HMAC-SHA256 of the exact request body bytes with the
  subscription's secret (the ``whsec_...`` string, UTF-8).  Receivers recompute it over the raw body
  and compare with ``hmac.compare_digest`` (``verify`` below does exactly that).
- ``X-Careledger-Delivery`` is ``delivery_id(subscription, alert_id, outbox_seq)``: the same alert
  change sent to the same subscription always has the same id, however often Kafka redelivers the
  message or a retry resends it, so receivers de-duplicate on it.
- Retries: ``backoff_delay(attempt)`` is exponential (``base * 2**(attempt-1)``, capped) with
  "equal jitter" (a uniformly random point in the upper half), so a recovering receiver is not hit
  by every retry at once; a delivery is given up once it is older than the maximum age.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from careledger.retrying import Backoff

SIGNATURE_HEADER = "X-Careledger-Signature"
DELIVERY_HEADER = "X-Careledger-Delivery"
TIMESTAMP_HEADER = "X-Careledger-Timestamp"
SUBSCRIPTION_HEADER = "X-Careledger-Subscription"
SIGNATURE_PREFIX = "sha256="


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The value of ``X-Careledger-Signature`` for ``body``."""
    return SIGNATURE_PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time comparison)."""
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())


def delivery_id(subscription_id: str, alert_id: str, outbox_seq: int) -> str:
    """Stable id of one alert change for one subscription (32 hex chars)."""
    text = f"{subscription_id}\x00{alert_id}\x00{int(outbox_seq)}"
    return "d" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:31]


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed delivery again, and when to give up.  The waits are the project's one
    backoff (``careledger.retrying.Backoff``); the schedule is kept in the delivery table, not in a
    sleeping thread, so it survives restarts."""

    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_age_s: float = 24 * 3600.0
    timeout_s: float = 5.0

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.base_delay_s, self.max_delay_s)

    def ceiling(self, attempt: int) -> float:
        """The longest wait after the ``attempt``-th failed try (1-based), before jitter."""
        return self.backoff.ceiling(attempt)

    def delay(self, attempt: int, rand: Callable[[], float] | None = None) -> float:
        """Seconds to wait after the ``attempt``-th failure: in ``[ceiling/2, ceiling]``."""
        return self.backoff.delay(attempt, rand)

    def gives_up(self, age_s: float) -> bool:
        """True when a delivery created ``age_s`` seconds ago must not be tried again."""
        return age_s >= self.max_age_s
