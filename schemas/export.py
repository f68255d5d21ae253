"""Write the JSON Schema of every event type to ``schemas/json`` and the event catalogue to
``docs/events.md`` (``python -m schemas.export``, ``make schemas``).

The files are generated from the models and committed so non-Python consumers (dashboards, the
federation's own exporters) can validate without this code, and people can read the catalogue.
``--check`` exits 1 on drift; a unit test runs the same comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Union

from pydantic import TypeAdapter

from schemas import enums
from schemas.events_doc import EVENTS_MD, docs_drift, render_events_md
from schemas.models import EVENT_MODELS, SUPPORTED_VERSIONS, Envelope

JSON_DIR = Path(__file__).resolve().parent / "json"


def _envelope_schema() -> dict[str, Any]:
    schema = Envelope.model_json_schema()
    schema["title"] = "careledger event envelope"
    schema["properties"]["type"]["enum"] = list(enums.EVENT_TYPES)
    schema["properties"]["version"]["default"] = 1
    return schema


def _type_schema(event_type: str) -> dict[str, Any]:
    versions = SUPPORTED_VERSIONS[event_type]
    if len(versions) == 1:
        schema = EVENT_MODELS[(event_type, versions[0])].model_json_schema()
    else:  # any supported version
        models = tuple(EVENT_MODELS[(event_type, v)] for v in versions)
        schema = TypeAdapter(Union[models]).json_schema()  # noqa: UP007 - built at runtime
    schema["title"] = f"careledger {event_type} event"
    schema["allOf"] = [_person_rule(event_type)]
    return schema


def _person_rule(event_type: str) -> dict[str, Any]:
    """The cross-field person_id / id_number rule, which the field types alone cannot say."""
    if event_type in enums.PERSONLESS_TYPES:
        return {"properties": {"person_id": {"type": "null"}}, "not": {"required": ["id_number"]}}
    return {
        "oneOf": [
            {"required": ["person_id"], "properties": {"person_id": {"type": "string"}},
             "not": {"required": ["id_number"]}},
            {"required": ["id_number"], "properties": {"id_number": {"type": "string"}},
             "anyOf": [{"not": {"required": ["person_id"]}}, {"properties": {"person_id": {"type": "null"}}}]},
        ]
    }


def render() -> dict[str, str]:
    """file name -> file text, exactly as committed."""
    schemas = {"envelope.json": _envelope_schema()}
    schemas.update({f"{t}.json": _type_schema(t) for t in enums.EVENT_TYPES})
    return {
        name: json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema},
                         indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        for name, schema in schemas.items()
    }


def drift(directory: Path = JSON_DIR) -> list[str]:
    """Names of files missing, different or extra compared with the models."""
    expected = render()
    present = {p.name for p in directory.glob("*.json")} if directory.exists() else set()
    out = [n for n, text in expected.items() if n not in present or (directory / n).read_text() != text]
    return out + sorted(present - expected.keys())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files drift")
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help="where the JSON Schema files go")
    parser.add_argument("--docs", type=Path, default=EVENTS_MD, help="where the event catalogue page goes")
    args = parser.parse_args(argv)
    if args.check:
        stale = [str(args.dir / name) for name in drift(args.dir)]
        stale += [str(args.docs)] if docs_drift(args.docs) else []
        for name in stale:
            print(f"out of date: {name} (run: python -m schemas.export)", file=sys.stderr)
        return 1 if stale else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    expected = render()
    for name, text in expected.items():
        (args.dir / name).write_text(text)
    for extra in set(p.name for p in args.dir.glob("*.json")) - expected.keys():
        (args.dir / extra).unlink()
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(render_events_md(), encoding="utf-8")
    print(f"wrote {len(expected)} schemas to {args.dir} and the catalogue to {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
