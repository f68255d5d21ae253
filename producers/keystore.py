"""Envelope encryption of sensitive payload fields, per person (crypto-shredding, docs/privacy.md).

* Each person has a random 32-byte data key (DEK).  It is stored only wrapped (AES-256-GCM) under
  the master key (KEK, derived with HKDF-SHA256 from ``settings.secret("master-key")``), bound to
  the person (AAD), in the key store: a SQL database of its own (``settings.keystore_db_url``,
  default ``sqlite:///$CARELEDGER_HOME/keys.sqlite3``) - never in Kafka, never in a projection.
* The producer replaces the sensitive fields of ``schemas.privacy.SENSITIVE_FIELDS`` by
  ``sealed = {"v":1,"alg":"AES-256-GCM","kid":...,"nonce":b64,"ct":b64}``: the JSON of those
  fields, AAD = event_id + person_id + type (a box cannot be moved to another event or person).
* ``forget(person_id)`` deletes the DEK row (SQLite: ``secure_delete`` + ``VACUUM`` so the wrapped
  bytes leave the file) and records a tombstone.  Every sealed field of that person on the
  immutable log is unreadable from then on.  A ``generation`` counter bumped by every forget lets
  long-lived caches notice.
* Tombstones are unlinkable: a row holds only ``person_digest`` = HMAC(erasure key, "forgotten|" +
  pseudonym) and the time.  The tombstone id the projections' erased rows carry is HMAC(erasure key,
  "tombstone|" + pseudonym), computed when an event of the person is read (live or replay, so both
  give the same id) and stored nowhere.  Without the master key (from which the erasure key is
  derived) the key store and its backups link no tombstone id, and no forgotten person, to a
  pseudonym; with it, only someone who already has a person's pseudonym can test it.
* Schema: an Alembic history of its own (``producers/keystore_migrations``, ``careledger/migrations.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, MetaData, String, Table, Text, create_engine, delete, event, select, update
from sqlalchemy.engine import Connection, Engine

from careledger.migrations import KEYSTORE, upgrade
from careledger.settings import Settings
from schemas.jsontext import dumps_canonical
from schemas.privacy import SEALED_KEY, has_plain_sensitive, sensitive_fields

MASTER_KEY_SECRET = "master-key"
ALG = "AES-256-GCM"
BOX_VERSION = 1
IN_CHUNK = 500
GENERATION = "generation"

metadata = MetaData()
person_keys = Table(
    "person_keys", metadata,
    Column("person_id", String(128), primary_key=True),
    Column("kid", String(64), nullable=False),
    Column("wrapped", Text, nullable=False),  # b64(nonce + AES-GCM(KEK, DEK, aad=person))
    Column("created_at", String(40), nullable=False),
)
tombstones = Table(
    "tombstones", metadata,
    Column("person_digest", String(64), primary_key=True),  # KeyStore.forgotten_digest(pseudonym)
    Column("forgotten_at", String(40), nullable=False),
)
keystore_meta = Table(
    "keystore_meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(64), nullable=False),
)


class KeyStoreError(RuntimeError):
    """Base class of key store errors (messages never carry key material)."""


class PersonForgotten(KeyStoreError):  # noqa: N818 - reads as a fact, like FileNotFoundError
    """The person was erased (``careledger forget``): no new data key, no new sealed data."""

    def __init__(self, person_id: str) -> None:
        super().__init__(f"person {person_id} was erased (careledger forget); their events are no longer accepted")
        self.person_id = person_id


class MasterKeyMismatch(KeyStoreError):  # noqa: N818
    """A wrapped data key does not open under the configured master key: a configuration error
    (wrong CARELEDGER_MASTER_KEY / secrets file), never a reason to erase data."""


class SealedDataError(KeyStoreError):
    """A sealed box does not open under its person's key (tampered or mismatched): poison."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def derive_kek(secret: bytes, purpose: bytes = b"careledger master-key v1") -> bytes:
    if not secret:
        raise ValueError("the master key must not be empty")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


ERASURE_KEY_PURPOSE = b"careledger erasure v1"


class Forgotten:
    """Who is forgotten, as of one read of the key store: a container of pseudonyms that lists
    none (``pid in forgotten``, ``forgotten[pid]`` -> that person's tombstone id)."""

    def __init__(self, digests: frozenset[str], keystore: KeyStore) -> None:
        self._digests = digests
        self._keystore = keystore

    def __contains__(self, person_id: object) -> bool:
        # nobody forgotten (the usual case): no digest to compute for every event of an ingest
        return (bool(self._digests) and isinstance(person_id, str)
                and self._keystore.forgotten_digest(person_id) in self._digests)

    def __getitem__(self, person_id: str) -> str:
        if person_id not in self:
            raise KeyError(person_id)
        return self._keystore.tombstone_id(person_id)

    def get(self, person_id: str, default: str | None = None) -> str | None:
        return self[person_id] if person_id in self else default

    def including(self, person_ids: Iterable[str]) -> Forgotten:
        """This set plus persons found forgotten since (``KeyStore.lookup``)."""
        return Forgotten(self._digests | {self._keystore.forgotten_digest(p) for p in person_ids}, self._keystore)

    def __len__(self) -> int:
        return len(self._digests)


@dataclass(frozen=True)
class Erasure:
    """What ``KeyStore.erase`` did, for a summary that is true."""

    tombstone_id: str
    key_destroyed: bool  # a data key existed and is gone now
    newly_forgotten: bool  # False: the person had been forgotten before
    forgotten_at: str


def _wrap_aad(person_id: str) -> bytes:
    return b"careledger-dek|v1|" + person_id.encode("utf-8")


def event_aad(event: dict[str, Any]) -> bytes:
    """What a sealed box is bound to: event_id + person_id (+ type)."""
    return "careledger-event|v1|{}|{}|{}".format(event["event_id"], event.get("person_id") or "",
                                                event["type"]).encode("utf-8")


class _Nonces:
    """96-bit AES-GCM nonces from the OS's CSPRNG, read 1,024 at a time: one ``getrandom`` call per
    nonce was ~17 µs on this VM under cProfile, a quarter of sealing (docs/performance.md).  The buffer is
    refilled in a forked child (never shared by two processes) and each nonce is handed out once."""

    SIZE = 12
    BATCH = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._buffer = b""
        self._at = 0

    def take(self) -> bytes:
        with self._lock:
            if self._pid != os.getpid() or self._at >= len(self._buffer):
                self._pid, self._buffer, self._at = os.getpid(), os.urandom(self.SIZE * self.BATCH), 0
            nonce = self._buffer[self._at:self._at + self.SIZE]
            self._at += self.SIZE
            return nonce


_nonces = _Nonces()


def seal_event(event: dict[str, Any], kid: str, dek: bytes) -> dict[str, Any]:
    """A copy of ``event`` whose sensitive payload fields are in ``sealed`` (unchanged if none)."""
    fields = sensitive_fields(event["type"])
    payload = event.get("payload") or {}
    secret_part = {name: payload[name] for name in fields if name in payload}
    if not secret_part:
        return event
    nonce = _nonces.take()
    plaintext = dumps_canonical(secret_part).encode("utf-8")
    ct = AESGCM(dek).encrypt(nonce, plaintext, event_aad(event))
    out = dict(event)
    out["payload"] = {k: v for k, v in payload.items() if k not in secret_part}
    out[SEALED_KEY] = {"v": BOX_VERSION, "alg": ALG, "kid": kid, "nonce": _b64(nonce), "ct": _b64(ct)}
    return out


def open_box(event: dict[str, Any], dek: bytes) -> dict[str, Any]:
    """The sensitive fields inside ``event["sealed"]``; raises :class:`SealedDataError`."""
    box = event[SEALED_KEY]
    try:
        plaintext = AESGCM(dek).decrypt(_unb64(box["nonce"]), _unb64(box["ct"]), event_aad(event))
        fields = json.loads(plaintext)
    except (InvalidTag, ValueError, KeyError) as exc:
        raise SealedDataError(
            f"event {event.get('event_id')!r}: sealed fields do not open ({type(exc).__name__})") from None
    allowed = set(sensitive_fields(event["type"]))
    if not isinstance(fields, dict) or not set(fields) <= allowed:
        raise SealedDataError(f"event {event.get('event_id')!r}: sealed box holds unexpected fields")
    return fields


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore:
    """Per-person data keys (wrapped) and erasure tombstones in one SQL database."""

    def __init__(self, url: str, master_key: bytes) -> None:
        self.url = url
        self._kek = AESGCM(derive_kek(master_key))
        self._erasure_key = derive_kek(master_key, ERASURE_KEY_PURPOSE)
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()
        self.engine = self._make_engine(url)
        self.dialect = self.engine.dialect.name
        # the worker, the API and an import may start together: the runner serialises them
        upgrade(self.engine, KEYSTORE, forgotten_digest=self.forgotten_digest)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        if settings.keystore_db_url.startswith("sqlite:///"):
            settings.home.mkdir(parents=True, exist_ok=True)
        return cls(settings.keystore_db_url, settings.secret(MASTER_KEY_SECRET))

    @staticmethod
    def _make_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            path = url.removeprefix("sqlite:///")
            if path and not path.startswith(":memory:") and not os.path.exists(path):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)  # wrapped keys: owner only
                os.close(fd)
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA secure_delete=ON")  # deleted keys are overwritten with zeros
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            return engine
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return create_engine(url, pool_pre_ping=True)

    def _insert(self) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    # ---- keys ----------------------------------------------------------------------------
    def _unwrap(self, person_id: str, wrapped: str) -> bytes:
        raw = _unb64(wrapped)
        try:
            return self._kek.decrypt(raw[:12], raw[12:], _wrap_aad(person_id))
        except InvalidTag:
            raise MasterKeyMismatch(
                "a data key in the key store does not open with the configured master key "
                "(check CARELEDGER_MASTER_KEY / secrets/master-key)") from None

    # ---- erasure identities ----------------------------------------------------------------
    def forgotten_digest(self, person_id: str) -> str:
        """What the tombstones table stores for a forgotten pseudonym (keyed: not testable without
        the master key)."""
        digest = self._digests.get(person_id)
        if digest is None:
            digest = hmac.new(self._erasure_key, b"forgotten|" + person_id.encode(), hashlib.sha256).hexdigest()
            if len(self._digests) > 500_000:
                self._digests.clear()
            self._digests[person_id] = digest
        return digest

    def tombstone_id(self, person_id: str) -> str:
        """The id a forgotten person's erased rows carry in every projection (stored nowhere)."""
        return "x" + hmac.new(self._erasure_key, b"tombstone|" + person_id.encode(), hashlib.sha256).hexdigest()[:32]

    def lookup(self, person_ids: Iterable[str]) -> tuple[dict[str, tuple[str, bytes]], dict[str, str]]:
        """Keys ``{pid: (kid, dek)}`` and tombstones ``{pid: tombstone_id}`` of these persons."""
        ids = sorted(set(person_ids))
        keys: dict[str, tuple[str, bytes]] = {}
        tombs: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), IN_CHUNK):
                chunk = ids[i:i + IN_CHUNK]
                for pid, kid, wrapped in conn.execute(
                        select(person_keys.c.person_id, person_keys.c.kid, person_keys.c.wrapped)
                        .where(person_keys.c.person_id.in_(chunk))):
                    keys[pid] = (kid, self._unwrap(pid, wrapped))
                for pid in self._tombstoned_in(conn, chunk):
                    tombs[pid] = self.tombstone_id(pid)
        for pid in tombs:  # a forgotten person never has a usable key
            keys.pop(pid, None)
        return keys, tombs

    def _tombstoned(self, person_ids: list[str]) -> list[str]:
        """Which of these persons were forgotten (no key is read or opened)."""
        with self.engine.connect() as conn:
            return [pid for i in range(0, len(person_ids), IN_CHUNK)
                    for pid in self._tombstoned_in(conn, person_ids[i:i + IN_CHUNK])]

    def _tombstoned_in(self, conn: Connection, chunk: list[str]) -> list[str]:
        """The forgotten among at most ``IN_CHUNK`` persons (tombstones hold keyed digests only)."""
        by_digest = {self.forgotten_digest(pid): pid for pid in chunk}
        return [by_digest[digest] for (digest,) in conn.execute(
            select(tombstones.c.person_digest).where(tombstones.c.person_digest.in_(list(by_digest))))]

    def get_or_create(self, person_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """Data keys of these persons, creating the missing ones; raises :class:`PersonForgotten`."""
        wanted = sorted(set(person_ids))
        keys, tombs = self.lookup(wanted)
        if tombs:
            raise PersonForgotten(sorted(tombs)[0])
        missing = [pid for pid in wanted if pid not in keys]
        if missing:
            rows, made = [], {}
            for pid in missing:
                dek, nonce = os.urandom(32), os.urandom(12)
                kid = "k" + secrets.token_hex(6)
                made[pid] = (kid, dek)
                rows.append({"person_id": pid, "kid": kid,
                             "wrapped": _b64(nonce + self._kek.encrypt(nonce, dek, _wrap_aad(pid))),
                             "created_at": _now()})
            with self._lock, self.engine.begin() as conn:
                inserted = {pid for (pid,) in conn.execute(
                    self._insert()(person_keys).on_conflict_do_nothing().returning(person_keys.c.person_id), rows)}
            if inserted == set(missing):  # every key is ours: only a forget meanwhile can change the answer
                forgotten = self._tombstoned(missing)
                keys.update(made)
            else:  # a concurrent creator won for some: use its keys
                keys, tombs = self.lookup(wanted)
                forgotten = sorted(tombs)
            if forgotten:
                raise PersonForgotten(sorted(forgotten)[0])
        return keys

    # ---- erasure -------------------------------------------------------------------------
    def forget(self, person_id: str) -> str:
        """Destroy the person's data key and record the tombstone; return the tombstone id (the
        same however often the person is forgotten).  Idempotent."""
        return self.erase(person_id).tombstone_id

    def erase(self, person_id: str) -> Erasure:
        """:meth:`forget`, saying what it did (was there a key to destroy, was it the first time)."""
        digest = self.forgotten_digest(person_id)
        with self._lock:
            with self.engine.begin() as conn:
                at = conn.scalar(select(tombstones.c.forgotten_at).where(tombstones.c.person_digest == digest))
                newly = at is None
                if newly:
                    at = _now()
                    conn.execute(tombstones.insert().values(person_digest=digest, forgotten_at=at))
                destroyed = conn.execute(delete(person_keys).where(person_keys.c.person_id == person_id)).rowcount
                current = conn.scalar(select(keystore_meta.c.value).where(keystore_meta.c.name == GENERATION))
                if current is None:
                    conn.execute(keystore_meta.insert().values(name=GENERATION, value="1"))
                else:
                    conn.execute(update(keystore_meta).where(keystore_meta.c.name == GENERATION)
                                 .values(value=str(int(current) + 1)))
            self._scrub()
        return Erasure(self.tombstone_id(person_id), bool(destroyed), newly, str(at))

    def _scrub(self) -> None:
        """Make deleted key bytes leave the database files (SQLite: VACUUM; PostgreSQL: VACUUM)."""
        raw = self.engine.raw_connection()
        driver: Any = raw.driver_connection
        try:
            if self.dialect == "sqlite":
                before = driver.isolation_level
                driver.isolation_level = None
                try:
                    driver.execute("VACUUM")
                finally:
                    driver.isolation_level = before
            elif self.dialect == "postgresql":
                driver.autocommit = True
                try:
                    driver.execute("VACUUM person_keys")
                finally:
                    driver.autocommit = False
        finally:
            raw.close()

    def generation(self) -> int:
        with self.engine.connect() as conn:
            value = conn.scalar(select(keystore_meta.c.value).where(keystore_meta.c.name == GENERATION))
        return int(value or 0)

    def forgotten(self) -> Forgotten:
        """Everyone forgotten so far (tests membership; lists no one)."""
        with self.engine.connect() as conn:
            return Forgotten(frozenset(conn.scalars(select(tombstones.c.person_digest))), self)

    tombstones = forgotten  # the name of earlier releases

    def tombstone_rows(self) -> list[dict[str, str]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(tombstones))]

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:  # never show key material
        return f"KeyStore({self.dialect})"


class Sealer:
    """Producer side: seals events, caching data keys (a forget anywhere empties the cache
    within ``recheck_s`` seconds through the key store's generation counter)."""

    def __init__(self, keystore: KeyStore, *, cache_size: int = 100_000, recheck_s: float = 1.0) -> None:
        self.keystore = keystore
        self._cache: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._cache_size = cache_size
        self._recheck_s = recheck_s
        self._generation = keystore.generation()
        self._tombstones = keystore.forgotten()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        return cls(KeyStore.from_settings(settings))

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._recheck_s:
            return
        self._checked = now
        generation = self.keystore.generation()
        if generation != self._generation:
            self._generation = generation
            self._cache.clear()
            self._tombstones = self.keystore.forgotten()

    def check(self, person_id: str) -> None:
        """Raise :class:`PersonForgotten` if the person was erased."""
        with self._lock:
            self._fresh()
            if person_id in self._tombstones:
                raise PersonForgotten(person_id)

    def keys(self, person_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        with self._lock:
            self._fresh()
            wanted = set(person_ids)
            found = {pid: self._cache[pid] for pid in wanted if pid in self._cache}
            missing = wanted - set(found)
            if missing:
                created = self.keystore.get_or_create(missing)
                found.update(created)
                self._cache.update(created)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return found

    def seal(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` with its sensitive fields sealed; raises :class:`PersonForgotten` for any
        event of an erased person (sensitive fields or not: they are no longer accepted)."""
        fields = sensitive_fields(event.get("type", ""))
        payload = event.get("payload") or {}
        if event.get("person_id"):
            self.check(event["person_id"])
        if not fields or not any(name in payload for name in fields) or SEALED_KEY in event:
            return event
        person_id = event.get("person_id")
        if not person_id:
            raise ValueError("seal: the event has no person_id (pseudonymise id_number first)")
        kid, dek = self.keys([person_id])[person_id]
        return seal_event(event, kid, dek)

    def __repr__(self) -> str:
        return "Sealer(<keys>)"


class LazySealer:
    """A :class:`Sealer` opened on first use (front-ends that may never see a person event)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sealer: Sealer | None = None
        self._lock = threading.Lock()

    def seal(self, event: dict[str, Any]) -> dict[str, Any]:
        if not event.get("person_id") and not has_plain_sensitive(event):
            return event
        return self._open().seal(event)

    def keys(self, person_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """Fetch (creating the missing ones in one transaction) and cache these persons' keys."""
        return self._open().keys(person_ids)

    def check(self, person_id: str) -> None:
        self._open().check(person_id)

    def _open(self) -> Sealer:
        if self._sealer is None:
            with self._lock:
                if self._sealer is None:
                    self._sealer = Sealer.from_settings(self.settings)
        return self._sealer

    def __repr__(self) -> str:
        return "LazySealer(<keys>)"


__all__ = [
    "Erasure", "Forgotten", "LazySealer",
    "KeyStore", "KeyStoreError", "MasterKeyMismatch", "PersonForgotten", "SealedDataError", "Sealer",
    "derive_kek", "event_aad", "open_box", "seal_event",
]
