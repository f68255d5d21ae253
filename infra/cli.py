"""``careledger up`` / ``careledger down``: the local stack (what ``make up``/``make down`` run)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start Kafka, processors and the API in the background")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop everything this CARELEDGER_HOME started")
    down.set_defaults(func=_down)
    backup = sub.add_parser("backup", help="write what the projections cannot rebuild (events, key store, "
                            "API tables) to a new directory")
    backup.add_argument("dest", help="a new (or empty) directory; with --stamp, the directory to create it in")
    backup.add_argument("--stamp", action="store_true",
                        help="write into DEST/careledger-<UTC time> (for a timer: one directory per run)")
    backup.add_argument("--keep", type=int, default=None, metavar="N",
                        help="with --stamp: afterwards remove all but the newest N finished backups in DEST")
    backup.add_argument("--include-secrets", action="store_true",
                        help="also copy the HMAC, master and webhook keys (default: keep them in a secret manager)")
    backup.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: only on a terminal)")
    backup.set_defaults(func=_backup)
    restore = sub.add_parser("restore", help="restore a backup into a fresh CARELEDGER_HOME and an empty topic")
    restore.add_argument("src", help="a directory written by careledger backup")
    restore.add_argument("--check", action="store_true",
                         help="only read the backup end to end (checksums, every record, SQLite integrity)")
    restore.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="show a progress bar (default: only on a terminal)")
    restore.set_defaults(func=_restore)
    from infra import demo

    demo.register(sub)
    from infra.deploy.cli import register as register_deploy  # careledger topics create|describe
    register_deploy(sub)


def _up(_: argparse.Namespace) -> int:
    from careledger.settings import get_settings
    from infra.process import AlreadyRunning, PortInUse, StartTimeout
    from infra.stack import up

    try:
        up(get_settings())
    except (PortInUse, StartTimeout, AlreadyRunning) as exc:
        print(f"careledger up: {exc}", file=sys.stderr)
        return 1
    return 0


def _down(_: argparse.Namespace) -> int:
    from careledger.settings import get_settings
    from infra.stack import down

    down(get_settings())
    return 0


def _backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from careledger.settings import get_settings
    from infra.backups import BackupError, backup, prune_backups, stamped_dir

    if args.keep is not None and (not args.stamp or args.keep < 1):
        print("careledger backup: --keep N (N >= 1) only prunes --stamp backups", file=sys.stderr)
        return 2
    dest = Path(args.dest)
    try:
        if args.stamp:
            dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        backup(get_settings(), stamped_dir(dest) if args.stamp else dest, include_secrets=args.include_secrets,
               progress=args.progress)
        for removed in prune_backups(dest, args.keep) if args.keep is not None else []:
            print(f"removed {removed} (--keep {args.keep})")
    except BackupError as exc:
        print(f"careledger backup: {exc}", file=sys.stderr)
        return 1
    return 0


def _restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from careledger.settings import get_settings
    from infra.backups import BackupError, check, restore

    try:
        if args.check:
            check(Path(args.src))
        else:
            restore(get_settings(), Path(args.src), progress=args.progress)
    except BackupError as exc:
        print(f"careledger restore: {exc}", file=sys.stderr)
        return 1
    return 0
