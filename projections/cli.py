"""Read-API subcommands: ``careledger serve`` and ``careledger token create|list|revoke``."""

from __future__ import annotations

import argparse
import sys

from careledger.settings import Settings


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


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP read API (uvicorn, foreground)")
    serve.add_argument("--port", type=int, default=None, help="default: CARELEDGER_API_PORT (8000)")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.set_defaults(func=_serve)

    token = subparsers.add_parser("token", help="manage read-API bearer tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=["viewer", "caseworker", "admin"])
    create.add_argument("--towns", default=None,
                        help="caseworker only: comma-separated towns, e.g. 锦屏街道,岳林街道")
    create.set_defaults(func=_token_create)
    listing = tsub.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(func=_token_list)
    revoke = tsub.add_parser("revoke", help="revoke the active token(s) with this name")
    revoke.add_argument("name")
    revoke.set_defaults(func=_token_revoke)
