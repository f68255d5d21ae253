"""``careledger backup DEST``: the events first, then the key store, the API tables and (on request) the secrets."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from tqdm import tqdm

from careledger.settings import Settings, secret_env_var
from infra.backups.layout import (
    API_FILE,
    EVENTS_DIR,
    KEYS_FILE,
    MANIFEST,
    SECRET_NAMES,
    SECRETS_DIR,
    BackupError,
    Manifest,
    private_dir,
    private_file,
    record_line,
    sha256_file,
)
from infra.backups.tables import (
    api_engine,
    api_tables,
    copy_tables,
    keystore_engine,
    keystore_tables,
    sqlite_file,
)


def backup(settings: Settings, dest: Path, *, include_secrets: bool = False, progress: bool | None = None,
           out: IO[str] = sys.stdout) -> Manifest:
    """Write a backup of ``settings``' stack into the new directory ``dest``."""
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: a backup goes into a new directory")
    private_dir(dest)
    files: list[str] = []

    # events first: a data key is stored before any event sealed with it is published, so a key
    # store copied after the dump holds the key of every sealed field in it
    partitions = _backup_events(settings, dest, progress)
    files += [f"{EVENTS_DIR}/p{p}.jsonl.gz" for p in sorted(partitions)]
    total = sum(v["records"] for v in partitions.values())
    print(f"events: {total} records from {len(partitions)} partitions of {settings.topics.events}", file=out)

    metadata, tables = keystore_tables()
    rows = copy_tables(keystore_engine(settings), sqlite_file(dest / KEYS_FILE), metadata, tables)
    files.append(KEYS_FILE)
    print(f"key store: {rows['person_keys']} data keys, {rows['tombstones']} erasure tombstones", file=out)

    metadata, tables = api_tables()
    rows = copy_tables(api_engine(settings), sqlite_file(dest / API_FILE), metadata, tables)
    files.append(API_FILE)
    print("read API: " + ", ".join(f"{n} {name}" for name, n in rows.items()), file=out)

    secrets = _backup_secrets(settings, dest, include_secrets)
    files += [f"{SECRETS_DIR}/{name}" for name, state in secrets.items() if state == "included"]
    for name, state in secrets.items():
        print(f"secret {name}: {state}", file=out)

    manifest = Manifest(datetime.now(UTC).isoformat(timespec="seconds"), settings.topics.events, partitions,
                        {name: sha256_file(dest / name) for name in files}, secrets)
    with private_file(dest / MANIFEST) as fh:
        fh.write(manifest.to_json().encode("utf-8"))
    print(f"backup written to {dest}", file=out)
    return manifest


def _backup_secrets(settings: Settings, dest: Path, include: bool) -> dict[str, str]:
    states: dict[str, str] = {}
    for name in SECRET_NAMES:
        path = settings.secrets_dir / name
        if os.environ.get(secret_env_var(name)):
            states[name] = "environment"  # kept in the operator's secret manager, not in files
        elif not path.exists():
            states[name] = "absent"
        elif not include:
            states[name] = "not included"
        else:
            private_dir(dest / SECRETS_DIR)
            with private_file(dest / SECRETS_DIR / name) as fh:
                fh.write(settings.secret(name, create=False))
            states[name] = "included"
    return states


def _backup_events(settings: Settings, dest: Path, progress: bool | None) -> dict[int, dict[str, int]]:
    from processors.replay.reader import log_bounds, read_log

    starts, ends = log_bounds(settings)
    private_dir(dest / EVENTS_DIR)
    partitions = {p: {"records": 0, "first_offset": -1, "last_offset": -1} for p in ends}
    with ExitStack() as stack:  # each dump closed before its file, whatever happens
        handles = {p: stack.enter_context(gzip.GzipFile(
            fileobj=stack.enter_context(private_file(dest / EVENTS_DIR / f"p{p}.jsonl.gz")), mode="wb",
            compresslevel=1)) for p in ends}
        bar = stack.enter_context(tqdm(total=sum(ends[p] - starts.get(p, 0) for p in ends), unit="rec",
                                       desc="backup events", disable=None if progress is None else not progress,
                                       leave=False, file=sys.stderr))
        for batch in read_log(settings, starts, ends):
            for r in batch:
                handles[r.partition].write(record_line(r.offset, r.timestamp_ms, r.key, r.value))
                info = partitions[r.partition]
                info["records"] += 1
                info["last_offset"] = r.offset
                if info["first_offset"] < 0:
                    info["first_offset"] = r.offset
            bar.update(len(batch))
    return partitions


# ---- scheduled backups: one stamped directory per run, the newest ``keep`` kept -----------------
STAMP_FORMAT = "careledger-%Y%m%dT%H%M%SZ"
STAMPED = re.compile(r"^careledger-\d{8}T\d{6}Z$")


def stamped_dir(parent: Path, now: datetime | None = None) -> Path:
    """``parent/careledger-<UTC time>``: names that sort by age (a timer's nightly backups)."""
    return parent / (now or datetime.now(UTC)).strftime(STAMP_FORMAT)


def prune_backups(parent: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` complete stamped backups under ``parent``; returns what
    was removed.  Only directories careledger stamped and finished (a manifest) are ever touched,
    so an unfinished run or anything else in ``parent`` stays."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    done = sorted(p for p in parent.iterdir() if p.is_dir() and STAMPED.match(p.name) and (p / MANIFEST).is_file())
    removed = done[:-keep]
    for path in removed:
        shutil.rmtree(path)
    return removed
