"""``careledger deliver-webhooks``: run the webhook deliverer (processors/webhooks/deliverer.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("deliver-webhooks",
                            help="deliver careledger.alerts and careledger.warnings to webhook subscribers "
                                 "(signed POST, retries)")
    parser.add_argument("--group", default=None,
                        help="Kafka consumer group (default: <CARELEDGER_PROCESSOR_GROUP>-webhooks)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per HTTP attempt (default 5)")
    parser.add_argument("--base-delay", type=float, default=1.0,
                        help="first retry after about this many seconds; doubles each time (default 1)")
    parser.add_argument("--max-delay", type=float, default=300.0, help="longest wait between tries (default 300)")
    parser.add_argument("--max-age", type=float, default=86400.0,
                        help="give a delivery up this many seconds after it was enqueued (default 86400)")
    parser.add_argument("--batch", type=int, default=20,
                        help="deliveries a subscription's worker holds at once (default 20)")
    parser.set_defaults(func=_deliver)


def _deliver(args: argparse.Namespace) -> int:
    from careledger.settings import get_settings
    from projections.webhooks.deliverer import run_deliverer
    from projections.webhooks.signing import RetryPolicy

    policy = RetryPolicy(base_delay_s=args.base_delay, max_delay_s=args.max_delay, max_age_s=args.max_age,
                         timeout_s=args.timeout)
    return run_deliverer(get_settings(), policy, group=args.group, batch=max(1, args.batch))
