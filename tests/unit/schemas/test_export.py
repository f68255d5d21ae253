from __future__ import annotations

import json
from pathlib import Path

from schemas.catalogue import example, payload_fields
from schemas.enums import EVENT_TYPES
from schemas.events_doc import EVENTS_MD, docs_drift
from schemas.export import JSON_DIR, drift, main, render
from schemas.validation import validate_event


def test_committed_json_schemas_match_the_models() -> None:
    assert drift() == [], "run: .venv/bin/python -m schemas.export"


def test_one_file_per_type_plus_envelope() -> None:
    assert set(render()) == {f"{t}.json" for t in EVENT_TYPES} | {"envelope.json"}
    envelope = json.loads((JSON_DIR / "envelope.json").read_text())
    assert envelope["properties"]["type"]["enum"] == list(EVENT_TYPES)


def test_check_mode_detects_drift(tmp_path: Path) -> None:
    docs = ["--docs", str(tmp_path / "events.md")]
    assert main(["--dir", str(tmp_path), *docs]) == 0
    assert main(["--check", "--dir", str(tmp_path), *docs]) == 0
    (tmp_path / "job.posted.json").write_text("{}")
    (tmp_path / "stale.json").write_text("{}")
    assert main(["--check", "--dir", str(tmp_path), *docs]) == 1
    assert drift(tmp_path) == ["job.posted.json", "stale.json"]
    main(["--dir", str(tmp_path), *docs])
    (tmp_path / "events.md").write_text((tmp_path / "events.md").read_text() + "edited by hand\n")
    assert main(["--check", "--dir", str(tmp_path), *docs]) == 1


def test_the_committed_event_catalogue_matches_the_models() -> None:
    """docs/events.md (issue 16.6) is generated from schemas/: every type, version, field, type,
    rule, sensitivity and an example; it must be regenerated when they change."""
    assert not docs_drift(), "run: .venv/bin/python -m schemas.export"
    page = EVENTS_MD.read_text(encoding="utf-8")
    for event_type in EVENT_TYPES:
        assert f"### `{event_type}`" in page
        for spec in payload_fields(event_type):
            assert f"| `{spec.name}` |" in page
    assert "| `hazards` | list of string | yes | 1 | **yes** |" in page
    assert "| `duration_minutes` | integer or null | no | 2 | no |" in page


def test_every_catalogue_example_is_a_valid_event() -> None:
    for event_type in EVENT_TYPES:
        assert validate_event(example(event_type)).ok, event_type
