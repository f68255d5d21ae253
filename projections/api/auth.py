"""Bearer tokens, roles and the audit log of the read API.

Roles:

- ``viewer``: aggregates only (counts, report, targets, status); small cells stay suppressed;
- ``caseworker``: aggregates plus person-level data (alerts, warnings, timelines, acknowledging
  alerts) of the towns listed on the token; a person outside them answers 403;
- ``admin``: everything, including ``/api/audit`` and ``POST /api/events``.

A token is ``cl_`` + 32 random bytes (URL-safe base64); only its SHA-256 is stored, in the table
``api_tokens`` of the same SQL database as the SQL read models (``settings.sql_url``).  Every
request to a person-level or admin route is written to ``audit_log`` (who, what, when, answer);
every person a list or a stream showed is written to ``audit_subjects`` under that row, so
``/api/audit?person_id=`` answers "who has read this person's data" for lists too.

These tables belong to the API, not to the projection store: they are created here with
``create_all`` (idempotent) and are left alone by the store's migrations and ``reset``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from sqlalchemy import (
    JSON,
    Column,
    String,
    Table,
    create_engine,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from careledger.secret_files import create_secret_file
from careledger.settings import Settings
from projections.api_migrations import upgrade as upgrade_api_tables
from projections.audit_search import archived_before
from projections.audit_tables import audit_log, audit_subjects, metadata, safe_person_id
from schemas.idnumber import mask_ids

ROLES = ("viewer", "caseworker", "admin")
TOKEN_PREFIX = "cl_"
ADMIN_TOKEN_NAME = "local-admin"
REDACTED = "[REDACTED]"
#: query parameters whose value is a credential whatever it looks like
CREDENTIAL_PARAMS = frozenset({
    "token", "access_token", "accesstoken", "auth", "authorization", "bearer", "api_key", "apikey", "api-key",
    "password", "passwd", "secret", "client_secret", "refresh_token", "id_token", "jwt", "session",
})
#: values that are credentials whatever parameter carries them (API tokens, webhook secrets)
CREDENTIAL_VALUE = re.compile(r"(?i)^(bearer\s+|cl_|whsec_)")

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("name", String(128), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("towns", JSON, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40), nullable=True),
)


class TokenError(ValueError):
    """A token command was refused (unknown role, name taken, caseworker without towns...)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling.  ``name`` None: anonymous (no Authorization header)."""

    name: str | None
    role: str | None
    towns: tuple[str, ...] = field(default_factory=tuple)
    # which stored token this is (SHA-256), so a long request (the alert stream) can re-check it
    token_hash: str | None = field(default=None, repr=False, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.name is None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see_town(self, town: str | None) -> bool:
        if self.role == "admin":
            return True
        return self.role == "caseworker" and town is not None and town in self.towns

    def town_filter(self) -> list[str] | None:
        """Towns to restrict person-level queries to (None: no restriction)."""
        return None if self.role == "admin" else list(self.towns)


ANONYMOUS = Principal(None, None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _engine_for(url: str) -> Engine:
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        return create_engine(url, **kwargs)
    return create_engine(url, pool_pre_ping=True)


def parse_towns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.replace("，", ",").split(",") if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(t.strip() for t in items if t and t.strip()))


class TokenStore:
    """The ``api_tokens``, ``audit_log`` and ``audit_subjects`` tables on ``sql_url`` (SQLite or PostgreSQL)."""

    def __init__(self, sql_url: str, *, engine: Engine | None = None) -> None:
        self.url = sql_url
        self.engine = engine if engine is not None else _engine_for(sql_url)
        self._migrated = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenStore:
        return cls(settings.sql_url)

    def migrate(self) -> None:
        with self._lock:
            if not self._migrated:
                upgrade_api_tables(self.engine)  # Alembic history; the API and the workers may start together
                self._migrated = True

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ tokens
    def create(self, name: str, role: str, towns: str | Sequence[str] | None = None) -> str:
        """Create a token and return it (the only time it is visible); store its hash."""
        name = (name or "").strip()
        if not name or len(name) > 128:
            raise TokenError("token name must be 1-128 characters")
        if role not in ROLES:
            raise TokenError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        town_list = parse_towns(towns)
        if role == "caseworker" and not town_list:
            raise TokenError("a caseworker token needs --towns (the towns whose persons it may see)")
        if role != "caseworker" and town_list:
            raise TokenError(f"--towns only applies to caseworker tokens, not {role}")
        self.migrate()
        token = new_token()
        with self.engine.begin() as conn:
            taken = conn.execute(
                select(func.count()).select_from(api_tokens)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            ).scalar_one()
            if taken:
                raise TokenError(f"an active token named {name!r} exists; revoke it first")
            conn.execute(insert(api_tokens).values(
                token_hash=hash_token(token), name=name, role=role, towns=list(town_list), created_at=_now()))
        return token

    def register_hash(self, token: str, name: str, role: str) -> bool:
        """Store an existing token's hash (used for the admin token file); False if known."""
        self.migrate()
        digest = hash_token(token)
        with self.engine.begin() as conn:
            if conn.execute(select(api_tokens.c.name).where(api_tokens.c.token_hash == digest)).first():
                return False
            conn.execute(insert(api_tokens).values(
                token_hash=digest, name=self._free_name(conn, name), role=role, towns=[], created_at=_now()))
        return True

    @staticmethod
    def _free_name(conn: Any, name: str) -> str:
        candidate, n = name, 1
        while conn.execute(select(api_tokens.c.name).where(
                api_tokens.c.name == candidate, api_tokens.c.revoked_at.is_(None))).first():
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def verify(self, token: str) -> Principal | None:
        """The principal of an active token, or None (unknown or revoked)."""
        self.migrate()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.towns)
                .where(api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None))
            ).first()
        if row is None:
            return None
        towns = row.towns if isinstance(row.towns, list) else json.loads(row.towns or "[]")
        return Principal(row.name, row.role, tuple(towns), token_hash=hash_token(token))

    def is_active(self, principal: Principal) -> bool:
        """Whether the token behind ``principal`` is still valid (anonymous: always)."""
        if principal.token_hash is None:
            return principal.anonymous
        self.migrate()
        with self.engine.connect() as conn:
            row = conn.execute(select(api_tokens.c.name).where(
                api_tokens.c.token_hash == principal.token_hash, api_tokens.c.revoked_at.is_(None))).first()
        return row is not None

    def caseworker_towns(self) -> list[tuple[str, ...]]:
        """The distinct town sets of active caseworker tokens (the views small-cell protection
        must hold against: docs/privacy.md)."""
        self.migrate()
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_tokens.c.towns).where(
                api_tokens.c.role == "caseworker", api_tokens.c.revoked_at.is_(None))).all()
        sets = {tuple(sorted(t if isinstance(t, list) else json.loads(t or "[]"))) for (t,) in rows}
        return sorted(s for s in sets if s)

    def list(self, include_revoked: bool = True) -> list[dict[str, Any]]:
        self.migrate()
        stmt = select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.towns, api_tokens.c.created_at,
                      api_tokens.c.revoked_at).order_by(api_tokens.c.created_at, api_tokens.c.name)
        if not include_revoked:
            stmt = stmt.where(api_tokens.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def revoke(self, name: str) -> int:
        """Revoke every active token named ``name``; return how many."""
        self.migrate()
        with self.engine.begin() as conn:
            res = conn.execute(update(api_tokens)
                               .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                               .values(revoked_at=_now()))
        return int(res.rowcount or 0)

    # ------------------------------------------------------------------ audit
    def audit(self, *, principal: Principal | None, method: str, path: str, query: str | None,
              person_id: str | None, status: int, subjects: Iterable[str] = ()) -> int:
        """Write one audit row, and one ``audit_subjects`` row for each person in ``subjects`` (the
        persons a list showed), in one transaction; returns the row's id.  Credentials in the query
        and national ID numbers anywhere are redacted here, so no caller can put one into the log
        (issue 15 item 9)."""
        self.migrate()
        principal = principal or ANONYMOUS
        with self.engine.begin() as conn:
            audit_id = int(conn.execute(insert(audit_log).values(
                at=datetime.now(UTC).isoformat(timespec="milliseconds"), token_name=principal.name,
                role=principal.role, method=method, path=mask_ids(path)[:512], query=safe_query(query),
                person_id=safe_person_id(person_id), status=int(status))).inserted_primary_key[0])
            self._insert_subjects(conn, audit_id, subjects)
        return audit_id

    def add_audit_subjects(self, audit_id: int, person_ids: Iterable[str]) -> None:
        """Name more persons under an audit row already written (an export, batch by batch)."""
        self.add_audit_subjects_of([(audit_id, person_ids)])

    def add_audit_subjects_of(self, named: Sequence[tuple[int, Iterable[str]]]) -> None:
        """Name more persons under several audit rows already written, in one transaction: the open
        streams of an API write the persons of the frames they are about to send together."""
        with self.engine.begin() as conn:
            for audit_id, person_ids in named:
                self._insert_subjects(conn, audit_id, person_ids)

    @staticmethod
    def _insert_subjects(conn: Any, audit_id: int, person_ids: Iterable[str]) -> None:
        named = {safe_person_id(p) for p in person_ids if p}
        if named:
            conn.execute(insert(audit_subjects), [{"audit_id": audit_id, "person_id": p} for p in sorted(named)])

    def audit_rows(self, *, token_name: str | None = None, person_id: str | None = None,
                   limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """Audit rows, newest first; with ``person_id``, every row that named the person or showed
        them in a list or a stream.  ``persons_listed``: how many persons a row's list showed."""
        self.migrate()
        conds = []
        if token_name is not None:
            conds.append(audit_log.c.token_name == token_name)
        if person_id is not None:
            listed = select(audit_subjects.c.audit_id).where(audit_subjects.c.person_id == person_id)
            conds.append(or_(audit_log.c.person_id == person_id, audit_log.c.id.in_(listed)))
        persons_listed = (select(func.count()).select_from(audit_subjects)
                          .where(audit_subjects.c.audit_id == audit_log.c.id).scalar_subquery())
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(audit_log).where(*conds)).scalar_one()
            rows = conn.execute(select(audit_log, persons_listed.label("persons_listed")).where(*conds)
                                .order_by(audit_log.c.id.desc()).limit(limit).offset(offset)).all()
        return {"total": int(total), "items": [dict(r._mapping) for r in rows],
                "archived_before": archived_before(self.engine)}


def ensure_admin_token(settings: Settings, tokens: TokenStore | None = None) -> bool:
    """On a stack's first start write a new admin token to ``settings.admin_token_path`` (mode
    0600) and store its hash; return True if it was created.

    An existing file is kept; if its token is unknown to the database (for example a fresh
    PostgreSQL database for an old home) its hash is registered again.  A token that was revoked
    stays revoked.
    """
    own = tokens is None
    tokens = tokens or TokenStore.from_settings(settings)
    try:
        tokens.migrate()
        path = settings.admin_token_path
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
            if token:
                tokens.register_hash(token, ADMIN_TOKEN_NAME, "admin")
                return False
            path.unlink()
        token = create_secret_file(path, (new_token() + "\n").encode()).decode()  # another process may win
        tokens.register_hash(token, ADMIN_TOKEN_NAME, "admin")
        return True
    finally:
        if own:
            tokens.close()


def is_credential(name: str, value: str) -> bool:
    """Whether a query parameter carries a credential (by its name or by the value's shape)."""
    return name.strip().lower() in CREDENTIAL_PARAMS or bool(CREDENTIAL_VALUE.match(value.strip()))


def safe_query(query: str | None) -> str | None:
    """A query string fit for the audit log: credential values replaced by ``[REDACTED]``, ID-number
    look-alikes masked (parameters are re-encoded; the order is kept)."""
    if not query:
        return None
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return mask_ids(query)
    out = []
    for name, value in pairs:
        shown = REDACTED if is_credential(name, value) else mask_ids(value)
        out.append(f"{quote(mask_ids(name), safe='')}={quote(shown, safe='[]-')}")
    return "&".join(out)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, "" if the header is malformed."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return ""
    return value.strip()


__all__ = [
    "ANONYMOUS", "ROLES", "Principal", "TokenError", "TokenStore", "api_tokens", "audit_log", "audit_subjects",
    "bearer_token", "ensure_admin_token", "hash_token", "is_credential", "new_token", "parse_towns",
    "safe_person_id", "safe_query",
]
