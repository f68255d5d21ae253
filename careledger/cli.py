"""The ``careledger`` command.

Each package owns its subcommands in its own ``cli.py`` module exposing
``register(subparsers) -> None``; this file only assembles them, so adding a command never means
editing someone else's module.  A subcommand sets ``func(args) -> int`` (the exit code).  Every
subcommand and option carries help text (a unit test walks the tree); a subcommand's own
``--help`` page opens with its one-line help when it has no longer description.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata

from careledger import tracing
from careledger.home_permissions import defer_notice, use_private_umask

COMMAND_MODULES = ("infra.cli", "producers.cli", "projections.cli", "projections.process_cli")

DESCRIPTION = ("careledger: the event-sourced data platform of a district Disabled Persons' Federation "
               "(区残联). Events in (ingest, import-csv, simulate), read models kept by the processors "
               "(process), the HTTP API and dashboard (serve), history (replay, export), operations "
               "(up, down, topics, backup, restore, forget, token).")
EPILOG = ("Run 'careledger COMMAND --help' for a command's options. Documentation: README.md, "
          "docs/events.md (the event catalogue), docs/api/ (the HTTP API), docs/csv-import.md, "
          "docs/export.md, docs/operations.md. State lives under $CARELEDGER_HOME (default .careledger).")


def version() -> str:
    """The installed careledger's version (``pip install -e .`` records it from pyproject.toml)."""
    try:
        return metadata.version("careledger")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help as one, recursively."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                if not subparser.description and helps.get(name):
                    subparser.description = helps[name][:1].upper() + helps[name][1:] + "."
                _describe(subparser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careledger", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"careledger {version()}",
                        help="print careledger's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that package has no commands yet
                continue
            raise
        module.register(sub)
    _describe(parser)
    return parser


#: commands that run until stopped: they check their secrets and the home's permissions first
LONG_RUNNING = frozenset({"process", "serve", "up", "deliver-webhooks"})
#: of those, the ones that talk to a person on the terminal (the others write JSON logs)
PLAIN_OUTPUT = frozenset({"up"})


def main(argv: list[str] | None = None) -> int:
    previous_umask = use_private_umask()  # the one place: everything this process creates is private
    try:
        args = build_parser().parse_args(argv)
        _use_local_servers()
        if args.command in LONG_RUNNING:
            refused = _check_home(args.command)
            if refused is not None:
                return refused
        refused = _configure_tracing(args)
        if refused is not None:
            return refused
        return int(args.func(args) or 0)
    finally:
        os.umask(previous_umask)  # matters only when called in-process (tests); a command exits
        tracing.shutdown()  # spans still queued for export leave before the process does


def _configure_tracing(args: argparse.Namespace) -> int | None:
    """Name this process's spans (``careledger-process-sql``, ``careledger-serve``...) and export them
    when ``CARELEDGER_OTLP_ENDPOINT`` says so; a configured export that cannot work stops here."""
    from careledger.settings import get_settings

    service = args.command + (f"-{vars(args)['projection']}" if vars(args).get("projection") else "")
    try:
        tracing.configure(get_settings(), service)
    except tracing.TracingUnavailable as exc:
        print(f"careledger {args.command}: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    return None


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
        notice = (f"careledger {command}: removed group/other access from {len(changed)} path(s) under "
                  f"{settings.home} (e.g. {changed[0]}); everything there is private to its owner")
        if command in PLAIN_OUTPUT:
            print(notice, file=sys.stderr)
        else:  # logged once the process has set up its (JSON) logs
            defer_notice(notice)
    return None


if __name__ == "__main__":
    sys.exit(main())
