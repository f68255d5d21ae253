"""Reading sealed events back: the ONE function every consumer of the log calls after decoding.

``unseal_batch(events, keystore) -> events`` (live ``BatchRunner.decode`` and replay alike):

* an event of a person with a data key: its ``sealed`` box is opened, the sensitive fields are put
  back into ``payload`` and ``sealed`` is dropped - the event is the plain canonical dict again;
* an event of a forgotten person (tombstone in the key store), sealed or not:
  ``schemas.privacy.erase_event`` - ``person_id`` becomes the person's tombstone id, the sensitive
  fields become erased markers and ``erased: true`` is set; the stores count it (historical
  aggregates) but keep no person-level state for it;
* any other event is returned unchanged (the same object).

Keys and tombstones of a batch's persons are loaded in one round trip and cached per key store;
every call first reads the key store's ``generation`` (bumped by each forget), so a forget made
by another process is seen by the next batch.

Errors: :class:`producers.keystore.SealedDataError` for one event whose box does not open (poison:
``on_error`` gets it and that event becomes ``None``; without ``on_error`` it is raised);
:class:`producers.keystore.KeyStoreError` for configuration problems (wrong master key, a sealed
event with neither key nor tombstone: a different key store) - always raised, never erased.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from careledger.settings import Settings, get_settings
from producers.keystore import Forgotten, KeyStore, KeyStoreError, SealedDataError, open_box
from schemas.privacy import SEALED_KEY, erase_event, sensitive_fields

Event = dict[str, Any]
OnError = Callable[[int, SealedDataError], None]

__all__ = ["Unsealer", "default_keystore", "keystore_for", "unseal_batch", "unsealer_for"]


class Unsealer:
    """Cached keys + tombstones of one :class:`KeyStore` (thread-safe)."""

    def __init__(self, keystore: KeyStore, cache_size: int = 200_000) -> None:
        self.keystore = keystore
        self._keys: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._cache_size = cache_size
        self._generation: int | None = None
        self._tombstones: Forgotten = keystore.forgotten()
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        generation = self.keystore.generation()
        if generation != self._generation:
            self._keys.clear()
            self._tombstones = self.keystore.forgotten()
            self._generation = generation

    def unseal(self, events: Sequence[Event | None], on_error: OnError | None = None) -> list[Event | None]:
        with self._lock:
            self._refresh()
            tombs = self._tombstones
            need = {e["person_id"] for e in events
                    if e is not None and SEALED_KEY in e and e.get("person_id")
                    and e["person_id"] not in tombs and e["person_id"] not in self._keys}
            if need:
                keys, new_tombs = self.keystore.lookup(need)
                if new_tombs:  # forgotten between our generation read and now
                    self._tombstones = tombs = tombs.including(new_tombs)
                self._keys.update(keys)
                while len(self._keys) > self._cache_size:
                    self._keys.popitem(last=False)
            out: list[Event | None] = []
            for index, event in enumerate(events):
                if event is None:
                    out.append(None)
                    continue
                pid = event.get("person_id")
                if pid and pid in tombs:
                    out.append(erase_event(event, tombs[pid]))
                    continue
                if SEALED_KEY not in event:
                    out.append(event)
                    continue
                try:
                    out.append(self._open(event))
                except SealedDataError as exc:
                    if on_error is None:
                        raise
                    on_error(index, exc)
                    out.append(None)
            return out

    def _open(self, event: Event) -> Event:
        pid = event.get("person_id") or ""
        entry = self._keys.get(pid)
        if entry is None:
            raise KeyStoreError(
                f"event {event.get('event_id')!r} is sealed but its person has neither a data key nor a "
                "tombstone in this key store: is CARELEDGER_KEYSTORE_URL the producers' key store?")
        kid, dek = entry
        if event[SEALED_KEY].get("kid") != kid:
            raise SealedDataError(f"event {event.get('event_id')!r}: sealed under another key id")
        fields = open_box(event, dek)
        restored = {k: v for k, v in event.items() if k != SEALED_KEY}
        payload = dict(event.get("payload") or {})
        for name in sensitive_fields(event["type"]):  # schema order, then the rest as they were
            if name in fields:
                payload[name] = fields[name]
        restored["payload"] = payload
        return restored


_UNSEALERS: weakref.WeakKeyDictionary[KeyStore, Unsealer] = weakref.WeakKeyDictionary()
_UNSEALERS_LOCK = threading.Lock()


def unsealer_for(keystore: KeyStore) -> Unsealer:
    with _UNSEALERS_LOCK:
        unsealer = _UNSEALERS.get(keystore)
        if unsealer is None:
            unsealer = _UNSEALERS[keystore] = Unsealer(keystore)
        return unsealer


def unseal_batch(events: Sequence[Event | None], keystore: KeyStore | Unsealer,
                 on_error: OnError | None = None) -> list[Event | None]:
    """Decoded events (``schemas.validation.decode_consumed``) -> events as the stores apply them.

    ``None`` entries (poison already dead-lettered) pass through.  See the module docstring."""
    unsealer = keystore if isinstance(keystore, Unsealer) else unsealer_for(keystore)
    return unsealer.unseal(events, on_error)


_OPEN: dict[str, KeyStore] = {}


def keystore_for(settings: Settings, create: bool = True) -> KeyStore | None:
    """The key store of ``settings``, opened once per process.

    ``create=False``: None when it is a SQLite file that does not exist yet (no key was ever made
    and nobody forgotten, so there is nothing to unseal or erase)."""
    url = settings.keystore_db_url
    with _UNSEALERS_LOCK:
        store = _OPEN.get(url)
        if store is None:
            if not create and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
                return None
            store = _OPEN[url] = KeyStore.from_settings(settings)
        return store


def default_keystore(create: bool = True) -> KeyStore | None:
    """The key store of this process's settings (``get_settings()``)."""
    return keystore_for(get_settings(), create)
