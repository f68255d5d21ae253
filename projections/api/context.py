"""What the routes share: the store, tokens, lag probe, Kafka publisher, snapshots, webhooks.

One :class:`ApiState` per app (``app.state.api``); routes get it with ``api: Api``.  The pieces
that reach outside the process (Kafka, the lag probe) are created on first use, so the API starts
and serves the read models while Kafka is still down.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from careledger.settings import Settings
from processors.domain.rules_config import RulesConfig
from processors.lag import LagProbe
from producers.pseudonym import Pseudonymiser
from producers.publisher import EventPublisher
from projections.api.auth import TokenStore
from projections.api.outbox_feed import OutboxFeed
from projections.api.problems import Problem
from projections.api.stream_audit import SubjectWrites
from projections.api.suppression import Publisher
from projections.registry import ActiveStore, Registry, RegistryError, SnapshotStores, projection_spec
from projections.sql.store import SqlStore
from projections.webhook_store import WebhookStore


class KafkaUnavailable(RuntimeError):
    pass


def kafka_listening(bootstrap: str, timeout: float = 2.0) -> None:
    """Raise OSError unless some bootstrap server accepts a TCP connection (a quick check: the
    Kafka client itself waits up to ~30 s before giving up on an absent broker)."""
    errors = []
    for server in (s.strip() for s in bootstrap.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{server}: {exc}")
    raise OSError("no bootstrap server accepts connections (" + "; ".join(errors) + ")")


class Probe(Protocol):
    """What the API asks of a lag probe (``processors.lag.LagProbe``; tests give stand-ins)."""

    def measure(self) -> Any: ...

    def close(self) -> None: ...


class CheckedProbe:
    """The real lag probe, after a quick TCP check of the brokers."""

    def __init__(self, settings: Settings, probe: LagProbe) -> None:
        self.settings = settings
        self.probe = probe

    def measure(self) -> Any:
        kafka_listening(self.settings.kafka_bootstrap)
        return self.probe.measure()

    def close(self) -> None:
        self.probe.close()


def default_lag_factory(settings: Settings, store: Any) -> Callable[[], Any]:
    stores: dict[str, Any] = {}

    def build() -> Any:
        if not stores:  # opened once; a failed probe is rebuilt over the same stores
            stores[store.name] = store
            if settings.clickhouse_url:
                stores["clickhouse"] = ActiveStore(Registry(settings), "clickhouse")  # follows replay swaps
        return CheckedProbe(settings, LagProbe(settings, stores))

    return build


class LagService:
    """Thread-safe wrapper of a lag probe (``measure() -> LagReport``; ``close()`` if it has one)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._probe: Probe | None = None
        self._lock = threading.Lock()

    def measure(self) -> Any:
        with self._lock:
            try:
                if self._probe is None:
                    self._probe = self._factory()
                return self._probe.measure()
            except Exception as exc:  # kafka-python raises many types; all mean "no answer"
                probe, self._probe = self._probe, None
                _close(probe)
                raise KafkaUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            _close(self._probe)
            self._probe = None


def _close(probe: Probe | None) -> None:
    if probe is not None:
        try:
            probe.close()
        except Exception:  # noqa: BLE001 - closing a broken client
            pass


class Publishers:
    """The app-wide EventPublisher, created on first use (Kafka may start after the API)."""

    def __init__(self, settings: Settings, publisher: Any = None) -> None:
        self.settings = settings
        self._publisher = publisher
        self._own = publisher is None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._publisher is None:
                try:
                    self._publisher = EventPublisher(self.settings)
                except Exception as exc:
                    raise Problem(503, f"Kafka at {self.settings.kafka_bootstrap} is unreachable "
                                       f"({type(exc).__name__}); retry later") from None
            return self._publisher

    def close(self) -> None:
        with self._lock:
            if self._own and self._publisher is not None:
                self._publisher.close()
            self._publisher = None


@dataclass
class ApiState:
    settings: Settings
    store: Any
    tokens: TokenStore
    lag: LagService
    publishers: Publishers
    snapshots: SnapshotStores
    published: Publisher
    _webhooks: WebhookStore | None = None
    _pseudonymiser: Pseudonymiser | None = None
    _outbox_feed: OutboxFeed | None = None
    _stream_audit_writes: SubjectWrites | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def source(self, snapshot: str | None, person_level: bool = False) -> Any:
        """The live store, or the named snapshot (404 if unknown; person-level data needs a
        snapshot of an SQL projection)."""
        if snapshot is None:
            return self.store
        found = self.snapshots.get(snapshot)
        if found is not None and person_level:
            try:
                kind = projection_spec(self.snapshots.registry.snapshot(snapshot)["projection"]).kind
            except (RegistryError, KeyError):
                kind = None
            if kind != "sql":
                found = None
        if found is None:
            raise Problem(404, "no ready snapshot with this name" + (" holding person-level data" if person_level
                                                                      else ""))
        return found

    @property
    def rules(self) -> RulesConfig:
        """The rules the store judges with: reasons quote their thresholds."""
        rules: RulesConfig = self.store.rules
        return rules

    def webhooks(self) -> WebhookStore:
        """Subscriptions, on the settings' database (like the tokens), created on first use."""
        with self._lock:
            if self._webhooks is None:
                store = WebhookStore.from_settings(self.settings, own_engine(self.store))
                store.migrate()
                self._webhooks = store
            return self._webhooks

    def outbox_feed(self) -> OutboxFeed:
        """The one outbox reader of every following alert stream (``outbox_feed.py``)."""
        with self._lock:
            if self._outbox_feed is None:
                self._outbox_feed = OutboxFeed(self.store)
            return self._outbox_feed

    def stream_audit_writes(self) -> SubjectWrites:
        """The one writer of the persons the open alert streams send (``stream_audit.py``)."""
        with self._lock:
            if self._stream_audit_writes is None:
                self._stream_audit_writes = SubjectWrites(self.tokens)
            return self._stream_audit_writes

    def pseudonymiser(self) -> Pseudonymiser:
        """The ingest's pseudonymiser (``settings.secret("hmac-key")``): person lookups hash the
        ID number exactly as the producers did."""
        with self._lock:
            if self._pseudonymiser is None:
                self._pseudonymiser = Pseudonymiser.from_settings(self.settings)
            return self._pseudonymiser

    def close(self) -> None:
        self.lag.close()
        self.snapshots.close()
        self.publishers.close()


def own_engine(store: Any) -> Engine | None:
    """The engine of an SQL store given to ``create_app`` (tests share it with the tokens and
    webhooks), or None: ``ActiveStore`` deliberately has none, so a live API keeps its tables in
    the settings' database whichever read-model store is active."""
    return store.engine if isinstance(store, SqlStore) else None


def state(request: Request) -> ApiState:
    return request.app.state.api


Api = Annotated[ApiState, Depends(state)]

__all__ = ["Api", "ApiState", "CheckedProbe", "KafkaUnavailable", "LagService", "Publishers", "default_lag_factory",
           "kafka_listening", "own_engine", "state"]
