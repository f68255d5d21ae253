"""The audit log never holds a credential or a raw ID number (issue 15 item 9).

Tokens sent in a query string are refused with a clear 401 and stored as ``[REDACTED]``; a
national ID number used as a person id is refused (422) without being echoed, and the audit row
masks it.  Checked through ``/api/audit`` and in the stored rows.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from projections.api.auth import REDACTED, audit_log, safe_query
from schemas.idnumber import MASK
from tests.support.reliability import record
from tests.unit.projections.api.conftest import ID_NUMBER, auth


def stored(client: TestClient) -> str:
    with client.app.state.tokens.engine.connect() as conn:
        return repr([tuple(r) for r in conn.execute(select(audit_log))])


@pytest.mark.parametrize("param", ["access_token", "token", "api_key", "Authorization"])
def test_a_token_in_the_query_string_is_refused_and_never_stored(client: TestClient, tokens: dict[str, str],
                                                                 param: str) -> None:
    secret = tokens["admin"]
    answer = client.get(f"/api/alerts?person_id=a1&{param}={secret}")
    assert answer.status_code == 401
    body = answer.json()
    assert body["type"] == "urn:careledger:problem:credential-in-url" and "Authorization header" in body["detail"]
    assert secret not in answer.text
    # on an aggregate too (a valid token in the URL does not count as one)
    assert client.get(f"/api/counts?kind=payment&{param}={secret}").status_code == 401
    audit = client.get("/api/audit", headers=auth(tokens["admin"]))
    row = next(r for r in audit.json()["items"] if r["path"] == "/api/alerts" and r["status"] == 401)
    assert row["query"] == f"person_id=a1&{param}={REDACTED}"
    assert secret not in audit.text and secret not in stored(client)


def test_a_token_shaped_value_is_redacted_whatever_its_name(client: TestClient, tokens: dict[str, str]) -> None:
    secret = tokens["viewer"]
    client.get(f"/api/alerts?rule={secret}", headers=auth(tokens["admin"]))
    assert secret not in stored(client)
    assert safe_query("rule=whsec_abc&x=Bearer%20cl_zzz&town=%E9%94%A6") == f"rule={REDACTED}&x={REDACTED}&town=%E9%94%A6"


@pytest.mark.parametrize("url", [f"/api/persons/{ID_NUMBER}/timeline", f"/api/alerts?person_id={ID_NUMBER}",
                                 f"/api/warnings?person_id={ID_NUMBER}", f"/api/persons/x{ID_NUMBER}y/timeline",
                                 f"/api/alerts?person_id=a1&note={ID_NUMBER}"])
def test_an_id_number_in_a_url_is_neither_echoed_nor_stored(client: TestClient, tokens: dict[str, str],
                                                            url: str) -> None:
    answer = client.get(url, headers=auth(tokens["admin"]))
    assert ID_NUMBER not in answer.text
    if "person_id=a1" not in url:
        assert answer.status_code == 422, answer.text
        assert "POST /api/persons/lookup" in answer.json()["detail"]
    audit = client.get("/api/audit", headers=auth(tokens["admin"]))
    assert ID_NUMBER not in audit.text and ID_NUMBER[:17] not in stored(client)
    row = audit.json()["items"][0]  # the newest: the request above (this read is written after it answers)
    assert MASK in (row["path"] + (row["query"] or "") + (row["person_id"] or ""))
    record("bad input", "audit log: credentials and ID numbers in URLs",
           claim="tokens in 4 query parameters refused (401) and stored as [REDACTED]; ID numbers in paths and "
                 "queries refused (422) without echo and masked in the audit row",
           cases=5)


@pytest.mark.parametrize(("url", "body"), [
    ("/api/persons/lookup", {ID_NUMBER: "x"}),
    ("/api/alerts/xyz/assign", {"assignee": "a", ID_NUMBER: 1}),
    ("/api/alerts/xyz/assign", {"assignee": "a", f"{ID_NUMBER[:6]} {ID_NUMBER[6:14]} {ID_NUMBER[14:]}": 1}),
])
def test_an_id_number_as_a_json_key_is_not_echoed_in_the_problem(client: TestClient, tokens: dict[str, str],
                                                                 url: str, body: dict[str, object]) -> None:
    """``errors[].loc`` names a body key the caller sent: masked like ``detail``."""
    answer = client.post(url, json=body, headers=auth(tokens["caseworker"]))
    assert answer.status_code == 422, answer.text
    assert ID_NUMBER[:6] not in answer.text and ID_NUMBER[14:] not in answer.text
    assert ["body", MASK] in [e["loc"] for e in answer.json()["errors"]]
