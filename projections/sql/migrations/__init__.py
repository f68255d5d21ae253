"""Alembic environment of the SQL read models (run programmatically by ``SqlStore.migrate``)."""
