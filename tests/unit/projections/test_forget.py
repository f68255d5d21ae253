"""``careledger forget``'s summary is true (processors/forget.py): every store is reported under its
own label, both passes are summed, and the key store's part says what really happened."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from careledger.settings import Settings
from producers.keystore import KeyStore
from projections.forget import ForgetReport, forget_person

MASTER = b"unit-test-master-key"


class FakeStore:
    """A projection store that holds ``rows`` rows of the person until purged."""

    def __init__(self, name: str, url: str, rows: int) -> None:
        self.name, self.url, self.rows, self.calls = name, url, rows, 0

    def forget(self, person_id: str, tombstone_id: str) -> dict[str, int]:
        self.calls += 1
        purged, self.rows = self.rows, 0
        return {"events": purged}

    def close(self) -> None:
        pass


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env(), home=tmp_path, sql_url=f"sqlite:///{tmp_path / 'p.sqlite3'}")


def test_stores_of_one_projection_are_all_reported(settings: Settings, tmp_path: Path) -> None:
    keystore = KeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}", MASTER)
    keystore.get_or_create(["p1"])
    # the active store after a replay swap and the retired one both answer to the projection name "sql"
    active = FakeStore("sql", "sqlite:////home/stores/sql-2.sqlite3", rows=7)
    retired = FakeStore("sql", "sqlite:////home/projections.sqlite3", rows=0)
    report = forget_person(settings, "p1", keystore=keystore, stores=[active, retired], settle_s=0)
    assert report.stores == {"sql (sqlite:////home/stores/sql-2.sqlite3)": {"events": 7},
                             "sql (sqlite:////home/projections.sqlite3)": {"events": 0}}
    assert report.key_destroyed and report.newly_forgotten and report.rows_changed == 7
    lines = report.lines()
    assert lines[0] == f"forgot p1: data key destroyed; tombstone {report.tombstone_id}"
    assert "  sql (sqlite:////home/stores/sql-2.sqlite3): events 7" in lines


def test_the_settle_pass_is_added_not_lost(settings: Settings, tmp_path: Path) -> None:
    keystore = KeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}", MASTER)
    store = FakeStore("sql", "sqlite:///a", rows=3)
    original = store.forget

    def late_batch(person_id: str, tombstone_id: str) -> dict[str, int]:
        answer = original(person_id, tombstone_id)
        store.rows = 2 if store.calls == 1 else 0  # a worker committed a batch unsealed just before
        return answer

    store.forget = late_batch  # type: ignore[method-assign]
    report = forget_person(settings, "p1", keystore=keystore, stores=[store], settle_s=0.01)
    assert store.calls == 2 and report.stores == {"sql (sqlite:///a)": {"events": 5}}


def test_a_second_forget_says_so_instead_of_claiming_a_key_was_destroyed(settings: Settings, tmp_path: Path) -> None:
    keystore = KeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}", MASTER)
    keystore.get_or_create(["p1"])
    first = forget_person(settings, "p1", keystore=keystore, stores=[FakeStore("sql", "sqlite:///a", 4)], settle_s=0)
    second = forget_person(settings, "p1", keystore=keystore, stores=[FakeStore("sql", "sqlite:///a", 0)],
                           settle_s=0)
    assert second.tombstone_id == first.tombstone_id
    text = "\n".join(second.lines())
    assert f"already forgotten on {first.forgotten_at}" in text and "data key destroyed" not in text
    assert "no projection held rows of p1 to purge" in text


def test_no_key_and_no_rows_are_stated_plainly() -> None:
    report = ForgetReport("p9", "xabc", key_destroyed=False, newly_forgotten=True, forgotten_at="t",
                          stores={"sql (sqlite:///a)": {"events": 0}})
    text = "\n".join(report.lines())
    assert "no data key existed" in text and "no projection held rows of p9" in text
