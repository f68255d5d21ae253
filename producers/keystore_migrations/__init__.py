"""Alembic history of the key store (``careledger.migrations.KEYSTORE``): person_keys, tombstones, keystore_meta."""
