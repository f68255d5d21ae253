from __future__ import annotations

import re

import pytest

from careledger.settings import Settings
from producers.pseudonym import MASK, InvalidIdNumber, Pseudonymiser, redact, redact_text

ID = "110101199003071233"
ID_X = "11010519491231002X"


def test_hmac_is_stable_and_keyed() -> None:
    a, b = Pseudonymiser(b"secret-1"), Pseudonymiser(b"secret-2")
    pid = a.person_id(ID)
    assert re.fullmatch(r"p[0-9a-f]{32}", pid)
    assert a.person_id(ID) == pid == Pseudonymiser(b"secret-1").person_id(f" {ID} ")
    assert b.person_id(ID) != pid
    assert a.person_id(ID_X) == a.person_id(ID_X.lower())
    assert ID not in pid and ID[:8] not in pid


def test_known_vector() -> None:
    import hashlib
    import hmac

    expected = "p" + hmac.new(b"k", ID.encode(), hashlib.sha256).hexdigest()[:32]
    assert Pseudonymiser(b"k").person_id(ID) == expected


@pytest.mark.parametrize("bad", ["110101199003071234", "1101011990", "11010119900307123A", ""])
def test_invalid_ids_rejected_without_echo(bad: str) -> None:
    with pytest.raises(InvalidIdNumber) as info:
        Pseudonymiser(b"k").person_id(bad)
    assert str(info.value).startswith("id_number: ")
    assert not bad or bad not in str(info.value)


def test_apply_replaces_id_number() -> None:
    event = {"event_id": "e", "person_id": None, "id_number": ID, "payload": {}}
    out = Pseudonymiser(b"k").apply(event)
    assert "id_number" not in out and out["person_id"].startswith("p")


def test_secret_comes_from_settings(settings: Settings) -> None:
    assert Pseudonymiser.from_settings(settings).person_id(ID) == Pseudonymiser(b"unit-test-secret").person_id(ID)
    assert "unit-test" not in repr(Pseudonymiser(b"unit-test-secret"))


def test_redact_everything_id_like() -> None:
    record = {
        "id_number": "garbage-not-an-id",
        "身份证号": "whatever",
        "note": f"see {ID} and cert {ID}42, also {ID_X.lower()}",
        "nested": [{"x": ID}, ID.encode()],
        ID: "key too",
        "number": int(ID[:17]),
        "ok": 12,
        "flag": True,
    }
    out = redact(record)
    text = repr(out)
    for secret in (ID, ID_X.lower(), "garbage-not-an-id", "whatever", ID[:17]):
        assert secret not in text
    assert out["id_number"] == MASK and out["ok"] == 12 and out["flag"] is True
    assert out["note"] == f"see {MASK} and cert {MASK}, also {MASK}"


def test_redact_text_handles_broken_json() -> None:
    assert "1234" not in redact_text('{"id_number": "1234", "a": 1')
    assert "99" not in redact_text('{"id_number":99,')
