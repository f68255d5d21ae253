from __future__ import annotations

import json
from pathlib import Path

from schemas.enums import EVENT_TYPES
from schemas.export import JSON_DIR, drift, main, render


def test_committed_json_schemas_match_the_models() -> None:
    assert drift() == [], "run: .venv/bin/python -m schemas.export"


def test_one_file_per_type_plus_envelope() -> None:
    assert set(render()) == {f"{t}.json" for t in EVENT_TYPES} | {"envelope.json"}
    envelope = json.loads((JSON_DIR / "envelope.json").read_text())
    assert envelope["properties"]["type"]["enum"] == list(EVENT_TYPES)


def test_check_mode_detects_drift(tmp_path: Path) -> None:
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "job.posted.json").write_text("{}")
    (tmp_path / "stale.json").write_text("{}")
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    assert drift(tmp_path) == ["job.posted.json", "stale.json"]
