"""Moved: webhook tables and their store are ``projections/webhook_store.py``, the endpoints
``projections/api/routes/webhooks.py``.

This name stays only for importers outside the API (processors/webhooks, processors/forget.py,
infra/backups/tables.py) until they import ``projections.webhook_store`` themselves.
"""

from projections.webhook_store import (  # noqa: F401 - re-exported
    SecretBox,
    WebhookStore,
    metadata,
    sql_engine,
    utc_text,
    webhook_deliveries,
    webhook_subscriptions,
)
