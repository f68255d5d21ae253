"""Alembic env: online only, on the connection ``careledger.migrations.upgrade`` hands over."""

from __future__ import annotations

from alembic import context

from careledger.migrations import run_env

run_env(context)
