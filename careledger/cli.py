"""The ``careledger`` command.

Each package owns its subcommands in its own ``cli.py`` module exposing
``register(subparsers) -> None``; this file only assembles them, so adding a command never means
editing someone else's module.  A subcommand sets ``func(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from careledger.home_permissions import use_private_umask

COMMAND_MODULES = ("infra.cli", "producers.cli", "processors.cli", "projections.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that package has no commands yet
                continue
            raise
        module.register(sub)
    return parser


#: commands that run until stopped: they check their secrets and the home's permissions first
LONG_RUNNING = frozenset({"process", "serve", "up", "deliver-webhooks"})


def main(argv: list[str] | None = None) -> int:
    previous_umask = use_private_umask()  # the one place: everything this process creates is private
    try:
        args = build_parser().parse_args(argv)
        _use_local_servers()
        if args.command in LONG_RUNNING:
            refused = _check_home(args.command)
            if refused is not None:
                return refused
        return int(args.func(args) or 0)
    finally:
        os.umask(previous_umask)  # matters only when called in-process (tests); a command exits


def _use_local_servers() -> None:
    """With ``CARELEDGER_LOCAL_SERVERS``, every command (``forget``, ``backup``, ``replay``...) uses
    the private ClickHouse/PostgreSQL servers this home runs, exactly as the processes ``up``
    started do: otherwise ``forget`` would purge an empty default SQLite store and skip ClickHouse."""
    from careledger.settings import get_settings

    settings = get_settings()
    if settings.local_servers:
        from infra.stack import effective_settings

        os.environ.update(effective_settings(settings).to_env())


def _check_home(command: str) -> int | None:
    """Refuse to start on an insecure secret file; then tighten a home whose other files or
    directories have loose permissions (reported on standard error)."""
    from careledger.home_permissions import tighten
    from careledger.secret_files import SecretFileError
    from careledger.settings import get_settings

    settings = get_settings()
    try:  # first: a secret that was readable may have been read; only its owner can decide to rotate it
        settings.check_secrets()
    except SecretFileError as exc:  # group/world-readable or empty
        print(f"careledger {command}: refusing to start: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    changed = tighten(settings.home)
    if changed:
        print(f"careledger {command}: removed group/other access from {len(changed)} path(s) under "
              f"{settings.home} (e.g. {changed[0]}); everything there is private to its owner",
              file=sys.stderr)
    return None


if __name__ == "__main__":
    sys.exit(main())
