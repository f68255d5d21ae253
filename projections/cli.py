"""Read-side subcommands: ``careledger serve``, ``careledger token create|list|revoke``,
``careledger export`` and ``careledger audit archive|register|search``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlencode

from careledger.settings import Settings

if TYPE_CHECKING:  # the command line imports what a command needs when it runs (start-up time)
    from projections.api.auth import Principal, TokenStore
    from projections.audit_search import SearchResult
    from projections.export import SensitiveExportAudit


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from processors.logging_setup import configure_logging
    from projections.api.auth import ensure_admin_token

    settings = Settings.from_env()
    configure_logging(settings, "api")
    if ensure_admin_token(settings):
        print(f"admin token written to {settings.admin_token_path} (mode 0600)", file=sys.stderr)
    port = args.port if args.port is not None else settings.api_port
    uvicorn.run("projections.api.app:create_app", factory=True, host=args.host, port=port,
                log_config=None, access_log=False, proxy_headers=False)
    return 0


def _known_towns(settings: Settings, towns: str | None) -> list[str] | None:
    """``--towns`` as the configured town names; raises ValueError naming the unknown ones and
    listing the district's towns (CARELEDGER_TOWNS), so a typo never makes a caseworker see nothing."""
    from projections.api.auth import parse_towns
    from schemas.input_rules import InputRules

    if towns is None:
        return None
    rules = InputRules(towns=settings.towns)
    given = parse_towns(towns)
    unknown = [t for t in given if rules.known_town(t) is None]
    if unknown:
        raise ValueError(f"--towns: unknown town {', '.join(unknown)}: {rules.unknown_town(unknown[0])}")
    return [rules.known_town(t) or t for t in given]


def _token_create(args: argparse.Namespace) -> int:
    from projections.api.auth import TokenError, TokenStore

    settings = Settings.from_env()
    try:
        towns = _known_towns(settings, args.towns)
    except ValueError as exc:
        print(f"careledger token create: {exc}", file=sys.stderr)
        return 2
    tokens = TokenStore.from_settings(settings)
    try:
        token = tokens.create(args.name, args.role, towns)
    except TokenError as exc:
        print(f"careledger token create: {exc}", file=sys.stderr)
        return 2
    finally:
        tokens.close()
    print(token)
    print(f"token {args.name!r} ({args.role}) created; it is shown only this once", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from projections.api.auth import TokenStore

    tokens = TokenStore.from_settings(Settings.from_env())
    try:
        rows = tokens.list(include_revoked=args.all)
    finally:
        tokens.close()
    print(f"{'name':<24} {'role':<11} {'created_at':<26} {'revoked_at':<26} towns")
    for row in rows:
        print(f"{row['name']:<24} {row['role']:<11} {row['created_at']:<26} {row['revoked_at'] or '-':<26} "
              f"{','.join(row['towns'] or []) or '-'}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from projections.api.auth import TokenStore

    tokens = TokenStore.from_settings(Settings.from_env())
    try:
        n = tokens.revoke(args.name)
    finally:
        tokens.close()
    if not n:
        print(f"careledger token revoke: no active token named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked {n} token(s) named {args.name!r}")
    return 0


def _export_query(args: argparse.Namespace) -> str:
    """What was asked, for the audit row: the format and the filter."""
    pairs = [("format", args.format), ("include_sensitive", "1")]
    pairs += [("type", t) for t in args.types or ()] + [("town", t) for t in args.towns or ()]
    pairs += [(name, value) for name, value in (("from", args.date_from), ("to", args.date_to)) if value]
    return urlencode(pairs)


def _token_file_principal(tokens: TokenStore, token_file: Path | None, flag: str) -> Principal | None:
    """Whose active token ``token_file`` holds (None: no active token); ValueError when there is no
    such file.  Commands that need an admin token audit the answer either way."""
    if token_file is None:
        raise ValueError(f"{flag} needs --token-file PATH holding an admin token (e.g. $CARELEDGER_HOME/admin-token)")
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"--token-file: cannot read it ({exc.strerror})") from None
    return tokens.verify(token) if token else None


def _audited_admin(tokens: TokenStore, token_file: Path | None, command: str, query: str,
                   person_id: str | None = None, needed_for: str | None = None) -> tuple[Principal, int]:
    """The admin whose token ``token_file`` holds, and the id of the audit row of ``command``,
    which is written whatever the answer (200, or 403 before the ValueError that refuses any other
    token) - the one way the admin commands check and audit their caller.  ``needed_for``: the
    option that asks for the admin token (export's ``--include-sensitive``), named in a refusal."""
    principal = _token_file_principal(tokens, token_file, needed_for or command)
    admin = principal if principal is not None and principal.is_admin else None
    audit_id = tokens.audit(principal=principal, method="CLI", path=command, query=query, person_id=person_id,
                            status=200 if admin else 403)
    if admin is None:
        raise ValueError(f"{needed_for or '--token-file'}: the token is not an active admin token")
    return admin, audit_id


def _admin_token_file(parser: argparse.ArgumentParser) -> None:
    """The ``--token-file`` of a command that needs an admin token."""
    parser.add_argument("--token-file", type=Path, metavar="PATH",
                        help="a file holding an admin API token (e.g. $CARELEDGER_HOME/admin-token)")


def _sensitive_allowed(tokens: TokenStore, args: argparse.Namespace) -> tuple[SensitiveExportAudit | None, str]:
    """Whether this export may include sensitive fields (its audit when it may), and the line that
    says so.  They are left out unless asked for with an admin token (``--token-file``); the request
    is audited whatever the answer, like a person-level read of the API."""
    from projections.export import SensitiveExportAudit

    if not args.include_sensitive:
        return None, "sensitive fields left out (--include-sensitive with an admin --token-file to include them)"
    admin, audit_id = _audited_admin(tokens, args.token_file, "careledger export", _export_query(args),
                                     needed_for="--include-sensitive")
    return SensitiveExportAudit(tokens, audit_id), f"sensitive fields included (admin token {admin.name!r}; audited)"


def _export(args: argparse.Namespace) -> int:
    from projections.api.auth import TokenStore
    from projections.export import ExportFilter, export

    settings = Settings.from_env()
    tokens = TokenStore.from_settings(settings)
    try:
        audit, said = _sensitive_allowed(tokens, args)
        flt = ExportFilter.build(types=args.types, date_from=args.date_from, date_to=args.date_to, towns=args.towns)
        result = export(settings, args.format, args.out, flt, progress=not args.no_progress,
                        include_sensitive=audit is not None, before_write=audit)
    except ValueError as exc:
        print(f"careledger export: {exc}", file=sys.stderr)
        return 2
    finally:
        tokens.close()
    print(f"exported {result['rows']} events to {result['out']} ({result['read']} read, "
          f"{result['poison']} poison skipped, {result['skipped']} not exportable skipped)")
    for event_type, rows in sorted(result.get("by_type", {}).items()):
        print(f"  {event_type}: {rows}")
    if args.format != "clickhouse":
        print(said)
    for skipped in result["skipped_records"][:20]:
        print(f"  skipped partition {skipped['partition']} offset {skipped['offset']} "
              f"(event {skipped['event_id']}): {skipped['reason']}", file=sys.stderr)
    return 0


def _progress(bar: Any) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that moves a tqdm bar."""
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    return update


def _audit_archive(args: argparse.Namespace) -> int:
    """``careledger audit archive``: an admin's command (the archive says who read whose data), audited."""
    from tqdm import tqdm

    from projections.api.auth import TokenStore
    from projections.audit_archive import ArchiveError, archive

    tokens = TokenStore.from_settings(Settings.from_env())
    query = urlencode([("before", args.before), *([("dry_run", "1")] if args.dry_run else [])])
    try:
        admin, _ = _audited_admin(tokens, args.token_file, "careledger audit archive", query)
        quiet = args.no_progress or args.dry_run or None  # None: bars on a terminal only
        with tqdm(unit="row", unit_scale=True, desc="归档 archive", disable=quiet) as written, \
                tqdm(unit="row", unit_scale=True, desc="删除 delete", disable=quiet) as removed:
            result = archive(tokens.engine, args.before, args.out, dry_run=args.dry_run,
                             written=_progress(written), removed=_progress(removed), made_by=admin.name)
    except (ValueError, ArchiveError) as exc:
        print(f"careledger audit archive: {exc}", file=sys.stderr)
        return 2
    finally:
        tokens.close()
    if args.dry_run or result.out is None:
        print(f"{result.rows} audit rows written before {args.before} (UTC)"
              + ("; nothing archived (--dry-run)" if args.dry_run else "; nothing to archive"))
        return 0
    print(f"archived {result.rows} audit rows ({result.first_at} .. {result.last_at}) naming {result.subjects} "
          f"persons in lists and streams to {result.out} (mode 0600, sha256 {result.sha256}); "
          f"deleted {result.deleted} from the database")
    return 0


def _audit_register(args: argparse.Namespace) -> int:
    """``careledger audit register``: an admin's command, audited."""
    from projections.api.auth import TokenStore
    from projections.audit_archive import ArchiveError, register_existing

    tokens = TokenStore.from_settings(Settings.from_env())
    try:
        query = urlencode({"file": args.file.name, **({"before": args.before} if args.before else {})})
        admin, _ = _audited_admin(tokens, args.token_file, "careledger audit register", query)
        day, rows, digest = register_existing(tokens.engine, args.file, before=args.before, made_by=admin.name)
    except (ValueError, ArchiveError) as exc:
        print(f"careledger audit register: {exc}", file=sys.stderr)
        return 2
    finally:
        tokens.close()
    print(f"recorded {args.file.resolve()}: {rows} audit rows written before {day} (sha256 {digest}); "
          "careledger audit search reads it from now on")
    return 0


def _searched_person(args: argparse.Namespace, settings: Settings) -> str:
    """The person to search for: ``--person-id``, or the pseudonym of the ID number read from
    standard input (never from the command line, which ``ps`` and the shell history keep)."""
    from producers.pseudonym import SECRET_NAME, InvalidIdNumber, Pseudonymiser
    from schemas.idnumber import contains_id_number

    if args.person_id is not None:
        if contains_id_number(args.person_id):
            raise ValueError("--person-id: this is a national ID number, not a person_id; give it on standard "
                             "input with --id-number-stdin (the number is then never kept)")
        return str(args.person_id)
    if sys.stdin.isatty():  # typed by hand: not echoed on the screen either
        import getpass

        typed = getpass.getpass("身份证号 ID number (not shown): ")
    else:
        typed = sys.stdin.readline()
    try:
        return Pseudonymiser(settings.secret(SECRET_NAME)).person_id(typed.strip())
    except InvalidIdNumber as exc:  # its message names the problem, never the number
        raise ValueError(f"--id-number-stdin: {exc}") from None


_SEARCH_COLUMNS = ("at", "token_name", "role", "method", "path", "query", "status", "how", "listed", "source")


def _print_search(result: SearchResult, person_id: str, form: str) -> None:
    import csv
    import json

    from projections.export import escape_cell

    if form == "jsonl":
        for hit in result.hits:
            print(json.dumps(hit.record(), ensure_ascii=False, sort_keys=True))
        return
    if form == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(_SEARCH_COLUMNS)
        for hit in result.hits:
            record = hit.record()
            writer.writerow([escape_cell(record.get(column)) for column in _SEARCH_COLUMNS])
        return
    for source, found in result.found_in.items():
        if source != "database":
            print(f"归档 archive {source}: {found} rows naming the person")
    print(f"查阅记录 audit rows naming {person_id}: {len(result.hits)} "
          f"(数据库 database {result.found_in.get('database', 0)}, "
          f"归档 archives {sum(n for source, n in result.found_in.items() if source != 'database')}; "
          "a row in several places is shown once)")
    for hit in result.hits:
        row = hit.row
        whom = "本人 named" if hit.named else f"列表 listed among {hit.listed}"
        query = f"?{unquote_plus(row['query'])}" if row.get("query") else ""  # 锦屏街道, not %E9%94%A6...
        answer = row["status"] or "0 (未记录应答 no answer recorded)"  # a webhook POST claimed, its answer never recorded
        print(f"{row['at']}  {row.get('token_name') or '-'} ({row.get('role') or '-'})  {row['method']} "
              f"{row['path']}{query}  → {answer}  {whom}  [{hit.source}]")


def _audit_search(args: argparse.Namespace) -> int:
    """``careledger audit search``: an admin's command (it says who read a person's data), audited
    under that person."""
    from projections.api.auth import TokenStore
    from projections.audit_search import registered, search

    settings = Settings.from_env()
    tokens = TokenStore.from_settings(settings)
    try:
        person_id = _searched_person(args, settings)
        _audited_admin(tokens, args.token_file, "careledger audit search",
                       urlencode({"archives": len(args.archives) or "registered"}), person_id=person_id)
        archives = args.archives or [made.file for made in registered(tokens.engine)]  # given, or every one made
        result = search(tokens.engine, person_id, archives)
    except ValueError as exc:
        print(f"careledger audit search: {exc}", file=sys.stderr)
        return 2
    finally:
        tokens.close()
    _print_search(result, person_id, args.format)
    for problem in result.problems:
        print(f"careledger audit search: {problem}", file=sys.stderr)
    if not result.complete:
        print(f"careledger audit search: 答案不完整 the answer is incomplete: {len(result.problems)} "
              "problem(s) above; rows there may name the person", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP read API (uvicorn, foreground)")
    serve.add_argument("--port", type=int, default=None, help="default: CARELEDGER_API_PORT (8000)")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.set_defaults(func=_serve)

    token = subparsers.add_parser("token", help="manage read-API bearer tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", required=True, help="who or what uses the token (shown in the audit log)")
    create.add_argument("--role", required=True, choices=["viewer", "caseworker", "admin"],
                        help="viewer: aggregates only; caseworker: person-level data of --towns; admin: all")
    create.add_argument("--towns", default=None,
                        help="caseworker only: comma-separated towns of the district (CARELEDGER_TOWNS), "
                             "e.g. 锦屏街道,岳林街道")
    create.set_defaults(func=_token_create)
    listing = tsub.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(func=_token_list)
    revoke = tsub.add_parser("revoke", help="revoke the active token(s) with this name")
    revoke.add_argument("name", help="the token name given to token create")
    revoke.set_defaults(func=_token_revoke)

    ex = subparsers.add_parser(
        "export", help="export the event history (pseudonymous) to typed Parquet, CSV or ClickHouse",
        description="Export every event on the log, as the projections see it (upcast, erased persons erased), "
                    "filtered by type, date and town. Parquet: a directory with one typed file per event type "
                    "(docs/export.md has DuckDB and pandas examples). Sensitive fields are left out unless "
                    "asked for with an admin token. Records that cannot be exported are skipped and listed.")
    ex.add_argument("--format", required=True, choices=["parquet", "csv", "clickhouse"],
                    help="parquet (a directory of typed files), csv (one file, payload as JSON, formula-safe) "
                         "or clickhouse (the event-history table of a ClickHouse database)")
    ex.add_argument("--out", required=True, metavar="PATH|URL",
                    help="parquet: a new directory; csv: a file; clickhouse: clickhouse://host:port/db")
    ex.add_argument("--type", action="append", dest="types", metavar="TYPE",
                    help="only this event type (repeatable; default: all)")
    ex.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD",
                    help="only events dated on or after this day (the date of occurred_at in Asia/Shanghai)")
    ex.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="only events dated on or before this day")
    ex.add_argument("--town", action="append", dest="towns", metavar="TOWN",
                    help="only events of this town (repeatable; default: all)")
    sensitive = ex.add_mutually_exclusive_group()
    sensitive.add_argument("--exclude-sensitive", action="store_true",
                           help="leave out sensitive fields (category, grade, birth date, hardship, hazards ...: "
                                "schemas/privacy.py); the default")
    sensitive.add_argument("--include-sensitive", action="store_true",
                           help="include them; needs an admin token in --token-file, and is audited")
    _admin_token_file(ex)
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex.set_defaults(func=_export)

    audit = subparsers.add_parser("audit", help="the audit log: archive old rows, search it for a person")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    arch = asub.add_parser(
        "archive", help="move the audit rows written before a day into a new gzip JSON Lines file",
        description="Apply the federation's retention policy for the audit log: the rows written before --before "
                    "(UTC), each with the persons it named, go to a new file (mode 0600) that is checked before "
                    "they are deleted from the database. Needs an admin token; the run is itself audited. "
                    "docs/privacy.md, 'Keeping the audit log'.")
    arch.add_argument("--before", required=True, metavar="YYYY-MM-DD",
                      help="archive rows written before this day (UTC); today at the latest")
    arch.add_argument("--out", type=Path, metavar="FILE", help="a new file, e.g. audit-2025.jsonl.gz (never overwritten)")
    _admin_token_file(arch)
    arch.add_argument("--dry-run", action="store_true", help="only count the rows that would be archived")
    arch.add_argument("--no-progress", action="store_true", help="no progress bars")
    arch.set_defaults(func=_audit_archive)
    reg = asub.add_parser(
        "register", help="record an archive file made before archives were recorded",
        description="Archives made by `careledger audit archive` are recorded (the day, the file, its rows and "
                    "SHA-256) so that /api/audit, the person page and `careledger audit search` know of them; those "
                    "made by a release before the record existed are not. This reads such a file to its end, checks "
                    "every line and records it. Needs an admin token; audited. docs/privacy.md.")
    reg.add_argument("file", type=Path, metavar="FILE", help="an archive file of `careledger audit archive`")
    reg.add_argument("--before", metavar="YYYY-MM-DD",
                     help="the --before the archive was made with (default: the day after its last row)")
    _admin_token_file(reg)
    reg.set_defaults(func=_audit_register)
    find = asub.add_parser(
        "search", help="every audit row naming one person, in the database and in archive files",
        description="Answer a subject-access request (who read or received this person's data): every audit row "
                    "that named the person or showed them in a list or a stream, from the database and from the "
                    "files `careledger audit archive` wrote, oldest first, each row once. Needs an admin token; the "
                    "search is itself audited under the person. Exit 1 when a file or a line could not be read "
                    "(the answer is then incomplete; each problem names its file and line). docs/privacy.md.")
    who = find.add_mutually_exclusive_group(required=True)
    who.add_argument("--person-id", metavar="P", help="the person's pseudonymous person_id")
    who.add_argument("--id-number-stdin", action="store_true",
                     help="read the person's national ID number from standard input (never give it as an argument)")
    find.add_argument("--archive", dest="archives", action="append", type=Path, default=[], metavar="FILE",
                      help="an archive file of `careledger audit archive` (repeatable); default: every archive "
                           "the command made, where it wrote it (give the new place of one that was moved)")
    find.add_argument("--format", choices=["table", "csv", "jsonl"], default="table",
                      help="table (default, for reading), csv (formula-safe) or jsonl")
    _admin_token_file(find)
    find.set_defaults(func=_audit_search)
