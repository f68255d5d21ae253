"""``careledger process``, ``replay ...``, ``forget`` and ``deliver-webhooks``: the commands that run
the projection runtime on a store, or act on every store.  They live here, above ``processors`` and
the stores, because this is where a projection's store is chosen (the registry) and handed over."""

from __future__ import annotations

import argparse

from careledger.settings import get_settings
from processors.domain.rules_config import load_rules
from processors.worker import run_worker
from projections.binding import ActiveStoreSource
from projections.forget import register as register_forget
from projections.registry import projection_names
from projections.replay.cli import register as register_replay
from projections.webhooks.cli import register as register_webhooks


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "process", help="run a projection worker: consume careledger.events into a store (what `make up` runs)",
        description="Consume careledger.events into one projection's store, effectively once, from the store's "
                    "own positions (an empty store is built from offset 0).  Runs until SIGTERM/SIGINT.")
    parser.add_argument("--projection", choices=projection_names(), default="sql",
                        help="which store this worker feeds (one consumer group per projection; default: sql)")
    parser.set_defaults(func=_process)
    register_replay(sub)
    register_forget(sub)  # careledger forget (docs/privacy.md)
    register_webhooks(sub)  # careledger deliver-webhooks (docs/alert-delivery.md)


def _process(args: argparse.Namespace) -> int:
    settings = get_settings()
    source = ActiveStoreSource(settings, args.projection, load_rules(settings.rules_path))
    return run_worker(settings, args.projection, source)
