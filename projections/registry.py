"""Which store is *active* for each projection, and the named snapshots (docs/replay.md).

The registry is one small JSON file, ``$CARELEDGER_HOME/registry.json``, rewritten atomically
(temp file in the same directory, fsync, ``os.replace``, fsync of the directory) under an
exclusive ``flock`` of ``registry.lock`` for every read-modify-write.  Why a file and not a
table in the SQL store: the registry decides *which* SQL store is active, so keeping it inside
one of the stores it swaps would be circular; a file also works when the SQL or ClickHouse server
is down, and a reader never sees a half-written registry (``os.replace`` is atomic).

Without a file (a new home, every existing test) the active store of a projection is its default
from the settings (``sql`` → ``CARELEDGER_SQL_URL``, ``clickhouse`` → ``CARELEDGER_CLICKHOUSE_URL``),
so nothing changes until the first ``careledger replay rebuild`` swaps a shadow in.

Projections are registered by name with a :class:`ProjectionSpec` (default URL + how to open a
store for it): ``sql`` and ``clickhouse`` here, more with :func:`register_projection` (see
``projections/examples/monthly_program_totals.py``).

Roles of a registered store: ``building`` (a shadow being filled), ``active``, ``retired`` (the
previous active one, kept until ``careledger replay drop``) and ``snapshot`` (a point-in-time store
queried with ``?snapshot=NAME``).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from careledger.settings import Settings
from processors.domain.rules_config import default_rules, load_rules

REGISTRY_FILE = "registry.json"
LOCK_FILE = "registry.lock"
FORMAT_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ROLES = ("building", "active", "retired", "snapshot")

#: modules that register extra projections when imported (a new projection adds itself here)
PROJECTION_MODULES: tuple[str, ...] = ("projections.examples.monthly_program_totals",)


class RegistryError(ValueError):
    """Unknown name, bad name, or an operation that would break the registry's invariants."""


# ----------------------------------------------------------------------------- projection specs
@dataclass(frozen=True)
class ProjectionSpec:
    """How to find and open the store(s) of one projection.

    ``default_url(settings)``: the store used while the registry names none (None: not configured);
    ``open(url, rules, topic, projection=None)``: an un-migrated store; its offsets are kept under
    ``projection`` (default: the spec's name; parallel replays use per-worker aliases);
    ``kind``: "sql" for stores sharing the SqlStore schema (alerts, outbox), else anything.
    """

    name: str
    default_url: Callable[[Settings], str | None]
    open: Callable[..., Any]
    kind: str = "other"
    description: str = ""


_SPECS: dict[str, ProjectionSpec] = {}
_loaded_modules = False


def register_projection(spec: ProjectionSpec) -> ProjectionSpec:
    if not NAME_RE.match(spec.name):
        raise RegistryError(f"invalid projection name {spec.name!r}")
    _SPECS[spec.name] = spec
    return spec


def _open_builtin(projection: str) -> Callable[..., Any]:
    def opener(url: str, rules: Any, topic: str, projection: str = projection) -> Any:
        from projections import open_store

        return open_store(url, rules, topic=topic, projection=projection)

    return opener


register_projection(ProjectionSpec("sql", lambda s: s.sql_url, _open_builtin("sql"), kind="sql",
                                   description="counts, persons, alerts, warnings (SQLite/PostgreSQL)"))
register_projection(ProjectionSpec("clickhouse", lambda s: s.clickhouse_url, _open_builtin("clickhouse"),
                                   kind="clickhouse", description="event history + counts (ClickHouse)"))


def projection_specs() -> dict[str, ProjectionSpec]:
    global _loaded_modules
    if not _loaded_modules:
        _loaded_modules = True
        for module in PROJECTION_MODULES:
            importlib.import_module(module)
    return dict(_SPECS)


def projection_spec(name: str) -> ProjectionSpec:
    specs = projection_specs()
    if name not in specs:
        raise RegistryError(f"unknown projection {name!r} (known: {', '.join(sorted(specs))})")
    return specs[name]


def projection_names() -> list[str]:
    return sorted(projection_specs())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _empty() -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "active": {}, "stores": {}}


#: ``scheme://user:password@`` up to the last ``@`` before the query: a password may hold an unescaped ``@``
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):[^?#]*@(?P<tail>[^@?#]*(?:[?#].*)?)$",
                       re.DOTALL)
#: a query parameter whose name says it holds a credential (``password``, ``sslpassword``, ``pwd``, ``token``...)
_SECRET_PARAM = re.compile(r"((?:^|[&;])[^=&;#]*(?:password|pass|pwd|secret|token)[^=&;#]*=)[^&;#]*",
                           re.IGNORECASE)


def redact_url(url: str) -> str:
    """A URL without its password, in the user part or the query (for printing: replay status,
    forget); over-masking an odd URL is harmless, a password in a terminal is not."""
    url = _USERINFO.sub(r"\g<head>:***@\g<tail>", url)
    url = _hide_parsed_password(url)
    base, mark, query = url.partition("?")
    return base + mark + _SECRET_PARAM.sub(r"\1***", query)


def _hide_parsed_password(url: str) -> str:
    """SQLAlchemy's own rendering without the password, where it parses one (else ``url`` as is)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


# ----------------------------------------------------------------------------- the registry
class Registry:
    """The registry of ``settings.home``.  Cheap to create; thread-safe; process-safe via flock."""

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        self.settings = settings
        self.path = Path(path) if path is not None else settings.home / REGISTRY_FILE
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int] | None, dict[str, Any]] | None = None

    # ---- reading ---------------------------------------------------------------------------
    def signature(self) -> tuple[int, int, int] | None:
        """Changes whenever the file is replaced (inode, mtime, size); None while there is none."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> dict[str, Any]:
        """The registry document (a copy; re-read only when the file changed)."""
        with self._lock:
            sig = self.signature()
            if self._cache is None or self._cache[0] != sig:
                self._cache = (sig, self._read())
            return json.loads(json.dumps(self._cache[1]))

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _empty()
        data = json.loads(text)
        if data.get("format") != FORMAT_VERSION:
            raise RegistryError(f"{self.path}: unsupported registry format {data.get('format')!r}")
        return data

    def active_name(self, projection: str) -> str | None:
        return self.load()["active"].get(projection)

    def active_url(self, projection: str) -> str:
        """URL of the active store of ``projection`` (registry first, then the settings)."""
        data = self.load()
        name = data["active"].get(projection)
        if name is not None:
            return data["stores"][name]["url"]
        url = projection_spec(projection).default_url(self.settings)
        if not url:
            raise RegistryError(f"projection {projection!r} has no store configured "
                                f"(and none in {self.path})")
        return url

    def entry(self, name: str) -> dict[str, Any]:
        found = self.load()["stores"].get(name)
        if found is None:
            raise RegistryError(f"no store named {name!r} in {self.path}")
        return {"name": name, **found}

    def stores(self, role: str | None = None) -> list[dict[str, Any]]:
        data = self.load()
        return [{"name": n, **e} for n, e in sorted(data["stores"].items()) if role is None or e["role"] == role]

    def snapshot(self, name: str) -> dict[str, Any]:
        entry = self.entry(name)
        if entry["role"] != "snapshot":
            raise RegistryError(f"{name!r} is not a snapshot (role {entry['role']})")
        return entry

    # ---- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Exclusive read-modify-write: yields the document; writes it back atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.parent / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                data = self._read()
                yield data
                self._write(data)
                self._cache = None
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".registry.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)  # URLs may carry passwords
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def register(self, name: str, url: str, projection: str, role: str, *, owned: bool = False,
                 **meta: Any) -> dict[str, Any]:
        """Add a store (``owned``: replay created its database/file, so ``drop`` deletes it)."""
        if not NAME_RE.match(name):
            raise RegistryError(f"invalid store name {name!r} (letters, digits, _ . -; at most 63)")
        if role not in ROLES or role == "active":
            raise RegistryError(f"cannot register a store as {role!r} (use swap to activate)")
        projection_spec(projection)
        with self._locked() as data:
            if name in data["stores"]:
                raise RegistryError(f"a store named {name!r} already exists")
            data["stores"][name] = {"url": url, "projection": projection, "role": role, "owned": owned,
                                    "created_at": _now(), **meta}
            return {"name": name, **data["stores"][name]}

    def update(self, name: str, **meta: Any) -> None:
        with self._locked() as data:
            if name not in data["stores"]:
                raise RegistryError(f"no store named {name!r}")
            meta.pop("role", None)
            meta.pop("url", None)
            data["stores"][name].update(meta)

    def swap(self, projection: str, name: str) -> str:
        """Make store ``name`` the active store of ``projection`` in one atomic replace; the
        previous active one becomes ``retired`` (kept until dropped).  Returns its name."""
        default_url = projection_spec(projection).default_url(self.settings)
        with self._locked() as data:
            entry = self._swappable(data, projection, name)
            previous = data["active"].get(projection)
            if previous is None:
                if default_url:  # name the settings' store so it can be swapped back or dropped
                    previous = self._free_name(data, f"{projection}-initial")
                    data["stores"][previous] = {"url": default_url, "projection": projection,
                                                "role": "retired", "owned": False, "created_at": _now()}
            else:
                data["stores"][previous]["role"] = "retired"
            if previous is not None:
                data["stores"][previous]["retired_at"] = _now()
            entry["role"] = "active"
            entry["activated_at"] = _now()
            data["active"][projection] = name
            return previous or ""

    def check_swap(self, projection: str, name: str) -> None:
        """Raise the error :meth:`swap` would raise, changing nothing (a caller prepares the store
        for the swap - the SQL hand-over - only when the swap can happen)."""
        self._swappable(self.load(), projection, name)

    @staticmethod
    def _swappable(data: dict[str, Any], projection: str, name: str) -> dict[str, Any]:
        entry: dict[str, Any] | None = data["stores"].get(name)
        if entry is None:
            raise RegistryError(f"no store named {name!r}")
        if entry["projection"] != projection:
            raise RegistryError(f"{name!r} is a {entry['projection']} store, not {projection}")
        if entry["role"] not in ("building", "retired"):
            raise RegistryError(f"cannot activate {name!r} (role {entry['role']})")
        return entry

    @staticmethod
    def _free_name(data: dict[str, Any], base: str) -> str:
        name, n = base, 1
        while name in data["stores"]:
            n += 1
            name = f"{base}-{n}"
        return name

    def remove(self, name: str) -> dict[str, Any]:
        """Forget a retired, building or snapshot store (the caller drops its data)."""
        with self._locked() as data:
            entry = data["stores"].get(name)
            if entry is None:
                raise RegistryError(f"no store named {name!r}")
            if entry["role"] == "active" or data["active"].get(entry["projection"]) == name:
                raise RegistryError(f"{name!r} is the active {entry['projection']} store; swap another in first")
            del data["stores"][name]
            return {"name": name, **entry}

    # ---- opening ---------------------------------------------------------------------------
    def open_active(self, projection: str, rules: Any = None) -> Any:
        spec = projection_spec(projection)
        return spec.open(self.active_url(projection), rules, self.settings.topics.events)

    def open_named(self, name: str, rules: Any = None) -> Any:
        """Open a registered store; a snapshot opens with the rules it was built with."""
        entry = self.entry(name)
        if rules is None and entry.get("rules_path"):
            rules = load_rules(Path(entry["rules_path"]))
        return projection_spec(entry["projection"]).open(entry["url"], rules, self.settings.topics.events)


# ----------------------------------------------------------------------------- a store that follows
class ActiveStore:
    """The active store of a projection, re-resolved from the registry on every call (cheap: a
    ``stat``).  After a swap it opens the new store and closes the old one.  Readers (the API,
    ``/api/status``) use it so they follow swaps without a restart.

    Deliberately has no ``engine`` attribute: the API keeps its tokens in the settings' database,
    not in whichever read-model store is active."""

    def __init__(self, registry: Registry, projection: str, rules: Any = None, *, migrate: bool = False) -> None:
        self.registry = registry
        self.projection = projection
        self.name = projection
        self.rules = rules if rules is not None else default_rules()  # what the stores it opens judge with
        self._migrate = migrate
        self._lock = threading.Lock()
        self._url: str | None = None
        self._store: Any = None

    def current(self) -> Any:
        url = self.registry.active_url(self.projection)
        with self._lock:
            if self._store is None or url != self._url:
                old = self._store
                store = self.registry.open_active(self.projection, self.rules)
                if self._migrate:
                    store.migrate()
                self._store, self._url = store, url
                if old is not None:
                    old.close()
            return self._store

    def migrate(self) -> None:
        self.current().migrate()

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store = None
            self._url = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr == "engine":
            raise AttributeError(attr)
        return getattr(self.current(), attr)


__all__ = [
    "ActiveStore",
    "ProjectionSpec",
    "Registry",
    "RegistryError",
    "projection_names",
    "projection_spec",
    "projection_specs",
    "redact_url",
    "register_projection",
]


class SnapshotStores:
    """Named snapshot stores for the read API (``?snapshot=NAME``), opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.registry = Registry(settings)
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, Any]] = {}

    def get(self, name: str) -> Any:
        """The store of a ready snapshot ``name``, or None (unknown, not a snapshot, building)."""
        try:
            entry = self.registry.snapshot(name)
        except RegistryError:
            return None
        if entry.get("status") != "ready":
            return None
        with self._lock:
            cached = self._open.get(name)
            if cached is not None and cached[0] == entry["url"]:
                return cached[1]
            store = self.registry.open_named(name)
            self._open[name] = (entry["url"], store)
            if cached is not None:
                cached[1].close()
            return store

    def close(self) -> None:
        with self._lock:
            for _, store in self._open.values():
                store.close()
            self._open.clear()
