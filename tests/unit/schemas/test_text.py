"""Text helpers: lone surrogates made printable, control and invisible characters found, names
normalised."""

from __future__ import annotations

from schemas.text import (
    control_char,
    dotted,
    has_astral,
    invisible_char,
    normalise_name,
    printable,
    string_paths,
    surrogate_problems,
)


def test_printable_writes_lone_surrogates_as_escapes_and_always_encodes() -> None:
    assert printable("锦屏\ud800街道") == "锦屏\\ud800街道"
    assert printable("ok 锦屏") == "ok 锦屏"
    printable("\udfff\udbff").encode("utf-8")


def test_surrogate_problems_name_values_and_keys() -> None:
    problems = surrogate_problems({"town": "\ud800", "payload": {"x\udfff": ["a", "b\udc00"]}})
    assert [dotted(loc) for loc, _ in problems] == ["town", "payload.x\\udfff", "payload.x\\udfff[1]"]
    assert "\\ud800" in problems[0][1]
    assert surrogate_problems({"town": "锦屏街道", "n": [1, None]}) == []


def test_control_and_invisible_characters() -> None:
    assert control_char("a\x00b") == "U+0000"
    assert control_char("a\nb") == "U+000A" and control_char("a\nb", frozenset("\n")) is None
    assert control_char("a\u2028b") == "U+2028" and control_char("a\x85") == "U+0085"
    assert invisible_char("锦屏\u200b街道") == "U+200B" and invisible_char("\U000e0041") == "U+E0041"
    assert invisible_char("锦屏街道 东村") is None


def test_normalise_name() -> None:
    assert normalise_name("\u200b锦屏街道\ufeff") == "锦屏街道"
    assert normalise_name("东村１组") == "东村1组"  # full-width digits
    assert normalise_name("⼭下村") == "山下村"  # a Kangxi radical that looks like 山
    assert normalise_name("  东村　 二组 ") == "东村 二组"  # ideographic space, blanks collapsed


def test_string_paths_and_astral() -> None:
    assert list(string_paths({"a": ["x", {"b": "y"}], "n": 1})) == [(("a", 0), "x"), (("a", 1, "b"), "y")]
    assert not has_astral("锦屏街道") and has_astral("𠀀村") and not has_astral("ascii")
