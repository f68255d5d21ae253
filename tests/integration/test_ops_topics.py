"""``careledger topics create|describe`` against the real broker: partitions from the settings."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

from careledger.settings import Topics
from tests.support.pipeline import REPO_ROOT
from tests.support.servers import TestStack


def test_topics_create_uses_partitions_from_config_and_is_idempotent(stack: TestStack) -> None:
    ns = "t" + uuid.uuid4().hex[:10]
    settings = dataclasses.replace(stack.settings, topics=Topics.with_namespace(ns), event_partitions=5)
    env = {**os.environ, **settings.to_env()}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "careledger.cli", "topics", *args], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    missing = run("describe")
    assert missing.returncode == 1 and f"{ns}.careledger.events: missing" in missing.stdout
    first = run("create")
    assert first.returncode == 0, first.stderr
    assert f"created {ns}.careledger.events" in first.stdout
    assert f"{ns}.careledger.events: 5 partitions, replication 1" in first.stdout
    again = run("create")
    assert again.returncode == 0 and "all topics exist" in again.stdout
    assert run("describe").returncode == 0
