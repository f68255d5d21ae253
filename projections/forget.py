"""``careledger forget PERSON_ID`` (or ``--id-number -``): erasure on an immutable log.

1. the key store destroys the person's data key and records an unlinkable tombstone (a keyed
   digest of the pseudonym and the time, ``producers/keystore.py``): every sealed field of theirs on
   Kafka is unreadable from now on, and every consumer's next batch erases their events
   (``processors.privacy.unseal_batch``);
2. every projection store purges the person (``store.forget(person_id, tombstone_id)``): SQL
   (SQLite/PostgreSQL) and ClickHouse, and the webhook delivery log (bodies erased, pending
   deliveries cancelled; the deliverer skips their alerts still on the topic);
3. after ``settle_s`` seconds the stores are purged once more: a batch a worker had already
   unsealed before step 1 may have committed after step 2 (idempotent, usually a no-op).

The summary says what was done: whether a data key existed, whether the person had been forgotten
before, and the rows each store (named by registry name or projection and its URL) changed.  With
``CARELEDGER_LOCAL_SERVERS`` the command uses the local servers' stores like the workers do
(``careledger/cli.py``).  The raw ID number is pseudonymised at once and never printed or logged.
See docs/privacy.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from careledger.retrying import call_retrying
from careledger.settings import Settings
from processors.domain.rules_config import load_rules
from producers.keystore import KeyStore
from producers.pseudonym import InvalidIdNumber, Pseudonymiser
from projections import open_store
from projections.registry import Registry, redact_url
from projections.store import ErasableStore, ProjectionStore
from projections.webhook_store import sql_engine
from projections.webhooks.queue import DeliveryQueue

__all__ = ["ForgetReport", "forget_person", "register"]


@dataclass
class ForgetReport:
    person_id: str
    tombstone_id: str
    key_destroyed: bool = False
    newly_forgotten: bool = True
    forgotten_at: str = ""
    #: per store (a label naming it uniquely), rows changed by this run's passes, summed
    stores: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rows_changed(self) -> int:
        return sum(n for counts in self.stores.values() for n in counts.values())

    def lines(self) -> list[str]:
        """The summary ``careledger forget`` prints: what was done, nothing more."""
        if self.newly_forgotten:
            key = ("data key destroyed" if self.key_destroyed
                   else "no data key existed (none of their events carried a sensitive field)")
        else:
            key = f"already forgotten on {self.forgotten_at}; no data key left"
        out = [f"forgot {self.person_id}: {key}; tombstone {self.tombstone_id}"]
        out += [f"  {label}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                for label, counts in self.stores.items()]
        if not self.rows_changed:
            out.append(f"  no projection held rows of {self.person_id} to purge (an earlier forget did it, or none "
                       "of their events was processed yet: the workers erase those when they read them)")
        return out


def store_label(store: ProjectionStore, name: str | None = None) -> str:
    """A store's label in the summary: its registry name or projection, and where it is."""
    where = f" ({redact_url(store.url)})" if store.url else ""
    return f"{name or store.name}{where}"


def _default_stores(settings: Settings) -> list[tuple[str, Any]]:

    rules = load_rules(settings.rules_path)
    urls = [settings.sql_url] + ([settings.clickhouse_url] if settings.clickhouse_url else [])
    stores = [(store_label(store), store) for store in
              (open_store(url, rules, topic=settings.topics.events) for url in urls)]
    registry = Registry(settings)  # every store it knows: active, retired, building, snapshots
    for entry in registry.stores():
        if entry["url"] not in urls:
            urls.append(entry["url"])
            store = registry.open_named(entry["name"], rules)
            stores.append((store_label(store, entry["name"]), store))
    stores = [(label, store) for label, store in stores if isinstance(store, ErasableStore)]
    for _, store in stores:
        store.migrate()
    return stores


class _WebhookDeliveries:
    """The webhook delivery log (in the SQL store's database) as one more place to purge: the
    bodies are alert messages, hazards included (``DeliveryQueue.forget``)."""

    name = "webhook deliveries"

    def __init__(self, settings: Settings) -> None:

        self.queue = DeliveryQueue(sql_engine(settings.sql_url))

    def forget(self, person_id: str, _tombstone_id: str) -> dict[str, int]:
        return self.queue.forget(person_id)

    def close(self) -> None:
        self.queue.engine.dispose()


def forget_person(settings: Settings, person_id: str, *, keystore: Any = None, stores: list[Any] | None = None,
                  settle_s: float | None = None) -> ForgetReport:
    """Forget one person (by pseudonym) in the key store and every projection store.  ``stores``:
    stores or ``(label, store)`` pairs (default: every store of this home, and the webhook log)."""

    own_keystore = keystore is None
    keystore = keystore if keystore is not None else KeyStore.from_settings(settings)
    own_stores = stores is None
    if stores is None:
        stores = [*_default_stores(settings), ("webhook deliveries", _WebhookDeliveries(settings))]
    labelled = [s if isinstance(s, tuple) else (store_label(s), s) for s in stores]
    try:
        erasure = call_retrying(lambda: keystore.erase(person_id), "key store")
        report = ForgetReport(person_id, erasure.tombstone_id, erasure.key_destroyed, erasure.newly_forgotten,
                              erasure.forgotten_at)
        settle = settle_s if settle_s is not None else 2 * settings.batch_within_s + 2.0
        for attempt in (1, 2):  # the second pass catches a batch unsealed just before the key went
            if attempt == 2:
                if settle <= 0:
                    break
                time.sleep(settle)
            for label, store in labelled:
                counts = call_retrying(lambda s=store: s.forget(person_id, erasure.tombstone_id), f"store {label}")
                total = report.stores.setdefault(label, {})
                for kind, n in counts.items():
                    total[kind] = total.get(kind, 0) + n
        return report
    finally:
        if own_stores:
            for _, store in labelled:
                store.close()
        if own_keystore:
            keystore.close()


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "forget", help="erase a person (PIPL right to delete): destroy their key, purge every projection")
    parser.add_argument("person_id", nargs="?", help="the person's pseudonymous person_id")
    parser.add_argument("--id-number", dest="id_number", metavar="ID|-",
                        help="identify the person by national ID number instead ('-' reads it from standard "
                             "input, which keeps it out of shell history and the process list)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds before the second purge pass (default: 2 x batch window + 2)")
    parser.set_defaults(func=_forget)


def _forget(args: argparse.Namespace) -> int:

    settings = Settings.from_env()
    if (args.person_id is None) == (args.id_number is None):
        print("forget: give exactly one of PERSON_ID or --id-number", file=sys.stderr)
        return 2
    person_id = args.person_id
    if args.id_number is not None:
        raw = sys.stdin.readline().strip() if args.id_number == "-" else args.id_number
        try:
            person_id = Pseudonymiser(settings.secret("hmac-key")).person_id(raw)
        except InvalidIdNumber as exc:  # the message names the problem, never the number
            print(f"forget: {exc}", file=sys.stderr)
            return 2
    try:
        report = forget_person(settings, person_id, settle_s=args.settle)
    except Exception as exc:  # noqa: BLE001 - one clear line; re-running forget is safe
        print(f"forget: failed ({type(exc).__name__}: {exc}); the key is destroyed if the key store step "
              "passed - re-run the same command to finish purging the projections", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0
