"""``careledger backup DEST`` and ``careledger restore SRC``: what cannot be rebuilt, and only that.

The read models are rebuilt from the log (docs/replay.md), so a backup holds what they are built
from and what nothing else can give back:

* ``events/p<partition>.jsonl.gz`` - every record of ``careledger.events`` as Kafka holds it (key,
  value - sealed fields stay sealed -, original offset and timestamp), read with the replay
  reader's contiguity checks;
* ``keys.sqlite3`` - the key store's rows (wrapped data keys, erasure tombstones), from SQLite or
  PostgreSQL alike; without the master key they open nothing;
* ``api.sqlite3`` - the read API's own tables: bearer tokens (hashes), the audit log, webhook
  subscriptions and their delivery log;
* ``secrets/`` - the HMAC key, master key and webhook key, only with ``--include-secrets``
  (the default leaves them to a secret manager: the key store and the secrets together open every
  sealed field, so keep them apart);
* ``manifest.json`` - what is in it, the record counts per partition, and a SHA-256 per file.

A backup can be taken while the stack runs: the events up to the moment it starts first, then the
key store, which then holds the key of every sealed field in the dump (a key is stored before any
event sealed with it is published).

``restore`` checks every checksum first, refuses a home or topic that already holds data,
re-creates the key store and the API tables, checks that the master key opens the restored keys,
and publishes the records again - same partition, key, value and timestamp, in offset order -
with the publisher's no-loss settings.  The processors then build every projection from the
restored log.  Files are written 0600 in a 0700 directory: the dump holds pseudonymous events and
sealed fields, no raw ID number (careledger never had one), but it is personal data all the same.
"""

from __future__ import annotations

from infra.backups.layout import BackupError, Manifest
from infra.backups.restore import check, restore
from infra.backups.take import backup, prune_backups, stamped_dir

__all__ = ["BackupError", "Manifest", "backup", "check", "prune_backups", "restore", "stamped_dir"]
