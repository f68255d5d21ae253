"""``careledger restore [--check] SRC``: verify, refuse a target that holds data, then put everything back."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine, select
from tqdm import tqdm

from careledger.settings import Settings, secret_env_var
from infra.backups.layout import (
    API_FILE,
    EVENTS_DIR,
    KEYS_FILE,
    REQUIRED_SECRETS,
    SECRETS_DIR,
    BackupError,
    Manifest,
    dump_records,
    private_dir,
    private_file,
)
from infra.backups.tables import (
    api_engine,
    api_tables,
    copy_tables,
    keystore_engine,
    keystore_tables,
    row_count,
    upgraded_keystore_copy,
)


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
            for offset, _, _, _ in dump_records(path):
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


def restore(settings: Settings, src: Path, *, progress: bool | None = None, out: IO[str] = sys.stdout) -> int:
    """Restore the backup in ``src`` into ``settings``' (empty) stack; returns records published."""
    manifest = Manifest.read(src)
    manifest.verify(src)
    settings.home.mkdir(parents=True, exist_ok=True)
    _refuse_existing_state(settings)
    _restore_secrets(settings, src, manifest)

    metadata, tables = keystore_tables()
    with tempfile.TemporaryDirectory(prefix="careledger-restore-") as work:
        # _restore_secrets made sure the backed-up stack's master key is here (unless it never had one)
        source = upgraded_keystore_copy(src / KEYS_FILE, Path(work), settings.secret("master-key"))
        rows = copy_tables(source, keystore_engine(settings), metadata, tables)
        source.dispose()
    _check_master_key(settings)
    print(f"key store: {rows['person_keys']} data keys, {rows['tombstones']} erasure tombstones restored", file=out)

    metadata, tables = api_tables()
    rows = copy_tables(create_engine(f"sqlite:///{src / API_FILE}"), api_engine(settings), metadata, tables)
    print("read API: " + ", ".join(f"{n} {name}" for name, n in rows.items()) + " restored", file=out)

    published = _restore_events(settings, src, manifest, progress)
    print(f"events: {published} records published to {settings.topics.events}; start the processors "
          "(make up, or careledger process) to build the projections from them", file=out)
    return published


def _refuse_existing_state(settings: Settings) -> None:
    from infra.kafka_broker import ensure_topics

    keys_metadata, _ = keystore_tables()
    engine = keystore_engine(settings, upgrade=False)  # no master key may be created before the backup's
    if row_count(engine, keys_metadata, "person_keys") or row_count(engine, keys_metadata, "tombstones"):
        raise BackupError("the key store already holds keys: restore goes into a fresh CARELEDGER_HOME "
                          "(and a fresh key store database)")
    ensure_topics(settings)
    if any(_partition_counts(settings).values()):
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
                              f"remove it ({target} or {secret_env_var(name)}) to use the backup's")
        if current is None:
            private_dir(settings.secrets_dir)
            with private_file(target) as fh:
                fh.write(value)
    for name in REQUIRED_SECRETS:  # never let a new key be generated: pseudonyms and seals would change
        if manifest.secrets.get(name) == "absent":
            continue  # the backed-up stack never made one: nothing depends on it yet
        try:
            settings.secret(name, create=False)
        except FileNotFoundError:
            raise BackupError(f"restore needs the backed-up stack's {name}: put it in {settings.secrets_dir / name} "
                              f"(mode 0600) or {secret_env_var(name)}, or use a backup "
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
    from kafka.errors import KafkaError

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
            for offset, timestamp_ms, key, value in dump_records(src / EVENTS_DIR / f"p{partition}.jsonl.gz"):
                future = producer.send(settings.topics.events, key=key, value=value, partition=partition,
                                       timestamp_ms=timestamp_ms)
                future.add_errback(lambda exc, o=offset, p=partition: failures.append(f"{p}/{o}: {exc}"))
                published += 1
                bar.update(1)
        producer.flush()
    except KafkaError as exc:
        raise BackupError(f"Kafka refused the restore after {published} records ({type(exc).__name__}: {exc}); "
                          "restore into a fresh home and topic again") from None
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


def _partition_counts(settings: Settings) -> dict[int, int]:
    """Records per partition of the events topic (careledger's producers leave no offset gaps)."""
    from processors.replay.reader import log_bounds

    starts, ends = log_bounds(settings)
    return {p: ends[p] - starts.get(p, 0) for p in ends}
