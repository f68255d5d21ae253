"""What a backup directory holds, and how its files are written and read (docs/operations.md §4)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
    data = json.loads(line)

    def field(name: str) -> bytes | None:
        if name + "_b64" in data:
            return base64.b64decode(data[name + "_b64"])
        text = data.get(name)
        return None if text is None else str(text).encode("utf-8")

    return int(data["offset"]), int(data["timestamp_ms"]), field("key"), field("value")


def dump_records(path: Path) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield parse_record_line(line)


def private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def private_file(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")
