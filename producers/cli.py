"""Producer subcommands: ``ingest``, ``import-csv`` (and ``simulate`` when that module exists)."""

from __future__ import annotations

import argparse
import importlib

from careledger.settings import Settings, parse_workers

SIMULATE_CLI = "producers.simulate.cli"


def _workers(text: str) -> int | None:
    """A count >= 0, or ``auto`` (None: what ``CARELEDGER_INGEST_WORKERS`` says, "auto" by default)."""
    try:
        return parse_workers(text, "--workers")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ingest(args: argparse.Namespace) -> int:
    from producers.ingest import run_ingest

    return run_ingest(Settings.from_env(), args.path, dry_run=args.dry_run, workers=args.workers,
                      progress=False if args.no_progress else None)


def _import_csv(args: argparse.Namespace) -> int:
    from producers.csv_import import run_import_csv

    return run_import_csv(Settings.from_env(), args.path, event_type=args.type, encoding=args.encoding,
                          delimiter=args.delimiter, sheet=args.sheet, dry_run=args.dry_run,
                          progress=False if args.no_progress else None)


def register(subparsers: argparse._SubParsersAction) -> None:
    ingest = subparsers.add_parser(
        "ingest", help="validate JSON Lines events and publish them",
        description="Validate JSON Lines events and publish them to Kafka. Exit 0 when every line "
                    "was accepted, 2 when any was rejected, 1 when the run failed.")
    ingest.add_argument("path", help="a .jsonl file, or - for standard input")
    ingest.add_argument("--dry-run", action="store_true", help="validate only, publish nothing")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                        help="processes that each check, seal and publish the lines of their share of the "
                             "partitions (0: none; default: CARELEDGER_INGEST_WORKERS, whose default 'auto' is "
                             "one per core for files over 16 MB)")
    ingest.set_defaults(func=_ingest)

    from producers.csv_layouts import LAYOUT_NAMES  # light: --help must not load Kafka or SQL clients

    csv_cmd = subparsers.add_parser(
        "import-csv", help="import a federation spreadsheet (CSV in any Excel encoding, or .xlsx) as events",
        description="Convert a spreadsheet (CSV as Excel saves it - UTF-8 with or without BOM, GB18030, "
                    "UTF-16 - or an .xlsx workbook; one event type per file or a 事件类型 column; Chinese or "
                    "English headers; see docs/csv-import.md) to events, validate and publish them. The "
                    "summary says which encoding or sheet was read. Exit codes as ingest.")
    csv_cmd.add_argument("path", help="a .csv or .xlsx file, or - for standard input")
    csv_cmd.add_argument("--type", choices=LAYOUT_NAMES, default=None,
                         help="the event type of every row (default: detected from the header)")
    csv_cmd.add_argument("--encoding", default=None,
                         help="CSV encoding, when the detected one is wrong (default: detected - a BOM, else "
                              "UTF-8, else GB18030; e.g. gb18030, utf-8, utf-16)")
    csv_cmd.add_argument("--delimiter", default=None,
                         help="CSV field separator: , ; or tab (default: the most frequent in the header line)")
    csv_cmd.add_argument("--sheet", default=None, metavar="NAME",
                         help="the worksheet of an .xlsx workbook (default: the active sheet)")
    csv_cmd.add_argument("--dry-run", action="store_true", help="validate only, publish nothing")
    csv_cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    csv_cmd.set_defaults(func=_import_csv)

    try:  # the simulator engineer's module, when it exists
        simulate_cli = importlib.import_module(SIMULATE_CLI)
    except ModuleNotFoundError as exc:
        if exc.name not in (SIMULATE_CLI, "producers.simulate"):
            raise
    else:
        simulate_cli.register(subparsers)
