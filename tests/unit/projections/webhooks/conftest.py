"""Fixtures of the webhook tests: a subscription store on a temporary SQLite file."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from careledger.settings import Settings
from projections.webhook_store import WebhookStore


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env(), home=tmp_path / "home",
                               sql_url=f"sqlite:///{tmp_path / 'projections.sqlite3'}")


@pytest.fixture
def store(settings: Settings) -> Iterator[WebhookStore]:
    s = WebhookStore.from_settings(settings)
    s.migrate()
    yield s
    s.engine.dispose()
