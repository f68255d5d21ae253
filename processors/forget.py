"""``careledger forget PERSON_ID`` (or ``--id-number -``): erasure on an immutable log.

1. the key store destroys the person's data key and records a tombstone (pseudonym, random
   tombstone id, time): every sealed field of theirs on Kafka is unreadable from now on, and every
   consumer's next batch erases their events (``processors.privacy.unseal_batch``);
2. every projection store purges the person (``store.forget(person_id, tombstone_id)``): SQL
   (SQLite/PostgreSQL) and ClickHouse, and the webhook delivery log (bodies erased, pending
   deliveries cancelled; the deliverer skips their alerts still on the topic);
3. after ``settle_s`` seconds the stores are purged once more: a batch a worker had already
   unsealed before step 1 may have committed after step 2 (idempotent, usually a no-op).

The raw ID number is pseudonymised at once and never printed or logged.  See docs/privacy.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from careledger.settings import Settings

__all__ = ["ForgetReport", "forget_person", "register"]


@dataclass
class ForgetReport:
    person_id: str
    tombstone_id: str
    stores: dict[str, dict[str, int]] = field(default_factory=dict)


def _default_stores(settings: Settings) -> list[Any]:
    from processors.domain.rules_config import load_rules
    from projections import open_store

    rules = load_rules(settings.rules_path)
    urls = [settings.sql_url] + ([settings.clickhouse_url] if settings.clickhouse_url else [])
    stores = [open_store(url, rules, topic=settings.topics.events) for url in urls]
    try:  # every store the replay registry knows (active, retired, building, snapshots)
        from projections.registry import Registry
    except ImportError:  # pragma: no cover - a checkout without replay
        Registry = None  # type: ignore[assignment,misc]  # noqa: N806
    if Registry is not None:
        registry = Registry(settings)
        for entry in registry.stores():
            if entry["url"] not in urls:
                urls.append(entry["url"])
                stores.append(registry.open_named(entry["name"], rules))
    stores = [store for store in stores if hasattr(store, "forget")]
    for store in stores:
        store.migrate()
    return stores


class _WebhookDeliveries:
    """The webhook delivery log (in the SQL store's database) as one more place to purge: the
    bodies are alert messages, hazards included (``DeliveryQueue.forget``)."""

    name = "webhook deliveries"

    def __init__(self, settings: Settings) -> None:
        from processors.webhooks.queue import DeliveryQueue
        from projections.api.subscriptions import sql_engine

        self.queue = DeliveryQueue(sql_engine(settings.sql_url))

    def forget(self, person_id: str, _tombstone_id: str) -> dict[str, int]:
        return self.queue.forget(person_id)

    def close(self) -> None:
        self.queue.engine.dispose()


def forget_person(settings: Settings, person_id: str, *, keystore: Any = None, stores: list[Any] | None = None,
                  settle_s: float | None = None) -> ForgetReport:
    """Forget one person (by pseudonym) in the key store and every projection store."""
    from producers.keystore import KeyStore

    own_keystore = keystore is None
    keystore = keystore if keystore is not None else KeyStore.from_settings(settings)
    own_stores = stores is None
    stores = stores if stores is not None else [*_default_stores(settings), _WebhookDeliveries(settings)]
    try:
        tombstone_id = keystore.forget(person_id)
        report = ForgetReport(person_id, tombstone_id)
        for store in stores:
            report.stores[store.name] = store.forget(person_id, tombstone_id)
        settle = settle_s if settle_s is not None else 2 * settings.batch_within_s + 2.0
        if settle > 0:
            time.sleep(settle)
            for store in stores:
                again = store.forget(person_id, tombstone_id)
                for kind, n in again.items():
                    report.stores[store.name][kind] = report.stores[store.name].get(kind, 0) + n
        return report
    finally:
        if own_stores:
            for store in stores:
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
    from producers.pseudonym import InvalidIdNumber, Pseudonymiser

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
    print(f"forgot {report.person_id}: data key destroyed, tombstone {report.tombstone_id}")
    for name, counts in report.stores.items():
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
