from __future__ import annotations

import argparse

from producers import cli


def test_register_adds_the_commands() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    assert {"ingest", "import-csv"} <= set(sub.choices)
    args = parser.parse_args(["import-csv", "--type", "job.posted", "x.csv"])
    assert args.type == "job.posted" and args.func is cli._import_csv
    assert parser.parse_args(["ingest", "-"]).path == "-"


def test_careledger_command_lists_them() -> None:
    from careledger.cli import build_parser

    text = build_parser().format_help()
    assert "ingest" in text and "import-csv" in text
