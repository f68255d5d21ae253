"""The fast JSON writer gives exactly the standard library's text (stored bodies and aggregates
must not change with the library that wrote them)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from schemas.jsontext import dumps_bytes, dumps_canonical, dumps_compact, loads

# what events, aggregates and alerts hold: no floats (amounts are integer fen)
scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=25)


def std_compact(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def std_canonical(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


@given(values)
def test_same_text_as_the_standard_library(obj):
    assert dumps_compact(obj) == std_compact(obj)
    assert dumps_canonical(obj) == std_canonical(obj)
    assert dumps_bytes(obj) == std_compact(obj).encode("utf-8")
    assert loads(dumps_compact(obj)) == json.loads(std_compact(obj))


def test_chinese_text_is_kept_and_big_integers_fall_back():
    obj = {"town": "锦屏街道", "b": 2**80, "a": [1, None, True]}
    assert dumps_compact(obj) == '{"town":"锦屏街道","b":1208925819614629174706176,"a":[1,null,true]}'
    assert dumps_canonical(obj).startswith('{"a":[1,null,true],"b":1208925819614629174706176')
    for big in (2**80, -(2**63) - 1, 2**64):  # orjson alone would read these as floats
        assert loads(dumps_compact({"n": big})) == {"n": big}


def test_dates_are_written_as_str_in_canonical_text():
    moment = datetime(2024, 3, 5, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    obj = {"at": moment, "day": date(2024, 3, 5)}
    assert dumps_canonical(obj) == std_canonical(obj)
