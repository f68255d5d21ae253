"""The audit log's tables: who read - or received - which person's data, when, and the answer.

Written by the read API for every person-level or admin request (``projections/api/auth.py``,
``TokenStore.audit``) and by the webhook deliverer for every POST to a subscriber
(``projections/webhooks/queue.py``, in the transaction that records the attempt).  Both write through
here so that neither imports the other.  The tables live in the read models' database with the API's
other tables, under the API's Alembic history (``projections/api_migrations``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from schemas.idnumber import MASK, contains_id_number, mask_ids

#: the API's tables (``api_tokens`` is added by projections/api/auth.py)
metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False, index=True),
    Column("token_name", String(128), nullable=True),
    Column("role", String(16), nullable=True),
    Column("method", String(8), nullable=False),
    Column("path", String(512), nullable=False),
    Column("query", Text, nullable=True),
    Column("person_id", String(128), nullable=True, index=True),
    Column("status", Integer, nullable=False),
)

#: the persons a list or a stream showed, one row each under the request's audit row: a list names
#: many persons and the URL none of them (``audit_log.person_id`` is the one a URL or an action named)
audit_subjects = Table(
    "audit_subjects",
    metadata,
    Column("person_id", String(128), primary_key=True),
    Column("audit_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Index("ix_audit_subjects_audit_id", "audit_id"),
)

#: every archive ``careledger audit archive`` made (``projections/audit_archive.py``), written once its
#: file is complete: where the rows written before ``before`` (UTC) went, so that the audit's
#: readers know the database alone no longer holds them and ``careledger audit search`` finds them
audit_archives = Table(
    "audit_archives",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("before", String(10), nullable=False),
    Column("file", Text, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("made_by", String(128), nullable=True),
)

#: the ``role`` of an audit row written for a webhook POST (its ``token_name`` is ``webhook:<id>``)
SUBSCRIBER = "subscriber"
#: the ``status`` of an audit row of a POST that got no answer (it may still have been read)
NO_ANSWER = 0


def safe_person_id(person_id: str | None) -> str | None:
    """A person id fit for the audit log: one that is (or holds) a national ID number is masked."""
    if person_id is None:
        return None
    return MASK if contains_id_number(person_id) else mask_ids(person_id)


class NamedOnce:
    """The persons one audit row has not named yet: a stream or an export names the persons of
    each frame or batch as it goes, each person once per row."""

    def __init__(self) -> None:
        self.named: set[str] = set()

    def fresh(self, persons: Iterable[str | None]) -> set[str]:
        new = {p for p in persons if p} - self.named
        self.named |= new
        return new


__all__ = ["NO_ANSWER", "SUBSCRIBER", "NamedOnce", "audit_log", "audit_subjects", "metadata", "safe_person_id"]
