"""Webhook delivery of alerts: signing, retry schedule and the ``careledger deliver-webhooks``
process (docs/alert-delivery.md).  Subscriptions and the delivery log tables are owned by the
read API (``projections/webhook_store.py``); this package only reads subscriptions and
writes deliveries."""
