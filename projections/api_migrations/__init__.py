"""Alembic history of the read API's own tables (``careledger.migrations.API``): api_tokens,
audit_log, webhook_subscriptions, webhook_deliveries - in the read models' database, but never
rebuilt by a replay, so every schema change is a migration that keeps the rows."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from careledger import migrations


def upgrade(engine: Engine) -> None:
    """Create or upgrade the API's tables on ``engine`` (idempotent; safe with concurrent starts)."""
    migrations.upgrade(engine, migrations.API)
