"""The ``careledger`` command.

Each package owns its subcommands in its own ``cli.py`` module exposing
``register(subparsers) -> None``; this file only assembles them, so adding a command never means
editing someone else's module.  A subcommand sets ``func(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("infra.cli", "producers.cli", "processors.cli", "projections.cli", "projections.process_cli")


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


#: commands that run until stopped: they check their secrets before starting (issue 7)
LONG_RUNNING = frozenset({"process", "serve", "up"})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in LONG_RUNNING:
        from careledger.secret_files import SecretFileError
        from careledger.settings import get_settings

        try:
            get_settings().check_secrets()
        except SecretFileError as exc:  # group/world-readable or empty
            print(f"careledger {args.command}: refusing to start: {exc}", file=sys.stderr)
            return 78  # EX_CONFIG
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
