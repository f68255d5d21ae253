"""projections/binding.py: a worker's store source travels to the applier process (pickled) and
opens the same active store there."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

from careledger.settings import Settings
from processors.domain.rules_config import default_rules
from projections.binding import ActiveStoreSource


def test_the_store_source_pickles_and_opens_the_same_store(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), home=tmp_path / "home",
                                   sql_url=f"sqlite:///{tmp_path / 'projections.sqlite3'}")
    source = ActiveStoreSource(settings, "sql", default_rules())
    copy = pickle.loads(pickle.dumps(source))
    assert (copy.settings, copy.projection, copy.rules) == (settings, "sql", source.rules)
    binding = copy.open()
    try:
        assert binding.writer.name == "sql" and binding.ping()
        assert copy.swapped() is False
    finally:
        binding.close()
