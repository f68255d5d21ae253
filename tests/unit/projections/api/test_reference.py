"""The API reference in the repository matches the live app, and the description tells the truth
about access and errors (issue 16.1)."""

from __future__ import annotations

from typing import Any

import pytest

from projections.api import reference
from projections.api.openapi import METHODS
from projections.api.policy import POLICIES, PUBLIC


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return reference.reference_app().openapi()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, item[method]) for path, item in doc["paths"].items() for method in METHODS
            if method in item]


def test_docs_api_is_what_the_app_serves(doc: dict[str, Any]) -> None:
    stale = reference.drift(doc)
    assert stale == [], f"{stale} drifted from the code: run .venv/bin/python -m projections.api.reference"


def test_security_follows_the_policy_matrix(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer TOKEN (careledger token create)"}
    for path, method, op in operations(doc):
        policy = POLICIES[path]
        if policy == PUBLIC:
            assert "security" not in op, (method, path)
        elif policy == "viewer":
            assert op["security"] == [{}, {"bearer": []}], (method, path)
        else:
            assert op["security"] == [{"bearer": []}], (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_every_error_is_documented_as_a_problem(doc: dict[str, Any]) -> None:
    assert len(operations(doc)) >= 22
    for path, method, op in operations(doc):
        answers = op["responses"]
        assert "500" in answers, (method, path)
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in answers, (method, path)
        for status, answer in answers.items():
            if int(status) >= 400:
                assert list(answer["content"]) == ["application/problem+json"], (method, path, status)
            elif int(status) < 300:
                assert answer.get("content"), (method, path, status)  # a response model, not "any"
        for parameter in op.get("parameters", []):
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), (method, path, parameter["name"])
    dates = [p["schema"] for _, _, op in operations(doc) for p in op.get("parameters", []) if p["name"] == "from"]
    assert dates and all(s["pattern"] == "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" for s in dates)


def test_every_reference_resolves_within_the_document(doc: dict[str, Any]) -> None:
    """ReDoc stops drawing at the first ``$ref`` it cannot follow (a pydantic ``$defs`` left nested)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                found.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    schemas = doc["components"]["schemas"]
    assert found
    dangling = sorted({ref for ref in found if ref.removeprefix("#/components/schemas/") not in schemas})
    assert dangling == [], dangling
    assert not [name for name, schema in schemas.items() if "$defs" in schema]
