"""The read API's own metrics (the process registry is ``careledger.metrics``)."""

from __future__ import annotations

from careledger.metrics import counter, exposition, gauge, histogram

__all__ = ["ALERT_STREAMS_OPEN", "HTTP_REQUESTS", "HTTP_SECONDS", "OUTBOX_FEED_READS", "PROJECTION_LAG",
           "exposition"]

HTTP_REQUESTS = counter("careledger_api_requests_total", "HTTP requests answered by the read API",
                        ["method", "route", "status"])
HTTP_SECONDS = histogram("careledger_api_request_seconds", "Time to answer a read API request",
                         ["method", "route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PROJECTION_LAG = gauge("careledger_projection_lag_events",
                       "Events on careledger.events not yet in the projection (last /api/status)",
                       ["projection"])
ALERT_STREAMS_OPEN = gauge("careledger_api_alert_streams_open",
                           "Following /api/alerts/stream connections open now (dashboards, caseworkers' clients)")
OUTBOX_FEED_READS = counter("careledger_api_outbox_feed_reads_total",
                            "Outbox queries of the one feed all following alert streams share")
