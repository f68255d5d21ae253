"""Pure helpers of webhook delivery: Standard Webhooks signatures, delivery ids, the retry schedule.

Signatures follow the Standard Webhooks specification (https://www.standardwebhooks.com/):

- ``webhook-id``: ``delivery_id(subscription, alert_id, outbox_seq)``: the same alert change sent to
  the same subscription always has the same id, however often Kafka redelivers the message or a
  retry resends it, so receivers de-duplicate on it (the spec's "idempotency key");
- ``webhook-timestamp``: Unix seconds of this attempt (receivers reject stale ones: replay protection);
- ``webhook-signature``: ``v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>``, space-separated
  when several; ``key`` is the base64-decoded part of the subscription secret after ``whsec_``.

Why the spec rather than our own header: receivers verify with any Standard Webhooks library (or
the ten stdlib lines in docs/alert-delivery.md), and the timestamp is signed, so a captured request
cannot be replayed later.  ``X-Careledger-Signature: sha256=<hex HMAC of the body>`` (the previous
scheme, with ``X-Careledger-Delivery`` = the webhook-id) is still sent for receivers written against
it; it is deprecated: it signs no timestamp.

Retries: ``RetryPolicy.delay(attempt)`` is the project's backoff (exponential, capped, equal jitter),
so a recovering receiver is not hit by every retry at once; a delivery is given up once it is older
than the maximum age.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as token_source
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from careledger.backoff import Backoff

# Standard Webhooks headers
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
TOLERANCE_S = 300  # the spec's recommended window for webhook-timestamp, both directions

# careledger's own headers: the subscription (useful for routing), and the deprecated signature
SUBSCRIPTION_HEADER = "X-Careledger-Subscription"
LEGACY_SIGNATURE_HEADER = "X-Careledger-Signature"
LEGACY_DELIVERY_HEADER = "X-Careledger-Delivery"  # deprecated: the same value as webhook-id
LEGACY_SIGNATURE_PREFIX = "sha256="


class InvalidSignature(ValueError):
    """A request that does not verify; the message says which check failed (never the secret)."""


def new_secret(size: int = 32) -> str:
    """A subscription secret as the spec serialises it: ``whsec_`` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_source.token_bytes(size)).decode("ascii")


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_...`` secret: the base64-decoded rest.  Secrets issued before the
    spec was adopted were URL-safe base64 without padding; they decode as such."""
    text = secret.decode("ascii") if isinstance(secret, bytes) else secret
    body = text.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise InvalidSignature("the webhook secret is not base64 after 'whsec_'") from None


def sign(secret: str | bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``webhook-signature`` value for one request: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(secret: str | bytes, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers (and the deprecated legacy signature) for ``body``."""
    timestamp = str(int(now if now is not None else time.time()))
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, msg_id, timestamp, body),
            LEGACY_SIGNATURE_HEADER: legacy_sign(secret, body), LEGACY_DELIVERY_HEADER: msg_id}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():  # HTTP header names are case-insensitive
        if key.lower() == name:
            return value
    return None


def verify(secret: str | bytes, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> str:
    """Check a received request; return its ``webhook-id`` or raise :class:`InvalidSignature`.

    All three headers are required, the timestamp must be within ``tolerance_s`` of ``now``, and one
    of the ``v1`` signatures must match (constant-time comparison) over the raw body."""
    msg_id, timestamp, signatures = (_header(headers, h) for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not msg_id or not timestamp or not signatures:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent = int(timestamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    if abs((now if now is not None else time.time()) - sent) > tolerance_s:
        raise InvalidSignature("webhook-timestamp is too old or too far in the future")
    expected = sign(secret, msg_id, sent, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value, expected):
            return msg_id
    raise InvalidSignature("no matching signature")


def legacy_sign(secret: str | bytes, body: bytes) -> str:
    """Deprecated ``X-Careledger-Signature``: ``sha256=`` + hex HMAC-SHA256 of the body, keyed by
    the secret string itself."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return LEGACY_SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def legacy_verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith(LEGACY_SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(legacy_sign(secret, body), header.strip())


def delivery_id(subscription_id: str, alert_id: str, outbox_seq: int) -> str:
    """Stable id of one alert change for one subscription (32 hex chars)."""
    text = f"{subscription_id}\x00{alert_id}\x00{int(outbox_seq)}"
    return "d" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:31]


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed delivery again, and when to give up.  The waits are the project's one
    backoff (``careledger.backoff.Backoff``); the schedule is kept in the delivery table, not in a
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
