"""Everything under ``$CARELEDGER_HOME`` is private to its owner: 0700 directories, 0600 files.

Why: the home holds birth dates and the audit log (``projections.sqlite3``), token hashes, wrapped
data keys, Kafka's log, replay stores, reports, exports and logs.  How, for every writer at once:

1. **One process-wide umask, 077**, set when a ``careledger`` command starts (``careledger/cli.py``,
   the only place), before it creates anything.  Whatever that process starts inherits it: the
   Kafka JVM, PostgreSQL (which is 0700/0600 by itself anyway), ClickHouse (which sets its own umask,
   so its config says ``<umask>077</umask>`` too), supervisors, workers, the API, ``ingest``,
   ``export``, backups.  SQLite gives ``-wal``/``-shm`` files the mode of their database file.
2. **An existing home is tightened at start** (``careledger up`` and every long-running command):
   a home made by an older release, or copied with loose modes, loses its group/other bits, and
   what changed is reported.

The one exception: a directory on the way to a directory owned by another user keeps "execute"
for others (traverse only: no listing, no reading).  That happens only when careledger runs as
root and starts its private PostgreSQL server, which PostgreSQL refuses to run as root: the server
runs as ``postgres`` and must reach its data directory (0700, its own) through the home.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

PRIVATE_UMASK = 0o077
GROUP_OTHER = 0o077
TRAVERSE = 0o001  # "execute" for others on a directory: pass through it, nothing else


@dataclass(frozen=True)
class Loose:
    path: Path
    mode: int  # the permission bits found
    allowed: int  # the group/other bits it may keep (TRAVERSE or 0)

    def __str__(self) -> str:
        return f"{self.path} ({oct(self.mode)})"


def use_private_umask() -> int:
    """Set the process umask to 077 (files 0600, directories 0700); return the previous one."""
    return os.umask(PRIVATE_UMASK)


def _walk(home: Path) -> list[tuple[Path, os.stat_result]]:
    out: list[tuple[Path, os.stat_result]] = []
    stack = [home]
    while stack:
        path = stack.pop()
        try:
            info = os.lstat(path)
        except FileNotFoundError:  # removed while we walk (a temporary file, a rotated log)
            continue
        if stat.S_ISLNK(info.st_mode):
            continue  # a link has no permissions of its own; its target is walked where it lives
        out.append((path, info))
        if stat.S_ISDIR(info.st_mode):
            try:
                stack.extend(Path(entry.path) for entry in os.scandir(path))
            except (FileNotFoundError, PermissionError):
                continue
    return out


def _traversal_dirs(home: Path, found: list[tuple[Path, os.stat_result]]) -> set[Path]:
    """Directories (the home included) on the way to a directory another user owns."""
    owner = found[0][1].st_uid if found else os.geteuid()
    dirs: set[Path] = set()
    for path, info in found:
        if stat.S_ISDIR(info.st_mode) and info.st_uid != owner:
            dirs.update(p for p in path.parents if p == home or home in p.parents)
    return dirs


def loose_paths(home: Path) -> list[Loose]:
    """Every path under ``home`` (itself included) with group/other permission bits it may not keep."""
    if not home.exists():
        return []
    found = _walk(home)
    traverse = _traversal_dirs(home, found)
    out = []
    for path, info in found:
        mode = stat.S_IMODE(info.st_mode)
        allowed = TRAVERSE if path in traverse else 0
        if mode & GROUP_OTHER & ~allowed:
            out.append(Loose(path, mode, allowed))
    return out


def tighten(home: Path) -> list[Loose]:
    """Remove group/other bits under ``home`` (keeping only the traversal exception); return what
    was changed.  Idempotent and safe while services run: it only ever removes access."""
    changed = []
    for loose in loose_paths(home):
        try:  # never a symbolic link: loose_paths skips them
            os.chmod(loose.path, (loose.mode & ~GROUP_OTHER) | (loose.mode & loose.allowed))
        except FileNotFoundError:
            continue
        changed.append(loose)
    return changed


_notices: list[str] = []


def defer_notice(text: str) -> None:
    """Keep a start-up notice until the process has set up its logs (``take_notices``), so a
    process whose every line is JSON reports it as JSON too."""
    _notices.append(text)


def take_notices() -> list[str]:
    out = list(_notices)
    _notices.clear()
    return out
