"""``careledger backup DEST`` and ``careledger restore SRC``: what cannot be rebuilt, and only that.

The read models are rebuilt from the log (docs/replay.md), so a backup holds what they are built
from and what nothing else can give back:

* ``events/p<partition>.jsonl.gz`` - every record of ``careledger.events`` as Kafka holds it (key,
  value - sealed fields stay sealed -, original offset and timestamp), read with the replay
  reader's contiguity checks;
* ``keys.sqlite3`` - the key store's rows (wrapped data keys, erasure tombstones), from SQLite or
  PostgreSQL alike; without the master key they open nothing;
* ``api.sqlite3`` - the read API's own tables: bearer tokens (hashes), the audit log, webhook
  subscriptions and their delivery log;
* ``secrets/`` - the HMAC key, master key and webhook key, only with ``--include-secrets``
  (the default leaves them to a secret manager: the key store and the secrets together open every
  sealed field, so keep them apart);
* ``manifest.json`` - what is in it, the record counts per partition, and a SHA-256 per file.

A backup can be taken while the stack runs: the events up to the moment it starts first, then the
key store, which then holds the key of every sealed field in the dump (a key is stored before any
event sealed with it is published).

``restore`` checks every checksum first, refuses a home or topic that already holds data,
re-creates the key store and the API tables, checks that the master key opens the restored keys,
and publishes the records again - same partition, key, value and timestamp, in offset order -
with the publisher's no-loss settings.  The processors then build every projection from the
restored log.  Files are written 0600 in a 0700 directory: the dump holds pseudonymous events and
sealed fields, no raw ID number (careledger never had one), but it is personal data all the same.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import MetaData, create_engine, func, insert, select, text
from sqlalchemy.engine import Engine
from tqdm import tqdm

from careledger.settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
KEYS_FILE = "keys.sqlite3"
API_FILE = "api.sqlite3"
EVENTS_DIR = "events"
SECRETS_DIR = "secrets"
SECRET_NAMES = ("hmac-key", "master-key", "webhook-key")
#: without these a restored stack would pseudonymise ID numbers differently or open no sealed field
REQUIRED_SECRETS = ("hmac-key", "master-key")
ROW_CHUNK = 5000


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says why and what to do."""


@dataclass
class Manifest:
    created_at: str
    topic: str
    partitions: dict[int, dict[str, int]]  # partition -> records, first and last original offset
    files: dict[str, str]  # relative path -> sha256
    secrets: dict[str, str]  # name -> "included" | "environment" | "not included" | "absent"

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "created_at": self.created_at, "topic": self.topic,
                           "partitions": {str(p): v for p, v in sorted(self.partitions.items())},
                           "files": dict(sorted(self.files.items())), "secrets": self.secrets},
                          indent=2, ensure_ascii=False)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackupError(f"{directory / MANIFEST}: not a careledger backup manifest ({exc})") from None
        if data.get("format") != FORMAT:
            raise BackupError(f"{directory / MANIFEST}: backup format {data.get('format')!r}, this careledger "
                              f"reads format {FORMAT}")
        return cls(data["created_at"], data["topic"], {int(p): v for p, v in data["partitions"].items()},
                   data["files"], data["secrets"])

    def verify(self, directory: Path) -> None:
        """Every file listed is there with its checksum (a truncated copy is caught before any write)."""
        for name, digest in self.files.items():
            path = directory / name
            if not path.is_file():
                raise BackupError(f"{path}: missing from the backup")
            if sha256_file(path) != digest:
                raise BackupError(f"{path}: checksum mismatch (the file was changed or truncated)")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def record_line(offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None) -> bytes:
    """One record of the events dump: JSON with the key and value as text (they are UTF-8 JSON;
    anything else is kept in base64 so that a poison record is restored byte for byte)."""
    import base64

    line: dict[str, Any] = {"offset": offset, "timestamp_ms": timestamp_ms}
    for name, raw in (("key", key), ("value", value)):
        if raw is None:
            line[name] = None
            continue
        try:
            line[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            line[name + "_b64"] = base64.b64encode(raw).decode("ascii")
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def parse_record_line(line: bytes) -> tuple[int, int, bytes | None, bytes | None]:
    """``(offset, timestamp_ms, key, value)`` of a :func:`record_line`."""
    import base64

    data = json.loads(line)

    def field(name: str) -> bytes | None:
        if name + "_b64" in data:
            return base64.b64decode(data[name + "_b64"])
        text = data.get(name)
        return None if text is None else str(text).encode("utf-8")

    return int(data["offset"]), int(data["timestamp_ms"]), field("key"), field("value")


# ---- files and tables --------------------------------------------------------------------------
def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def _private_file(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _sqlite_file(path: Path) -> Engine:
    with _private_file(path):
        pass
    return create_engine(f"sqlite:///{path}")


def copy_tables(source: Engine, target: Engine, metadata: MetaData, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows of ``tables`` from ``source`` into ``target`` (tables created there if missing), read
    in one transaction so that they are consistent with each other; returns rows per table.
    A table the source does not have yet (the API never ran) is copied as empty."""
    from sqlalchemy import inspect

    present = set(inspect(source).get_table_names())
    metadata.create_all(target, tables=[metadata.tables[name] for name in tables])
    copied: dict[str, int] = {}
    with source.connect() as read, target.begin() as write:
        if source.dialect.name == "postgresql":  # one snapshot for every table, as SQLite gives
            read = read.execution_options(isolation_level="REPEATABLE READ")
        with read.begin():
            for name in tables:
                table = metadata.tables[name]
                copied[name] = 0
                if name not in present:
                    continue
                result = read.execution_options(stream_results=True).execute(select(table))
                while rows := result.fetchmany(ROW_CHUNK):
                    write.execute(insert(table), [dict(row._mapping) for row in rows])
                    copied[name] += len(rows)
            if target.dialect.name == "postgresql":
                _advance_sequences(write, [metadata.tables[name] for name in tables])
    return copied


def _advance_sequences(conn: Any, tables: list[Any]) -> None:
    """Rows copied with their ids leave PostgreSQL's serial sequences behind: move them past."""
    for table in tables:
        for column in table.primary_key.columns:
            if column.autoincrement is True:
                # names from our own table definitions, never from input
                sql = (f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608
                       f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)")
                conn.execute(text(sql))


def _row_count(engine: Engine, metadata: MetaData, name: str) -> int:
    from sqlalchemy import inspect

    if name not in inspect(engine).get_table_names():
        return 0
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one())


def _keystore_metadata() -> tuple[MetaData, tuple[str, ...]]:
    from producers import keystore

    return keystore.metadata, ("person_keys", "tombstones", "keystore_meta")


def _api_metadata() -> tuple[MetaData, tuple[str, ...]]:
    from projections.api import auth, subscriptions

    merged = MetaData()
    for table in (*auth.metadata.tables.values(), *subscriptions.metadata.tables.values()):
        table.to_metadata(merged)
    return merged, ("api_tokens", "audit_log", "webhook_subscriptions", "webhook_deliveries")


def _keystore_engine(settings: Settings) -> Engine:
    from producers.keystore import KeyStore

    return KeyStore._make_engine(settings.keystore_db_url)


def _api_engine(settings: Settings) -> Engine:
    from projections.api.subscriptions import sql_engine

    return sql_engine(settings.sql_url)


# ---- backup ------------------------------------------------------------------------------------
def backup(settings: Settings, dest: Path, *, include_secrets: bool = False, progress: bool | None = None,
           out: IO[str] = sys.stdout) -> Manifest:
    """Write a backup of ``settings``' stack into the new directory ``dest``."""
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: a backup goes into a new directory")
    _private_dir(dest)
    files: list[str] = []

    # events first: a data key is stored before any event sealed with it is published, so a key
    # store copied after the dump holds the key of every sealed field in it
    partitions = _backup_events(settings, dest, progress)
    files += [f"{EVENTS_DIR}/p{p}.jsonl.gz" for p in sorted(partitions)]
    total = sum(v["records"] for v in partitions.values())
    print(f"events: {total} records from {len(partitions)} partitions of {settings.topics.events}", file=out)

    metadata, tables = _keystore_metadata()
    rows = copy_tables(_keystore_engine(settings), _sqlite_file(dest / KEYS_FILE), metadata, tables)
    files.append(KEYS_FILE)
    print(f"key store: {rows['person_keys']} data keys, {rows['tombstones']} erasure tombstones", file=out)

    metadata, tables = _api_metadata()
    rows = copy_tables(_api_engine(settings), _sqlite_file(dest / API_FILE), metadata, tables)
    files.append(API_FILE)
    print("read API: " + ", ".join(f"{n} {name}" for name, n in rows.items()), file=out)

    secrets = _backup_secrets(settings, dest, include_secrets)
    files += [f"{SECRETS_DIR}/{name}" for name, state in secrets.items() if state == "included"]
    for name, state in secrets.items():
        print(f"secret {name}: {state}", file=out)


    manifest = Manifest(datetime.now(UTC).isoformat(timespec="seconds"), settings.topics.events, partitions,
                        {name: sha256_file(dest / name) for name in files}, secrets)
    with _private_file(dest / MANIFEST) as fh:
        fh.write(manifest.to_json().encode("utf-8"))
    print(f"backup written to {dest}", file=out)
    return manifest


def _backup_secrets(settings: Settings, dest: Path, include: bool) -> dict[str, str]:
    states: dict[str, str] = {}
    for name in SECRET_NAMES:
        path = settings.secrets_dir / name
        if os.environ.get(f"CARELEDGER_{name.upper().replace('-', '_')}"):
            states[name] = "environment"  # kept in the operator's secret manager, not in files
        elif not path.exists():
            states[name] = "absent"
        elif not include:
            states[name] = "not included"
        else:
            _private_dir(dest / SECRETS_DIR)
            with _private_file(dest / SECRETS_DIR / name) as fh:
                fh.write(settings.secret(name, create=False))
            states[name] = "included"
    return states


def _backup_events(settings: Settings, dest: Path, progress: bool | None) -> dict[int, dict[str, int]]:
    from processors.replay.reader import log_bounds, read_log

    starts, ends = log_bounds(settings)
    _private_dir(dest / EVENTS_DIR)
    partitions = {p: {"records": 0, "first_offset": -1, "last_offset": -1} for p in ends}
    handles = {p: gzip.GzipFile(fileobj=_private_file(dest / EVENTS_DIR / f"p{p}.jsonl.gz"), mode="wb",
                                compresslevel=1) for p in ends}
    bar = tqdm(total=sum(ends[p] - starts.get(p, 0) for p in ends), unit="rec", desc="backup events",
               disable=None if progress is None else not progress, leave=False, file=sys.stderr)
    try:
        for batch in read_log(settings, starts, ends):
            for r in batch:
                handles[r.partition].write(record_line(r.offset, r.timestamp_ms, r.key, r.value))
                info = partitions[r.partition]
                info["records"] += 1
                info["last_offset"] = r.offset
                if info["first_offset"] < 0:
                    info["first_offset"] = r.offset
            bar.update(len(batch))
    finally:
        bar.close()
        for handle in handles.values():
            fileobj = handle.fileobj
            handle.close()
            if fileobj is not None:
                fileobj.close()
    return partitions


# ---- check -------------------------------------------------------------------------------------
def check(src: Path, *, out: IO[str] = sys.stdout) -> Manifest:
    """Read a backup end to end without writing anything: the checksums, every record of every
    dump (in offset order, counted against the manifest) and the integrity of the SQLite files.
    What an operator runs on the copy that went to the tape, long before a restore needs it."""
    import sqlite3

    manifest = Manifest.read(src)
    manifest.verify(src)
    for partition, info in sorted(manifest.partitions.items()):
        path = src / EVENTS_DIR / f"p{partition}.jsonl.gz"
        count, last = 0, -1
        try:
            for offset, _, _, _ in _dump_records(path):
                if offset <= last:
                    raise BackupError(f"{path}: offset {offset} after {last}: records out of order")
                count, last = count + 1, offset
        except (OSError, EOFError, ValueError, KeyError) as exc:
            raise BackupError(f"{path}: unreadable after {count} records ({type(exc).__name__}: {exc})") from None
        if count != info["records"]:
            raise BackupError(f"{path}: {count} records, the manifest says {info['records']}")
    rows: dict[str, int] = {}
    for name, tables in ((KEYS_FILE, ("person_keys", "tombstones")), (API_FILE, ("api_tokens", "audit_log"))):
        conn = sqlite3.connect(f"file:{src / name}?mode=ro", uri=True)
        try:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"{src / name}: {verdict}")
            for table in tables:
                rows[table] = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
        finally:
            conn.close()
    records = sum(info["records"] for info in manifest.partitions.values())
    print(f"backup of {manifest.created_at}: {records} records of {manifest.topic} in "
          f"{len(manifest.partitions)} partitions, {rows['person_keys']} data keys, "
          f"{rows['tombstones']} erasure tombstones, {rows['api_tokens']} API tokens, "
          f"{rows['audit_log']} audit rows; secrets: "
          + ", ".join(f"{name} {state}" for name, state in manifest.secrets.items()), file=out)
    print("every file matches its checksum and reads to the end", file=out)
    return manifest


# ---- restore -----------------------------------------------------------------------------------
def restore(settings: Settings, src: Path, *, progress: bool | None = None, out: IO[str] = sys.stdout) -> int:
    """Restore the backup in ``src`` into ``settings``' (empty) stack; returns records published."""
    manifest = Manifest.read(src)
    manifest.verify(src)
    settings.home.mkdir(parents=True, exist_ok=True)
    _refuse_existing_state(settings)
    _restore_secrets(settings, src, manifest)

    metadata, tables = _keystore_metadata()
    rows = copy_tables(create_engine(f"sqlite:///{src / KEYS_FILE}"), _keystore_engine(settings), metadata, tables)
    _check_master_key(settings)
    print(f"key store: {rows['person_keys']} data keys, {rows['tombstones']} erasure tombstones restored", file=out)

    metadata, tables = _api_metadata()
    rows = copy_tables(create_engine(f"sqlite:///{src / API_FILE}"), _api_engine(settings), metadata, tables)
    print("read API: " + ", ".join(f"{n} {name}" for name, n in rows.items()) + " restored", file=out)

    published = _restore_events(settings, src, manifest, progress)
    print(f"events: {published} records published to {settings.topics.events}; start the processors "
          "(make up, or careledger process) to build the projections from them", file=out)
    return published


def _refuse_existing_state(settings: Settings) -> None:
    from infra.kafka_broker import ensure_topics
    from processors.replay.reader import log_bounds

    keys_metadata, _ = _keystore_metadata()
    engine = _keystore_engine(settings)
    if _row_count(engine, keys_metadata, "person_keys") or _row_count(engine, keys_metadata, "tombstones"):
        raise BackupError("the key store already holds keys: restore goes into a fresh CARELEDGER_HOME "
                          "(and a fresh key store database)")
    ensure_topics(settings)
    starts, ends = log_bounds(settings)
    if any(ends[p] > starts.get(p, 0) for p in ends):
        raise BackupError(f"{settings.topics.events} already holds records: restore needs an empty topic "
                          "(a new broker, or another CARELEDGER_TOPIC_NAMESPACE)")


def _restore_secrets(settings: Settings, src: Path, manifest: Manifest) -> None:
    for name, state in manifest.secrets.items():
        target = settings.secrets_dir / name
        if state != "included":
            continue
        value = (src / SECRETS_DIR / name).read_bytes().strip()
        try:
            current = settings.secret(name, create=False)
        except FileNotFoundError:
            current = None
        if current is not None and current != value:
            raise BackupError(f"secret {name} is already set here and differs from the backup's; "
                              f"remove it ({target} or CARELEDGER_{name.upper().replace('-', '_')}) to use the backup's")
        if current is None:
            _private_dir(settings.secrets_dir)
            with _private_file(target) as fh:
                fh.write(value)
    for name in REQUIRED_SECRETS:  # never let a new key be generated: pseudonyms and seals would change
        try:
            settings.secret(name, create=False)
        except FileNotFoundError:
            raise BackupError(f"restore needs the backed-up stack's {name}: put it in {settings.secrets_dir / name} "
                              f"(mode 0600) or CARELEDGER_{name.upper().replace('-', '_')}, or use a backup "
                              "made with --include-secrets") from None


def _check_master_key(settings: Settings) -> None:
    """The restored data keys must open with the master key now configured."""
    from producers.keystore import KeyStore, MasterKeyMismatch, person_keys

    try:
        store = KeyStore.from_settings(settings)
    except FileNotFoundError as exc:
        raise BackupError(f"{exc}: restore needs the master key of the backed-up stack") from None
    with store.engine.connect() as conn:
        sample = conn.execute(select(person_keys.c.person_id).limit(1)).scalar()
    if sample is not None:
        try:
            store.lookup([sample])
        except MasterKeyMismatch as exc:
            raise BackupError(f"{exc}: restore needs the master key of the backed-up stack") from None


def _restore_events(settings: Settings, src: Path, manifest: Manifest, progress: bool | None) -> int:
    from producers.publisher import PublishError

    available = _partition_counts(settings)
    needed = max(manifest.partitions, default=-1) + 1
    if len(available) < needed:
        raise BackupError(f"{settings.topics.events} has {len(available)} partitions, the backup needs {needed} "
                          "(CARELEDGER_EVENT_PARTITIONS)")
    total = sum(v["records"] for v in manifest.partitions.values())
    bar = tqdm(total=total, unit="rec", desc="restore events", disable=None if progress is None else not progress,
               leave=False, file=sys.stderr)
    failures: list[str] = []
    producer = _restore_producer(settings)
    published = 0
    try:
        for partition in sorted(manifest.partitions):
            for offset, timestamp_ms, key, value in _dump_records(src / EVENTS_DIR / f"p{partition}.jsonl.gz"):
                future = producer.send(settings.topics.events, key=key, value=value, partition=partition,
                                       timestamp_ms=timestamp_ms)
                future.add_errback(lambda exc, o=offset, p=partition: failures.append(f"{p}/{o}: {exc}"))
                published += 1
                bar.update(1)
        producer.flush()
    finally:
        bar.close()
        producer.close()
    if failures:
        raise BackupError(str(PublishError(failures)) + "; restore into a fresh topic again")
    counts = _partition_counts(settings)
    for partition, info in manifest.partitions.items():
        if counts.get(partition, 0) != info["records"]:
            raise BackupError(f"partition {partition}: {counts.get(partition, 0)} records on the topic after the "
                              f"restore, the backup has {info['records']}")
    return published


def _restore_producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    from producers.publisher import PRODUCER_DEFAULTS

    return KafkaProducer(**settings.kafka_client_options(), **{**PRODUCER_DEFAULTS, "client_id": "careledger-restore"})


def _dump_records(path: Path) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield parse_record_line(line)


def _partition_counts(settings: Settings) -> dict[int, int]:
    """Records per partition of the events topic (careledger's producers leave no offset gaps)."""
    from processors.replay.reader import log_bounds

    starts, ends = log_bounds(settings)
    return {p: ends[p] - starts.get(p, 0) for p in ends}
