"""The webhook deliverer's metrics (the process registry is ``careledger.metrics``), served on
``CARELEDGER_METRICS_PORT`` like a worker's (``make up`` gives the deliverer a port of its own).

``subscription`` is the subscription id: a handful per deployment, so a bounded label set."""

from __future__ import annotations

from careledger.metrics import counter, gauge, histogram

ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONSUMED = counter("careledger_webhook_messages_consumed_total",
                   "Messages read from careledger.alerts and careledger.warnings")
ENQUEUED = counter("careledger_webhook_deliveries_enqueued_total",
                   "Deliveries stored for the matching subscriptions (a redelivered message adds none)")
ATTEMPTS = counter("careledger_webhook_attempts_total",
                   "Outcomes of due deliveries: delivered (2xx), retry (failed, tried again later), failed "
                   "(failed and given up), expired (given up untried: older than the maximum age)",
                   ["subscription", "outcome"])
ATTEMPT_SECONDS = histogram("careledger_webhook_attempt_seconds", "Time of one POST until the receiver answered",
                            ["subscription"], buckets=ATTEMPT_BUCKETS)
PENDING = gauge("careledger_webhook_pending_deliveries", "Deliveries waiting to be sent or retried",
                ["subscription"])
SUBSCRIPTIONS = gauge("careledger_webhook_subscriptions", "Active webhook subscriptions")

__all__ = ["ATTEMPTS", "ATTEMPT_SECONDS", "CONSUMED", "ENQUEUED", "PENDING", "SUBSCRIPTIONS"]
