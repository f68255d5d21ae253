"""Secret files that appear whole or not at all.

Why: on a fresh home, several processes start together (``careledger up``, the test suite's
workers) and each generates the secrets it misses.  With a plain ``O_CREAT | O_EXCL`` file, a
second process could read the first one's file between its creation and its write, and run with
an *empty* key (pseudonyms under the wrong HMAC key, boxes sealed under the wrong master key), or
fail on the existing name.  Here the content is written to a private temporary file first and
linked into place: ``link`` fails if the name exists, so the first writer wins and every process
ends up with the winner's bytes.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class SecretFileError(RuntimeError):
    """A secret file that must not be used: a process refuses to start on it."""


class InsecureSecretFile(SecretFileError):
    """A secret file is readable by group/other: refuse to start rather than leak it."""


class EmptySecretFile(SecretFileError):
    """A secret file holds nothing: a key made of no bytes would silently be the wrong key."""


#: prefix of the temporary files (skipped by the permission check while they exist)
TEMPORARY_PREFIX = ".tmp-"


def check_private(path: Path) -> None:
    """Raise :class:`InsecureSecretFile` (naming the fix) if ``path`` is readable by others."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureSecretFile(f"secret file {path} has mode {oct(mode)}; it must be 0600 (chmod 600 {path})")


def read_secret_file(path: Path) -> bytes:
    """The stripped content of a 0600 secret file; refuses group/world-readable or empty files."""
    check_private(path)
    value = path.read_bytes().strip()
    if not value:
        raise EmptySecretFile(f"secret file {path} is empty; delete it to have a new secret generated, "
                              "or restore it from a backup")
    return value


def create_secret_file(path: Path, value: bytes) -> bytes:
    """Create ``path`` (mode 0600, parent 0700) holding ``value`` unless it exists already;
    return the bytes the file holds afterwards (``value``, or what another process wrote first)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, path)  # atomic: fails if another process put its secret there first
        except FileExistsError:
            return read_secret_file(path)
    finally:
        temporary.unlink(missing_ok=True)
    return value.strip()
