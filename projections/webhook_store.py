"""Webhook subscriptions and their delivery log: the tables and the store (no HTTP here).

The admin endpoints are ``projections/api/routes/webhooks.py``; the deliverer
(``careledger deliver-webhooks``, ``processors/webhooks/deliverer.py``) and its queue
(``processors/webhooks/queue.py``) use the tables and :class:`WebhookStore` defined here.

The deliverer needs each subscription's secret to sign requests, so the secret cannot be stored as
a one-way hash: it is stored **encrypted** (Fernet: AES-128-CBC + HMAC-SHA256) with a key derived
from the deployment secret ``webhook-key`` (``settings.secret("webhook-key")``:
``CARELEDGER_WEBHOOK_KEY`` or ``$CARELEDGER_HOME/secrets/webhook-key``, mode 0600).  A copy of the
database alone reveals no secret; only processes that can read the key file (the API and the
deliverer) can sign.

Tables live in the same SQL database as the read models (``settings.sql_url``) but belong to this
module (created by the API tables' Alembic history, ``projections/api_migrations``); the
store's migrations and ``reset`` leave them alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from careledger.settings import Settings
from projections.api_migrations import upgrade as upgrade_api_tables
from projections.sql import tables as t
from projections.sql.engines import make_engine

KEY_SECRET_NAME = "webhook-key"
SECRET_PREFIX = "whsec_"
STATUSES = ("pending", "delivered", "failed", "cancelled")
MAX_LIMIT = 10_000

metadata = MetaData()

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("subscription_id", String(40), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("rules", JSON, nullable=True),  # null: every rule
    Column("towns", JSON, nullable=True),  # null: every town
    Column("description", String(256), nullable=True),
    Column("secret_enc", Text, nullable=False),  # Fernet token of the whsec_ secret
    Column("secret_fingerprint", String(16), nullable=False),  # sha256(secret)[:12], to tell secrets apart
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("deleted_at", String(40), nullable=True),
    # alert changes with a larger outbox seq are delivered: those committed after the subscription
    Column("start_after_seq", BigInteger, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", String(40), primary_key=True),  # signing.delivery_id(sub, alert, seq)
    Column("subscription_id", String(40), nullable=False),
    Column("alert_id", String(255), nullable=False),
    Column("outbox_seq", BigInteger, nullable=False),
    Column("body", Text, nullable=False),  # exactly the bytes POSTed (the careledger.alerts message)
    Column("status", String(16), nullable=False),  # pending | delivered | failed | cancelled
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_status", Integer, nullable=True),  # HTTP status of the last attempt
    Column("created_at", String(40), nullable=False),  # ISO UTC, fixed width: sorts as text
    Column("next_attempt_at", String(40), nullable=True),
    Column("lease_until", String(40), nullable=True),  # an attempt is in flight until then
    Column("delivered_at", String(40), nullable=True),
    # W3C trace context of the Kafka message it came from; each POST is a child span (careledger/tracing.py)
    Column("traceparent", String(55), nullable=True),
    Index("ix_webhook_deliveries_due", "subscription_id", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_sub_seq", "subscription_id", "outbox_seq"),
)


def utc_text(at: datetime | None = None) -> str:
    """ISO UTC with microseconds (fixed width, so text comparison is time order)."""
    return (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")


class SecretBox:
    """Encrypts subscription secrets with a key derived from the deployment's ``webhook-key``."""

    def __init__(self, master: bytes) -> None:
        derived = hmac.new(master, b"careledger webhook subscription secrets v1", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        for _ in range(100):
            try:
                master = settings.secret(KEY_SECRET_NAME)
            except FileExistsError:  # the API and the deliverer created it at the same moment
                master = b""
            if master:  # (empty: the other process has not written the new file yet)
                return cls(master)
            time.sleep(0.02)
        raise RuntimeError(f"the {KEY_SECRET_NAME} secret is empty; remove {settings.secrets_dir / KEY_SECRET_NAME}")

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise RuntimeError("a webhook secret cannot be decrypted: the webhook-key secret of this "
                               "process differs from the one that stored it") from None


def new_secret() -> str:
    """``whsec_`` + standard base64 of 32 random bytes: the Standard Webhooks secret format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def sql_engine(url: str) -> Engine:
    """An engine on the read-model database with the store's SQLite settings (WAL, busy timeout,
    ``sqlite_begin="immediate"`` for writers)."""
    return make_engine(url)


def _json_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return list(value) if isinstance(value, list) else json.loads(value)


def _subscription(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {
        "subscription_id": m["subscription_id"], "url": m["url"], "rules": _json_list(m["rules"]),
        "towns": _json_list(m["towns"]), "description": m["description"],
        "secret_fingerprint": m["secret_fingerprint"], "created_at": m["created_at"],
        "created_by": m["created_by"], "active": m["deleted_at"] is None, "deleted_at": m["deleted_at"],
        "start_after_seq": int(m["start_after_seq"]),
    }


DELIVERY_LOG_COLUMNS = ("delivery_id", "subscription_id", "alert_id", "outbox_seq", "status", "attempts",
                        "last_status", "last_error", "created_at", "next_attempt_at", "delivered_at")


class WebhookStore:
    """Subscriptions (create/list/delete, secrets) and the read side of the delivery log."""

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box
        self._migrated = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> WebhookStore:
        return cls(engine if engine is not None else sql_engine(settings.sql_url), SecretBox.from_settings(settings))

    def migrate(self) -> None:
        with self._lock:
            if not self._migrated:
                upgrade_api_tables(self.engine)  # Alembic history; the API and the workers may start together
                self._migrated = True

    def _write(self) -> Any:
        return self.engine.connect().execution_options(sqlite_begin="immediate")

    # ------------------------------------------------------------------ subscriptions
    def create(self, url: str, *, rules: list[str] | None = None, towns: list[str] | None = None,
               description: str | None = None, created_by: str | None = None,
               start_after_seq: int | None = None) -> dict[str, Any]:
        """Store a subscription; the answer carries its ``secret`` (the only time it is shown).
        ``start_after_seq``: the current end of the alert outbox (default: read on this engine)."""
        self.migrate()
        secret = new_secret()
        start = self.outbox_end() if start_after_seq is None else int(start_after_seq)
        values = {"start_after_seq": start, "subscription_id": "wh_" + secrets.token_hex(8), "url": url, "rules": rules or None,
                  "towns": towns or None, "description": description, "secret_enc": self.box.seal(secret),
                  "secret_fingerprint": fingerprint(secret), "created_at": utc_text(), "created_by": created_by}
        with self._write() as conn, conn.begin():
            conn.execute(insert(webhook_subscriptions).values(**values))
            row = conn.execute(select(webhook_subscriptions).where(
                webhook_subscriptions.c.subscription_id == values["subscription_id"])).one()
        return {**_subscription(row), "secret": secret}

    def outbox_end(self) -> int:
        """The largest alert-outbox seq so far (0 when the processor has not created the table yet)."""
        ob = t.alert_outbox
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.coalesce(func.max(ob.c.seq), 0))).scalar_one())
        except (OperationalError, ProgrammingError):
            return 0

    def get(self, subscription_id: str) -> dict[str, Any] | None:
        self.migrate()
        with self.engine.connect() as conn:
            row = conn.execute(select(webhook_subscriptions).where(
                webhook_subscriptions.c.subscription_id == subscription_id)).first()
        return None if row is None else _subscription(row)

    def list(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        self.migrate()
        stmt = select(webhook_subscriptions).order_by(webhook_subscriptions.c.created_at)
        if not include_deleted:
            stmt = stmt.where(webhook_subscriptions.c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            return [_subscription(r) for r in conn.execute(stmt)]

    def active_with_secrets(self) -> list[dict[str, Any]]:
        """Active subscriptions with their decrypted ``secret`` (for the deliverer only)."""
        self.migrate()
        s = webhook_subscriptions
        with self.engine.connect() as conn:
            rows = conn.execute(select(s).where(s.c.deleted_at.is_(None)).order_by(s.c.created_at)).all()
        return [{**_subscription(r), "secret": self.box.open(r._mapping["secret_enc"])} for r in rows]

    def delete(self, subscription_id: str) -> dict[str, Any] | None:
        """Deactivate a subscription and cancel its pending deliveries; None if unknown."""
        self.migrate()
        now = utc_text()
        s, d = webhook_subscriptions, webhook_deliveries
        with self._write() as conn, conn.begin():
            row = conn.execute(select(s).where(s.c.subscription_id == subscription_id)).first()
            if row is None:
                return None
            if row._mapping["deleted_at"] is None:
                conn.execute(update(s).where(s.c.subscription_id == subscription_id).values(deleted_at=now))
                conn.execute(update(d).where(d.c.subscription_id == subscription_id, d.c.status == "pending")
                             .values(status="cancelled", last_error="subscription deleted", next_attempt_at=None))
            row = conn.execute(select(s).where(s.c.subscription_id == subscription_id)).one()
        return _subscription(row)

    # ------------------------------------------------------------------ delivery log
    def deliveries(self, subscription_id: str, *, status: str | None = None, alert_id: str | None = None,
                   limit: int = 100, offset: int = 0) -> dict[str, Any]:
        self.migrate()
        d = webhook_deliveries
        conds = [d.c.subscription_id == subscription_id]
        if status is not None:
            conds.append(d.c.status == status)
        if alert_id is not None:
            conds.append(d.c.alert_id == alert_id)
        cols = [d.c[name] for name in DELIVERY_LOG_COLUMNS]
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(d).where(*conds)).scalar_one()
            by_status = dict(conn.execute(select(d.c.status, func.count()).where(d.c.subscription_id == subscription_id)
                                          .group_by(d.c.status)).all())
            rows = conn.execute(select(*cols).where(*conds).order_by(d.c.outbox_seq.desc(), d.c.delivery_id)
                                .limit(limit).offset(offset)).all()
        return {"total": int(total), "by_status": {k: int(v) for k, v in by_status.items()},
                "items": [dict(r._mapping) for r in rows]}


__all__ = [
    "DELIVERY_LOG_COLUMNS", "KEY_SECRET_NAME", "MAX_LIMIT", "SECRET_PREFIX", "STATUSES", "SecretBox", "WebhookStore",
    "fingerprint", "metadata", "new_secret", "sql_engine", "utc_text", "webhook_deliveries", "webhook_subscriptions",
]
