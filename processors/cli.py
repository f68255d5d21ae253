"""``careledger process``: run a projection worker (see processors/worker.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("process", help="consume careledger.events into a projection store")
    from projections.registry import projection_names  # replay: projections added later too
    parser.add_argument("--projection", choices=projection_names(), default="sql",
                        help="which store this worker feeds (one consumer group per projection)")
    parser.set_defaults(func=_process)
    from processors.replay.cli import register as register_replay  # replay, export (docs/replay.md)
    register_replay(sub)
    from processors.forget import register as register_forget  # careledger forget (docs/privacy.md)
    register_forget(sub)
    from processors.webhooks.cli import register as register_webhooks
    register_webhooks(sub)


def _process(args: argparse.Namespace) -> int:
    from careledger.settings import get_settings
    from processors.worker import run_worker

    return run_worker(get_settings(), args.projection)
