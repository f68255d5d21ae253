"""``careledger replay rebuild|backfill|snapshot|swap|drop|list`` (``careledger export`` is in
``projections/cli.py``, beside the export it runs)."""

from __future__ import annotations

import argparse
import sys


def _store_name(text: str) -> str:
    """A store or snapshot name, checked before anything touches the filesystem (the name
    becomes file names under the home: ``../../x`` must never get that far)."""
    from projections.registry import NAME_RE

    if not NAME_RE.match(text):
        raise argparse.ArgumentTypeError(f"invalid name {text!r}: letters, digits, _ . - (at most 63, "
                                         "starting with a letter or digit)")
    return text


def register(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser("replay", help="rebuild projections from the log, snapshots, backfills")
    rsub = replay.add_subparsers(dest="replay_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=int, default=1, help="processes, each owning some partitions")
        p.add_argument("--batch-size", type=int, default=10_000, help="records per bulk apply_batch")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--check-crcs", action="store_true", default=None,
                       help="verify record CRCs (slow without the crc32c package)")

    p = rsub.add_parser("rebuild", help="rebuild a projection into a shadow store, verify, swap")
    p.add_argument("--projection", required=True, help="the projection to rebuild (sql, clickhouse, ...)")
    p.add_argument("--into", metavar="URL", help="target store URL (default: a new file/database)")
    p.add_argument("--name", type=_store_name, help="registry name of the new store (default: PROJECTION-TIMESTAMP)")
    p.add_argument("--no-swap", action="store_true", help="build and verify only")
    p.add_argument("--force", action="store_true", help="swap even if verification finds a difference")
    common(p)
    p.set_defaults(func=_rebuild)

    p = rsub.add_parser("backfill", help="fill a (new) projection's store from offset 0, then run it live")
    p.add_argument("--projection", required=True, help="the projection to fill (a registered name)")
    common(p)
    p.set_defaults(func=_backfill)

    p = rsub.add_parser("snapshot", help="a named point-in-time store (?snapshot=NAME in the API)")
    p.add_argument("name", type=_store_name, help="the snapshot's name (letters, digits, _ . -)")
    p.add_argument("--projection", default="sql", help="the projection to snapshot (default sql)")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--until", metavar="YYYY-MM-DD", help="business date: events dated on or before it")
    when.add_argument("--until-offset", metavar="N|P:N,...", help="log position (inclusive)")
    when.add_argument("--until-time", metavar="RFC3339", help="log append time (inclusive)")
    p.add_argument("--rules", metavar="PATH", help="rules TOML to evaluate history with")
    p.add_argument("--into", metavar="URL", help="target store URL (default: a new file/database)")
    common(p)
    p.set_defaults(func=_snapshot)

    p = rsub.add_parser("swap", help="make a registered store the active one of its projection")
    p.add_argument("--projection", required=True, help="the projection whose active store changes")
    p.add_argument("name", help="the registered store to make active (see replay list)")
    p.set_defaults(func=_swap)

    p = rsub.add_parser("drop", help="delete a retired store or a snapshot")
    p.add_argument("name", help="the retired store or snapshot to delete (see replay list)")
    p.set_defaults(func=_drop)

    p = rsub.add_parser("list", help="active stores, retired stores and snapshots")
    p.set_defaults(func=_list)


def _settings():  # noqa: ANN202 - lazy import keeps `careledger --help` fast
    from careledger.settings import get_settings

    return get_settings()


def _run(fn, *args, **kwargs) -> int:  # noqa: ANN001
    from processors.runtime.heap import settle_after_start
    from projections.registry import RegistryError

    settle_after_start()  # a replay command is a process of its own: the collector leaves its start-up heap alone
    try:
        fn(*args, **kwargs)
    except (RegistryError, ValueError, FileExistsError) as exc:
        print(f"careledger replay: {exc}", file=sys.stderr)
        return 2
    return 0


def _opts(args: argparse.Namespace) -> dict:
    return {"workers": args.workers, "batch_size": args.batch_size, "progress": not args.no_progress,
            "check_crcs": args.check_crcs}


def _rebuild(args: argparse.Namespace) -> int:
    from projections.replay.ops import rebuild

    holder: dict = {}

    def run() -> None:
        holder["r"] = rebuild(_settings(), args.projection, into=args.into, name=args.name, swap=not args.no_swap,
                              force=args.force, **_opts(args))

    code = _run(run)
    if code == 0 and not args.no_swap and not holder["r"]["swapped"]:
        return 3
    return code


def _backfill(args: argparse.Namespace) -> int:
    from projections.replay.ops import backfill

    return _run(backfill, _settings(), args.projection, **_opts(args))


def _snapshot(args: argparse.Namespace) -> int:
    from projections.replay.ops import snapshot

    return _run(snapshot, _settings(), args.name, projection=args.projection, until=args.until,
                until_offset=args.until_offset, until_time=args.until_time, rules=args.rules, into=args.into,
                **_opts(args))


def _swap(args: argparse.Namespace) -> int:
    from projections.replay.ops import swap

    return _run(swap, _settings(), args.projection, args.name)


def _drop(args: argparse.Namespace) -> int:
    from projections.replay.ops import drop

    return _run(drop, _settings(), args.name)


def _list(args: argparse.Namespace) -> int:
    from projections.replay.ops import listing

    rows = listing(_settings())
    print(f"{'name':<34} {'projection':<24} {'role':<9} {'status':<9} url")
    for row in rows:
        print(f"{row['name']:<34} {row['projection']:<24} {row['role']:<9} {row.get('status', '-') or '-':<9} "
              f"{row['url']}")
    return 0
