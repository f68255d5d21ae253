"""``careledger up`` / ``careledger down``: the local stack (what ``make up``/``make down`` run)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start Kafka, processors and the API in the background")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop everything this CARELEDGER_HOME started")
    down.set_defaults(func=_down)
    from infra import demo

    demo.register(sub)
    from infra.deploy.cli import register as register_deploy  # careledger topics create|describe
    register_deploy(sub)


def _up(_: argparse.Namespace) -> int:
    from careledger.settings import get_settings
    from infra.process import PortInUse, StartTimeout
    from infra.stack import up

    try:
        up(get_settings())
    except (PortInUse, StartTimeout) as exc:
        print(f"careledger up: {exc}", file=sys.stderr)
        return 1
    return 0


def _down(_: argparse.Namespace) -> int:
    from careledger.settings import get_settings
    from infra.stack import down

    down(get_settings())
    return 0
