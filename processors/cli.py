"""Commands of the processors layer: ``careledger forget`` and ``careledger deliver-webhooks``.
(``process`` and ``replay`` run the runtime on a store: ``projections/process_cli.py``.)"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from processors.forget import register as register_forget  # careledger forget (docs/privacy.md)
    register_forget(sub)
    from processors.webhooks.cli import register as register_webhooks
    register_webhooks(sub)

