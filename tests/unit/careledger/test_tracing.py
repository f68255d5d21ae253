"""careledger/tracing.py: W3C traceparent text, parent/child, malformed input, optional export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from careledger import tracing
from careledger.settings import Settings

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def ids(traceparent: str) -> tuple[str, str]:
    found = TRACEPARENT.match(traceparent)
    assert found, traceparent
    return found.group(1), found.group(2)


def test_an_event_span_is_a_w3c_traceparent_with_real_ids() -> None:
    first, second = tracing.event_traceparent(), tracing.event_traceparent()
    (t1, s1), (t2, s2) = ids(first), ids(second)
    assert t1 != t2 and s1 != s2  # every event starts its own trace
    assert int(t1, 16) and int(s1, 16)  # all-zero ids are invalid in W3C
    assert tracing.parse(first) is not None and tracing.trace_id(first) == t1


def test_children_share_the_trace_id_and_get_their_own_span_id() -> None:
    root = tracing.event_traceparent()
    apply = tracing.child("apply event", root)
    relay = tracing.child("publish alert", apply.encode())  # Kafka headers are bytes
    with tracing.span("deliver webhook", relay) as post:
        pass
    chain = [ids(tp) for tp in (root, apply, relay, post)]
    assert len({t for t, _ in chain}) == 1
    assert len({s for _, s in chain}) == 4
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert ids(tracing.event_traceparent(caller))[0] == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize("bad", [
    "", "garbage", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
    b"\xff\xfe", None,
])
def test_a_malformed_traceparent_is_ignored_not_an_error(bad: str | bytes | None) -> None:
    assert tracing.parse(bad) is None and tracing.trace_id(bad) is None
    trace_a, _ = ids(tracing.child("apply event", bad))  # a new trace instead
    trace_b, _ = ids(tracing.event_traceparent(bad))
    assert trace_a != trace_b


def test_the_header_is_found_among_kafka_and_http_headers() -> None:
    value = tracing.event_traceparent()
    assert tracing.header([("other", b"x"), *tracing.kafka_headers(value)]) == value
    assert tracing.header({"traceparent": value}) == value
    assert tracing.header(None) is None and tracing.header([]) is None
    assert tracing.header([("traceparent", b"\xff")]) is None


def test_no_exporter_by_default_and_a_clear_error_when_export_cannot_work(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path))
    monkeypatch.delenv("CARELEDGER_OTLP_ENDPOINT", raising=False)
    tracing.configure(Settings.from_env(), "test")
    assert not tracing.exporting()
    assert ids(tracing.child("x"))
    monkeypatch.setenv("CARELEDGER_OTLP_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    settings = Settings.from_env()
    assert settings.otlp_endpoint == "http://127.0.0.1:9/v1/traces"
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        with pytest.raises(tracing.TracingUnavailable, match="CARELEDGER_OTLP_ENDPOINT"):
            tracing.configure(settings, "test")
    else:  # pragma: no cover - the optional package is installed here
        tracing.configure(settings, "test")
        assert tracing.exporting()
    monkeypatch.delenv("CARELEDGER_OTLP_ENDPOINT")
    tracing.configure(Settings.from_env(), "test")  # back to the default for the other tests
    assert not tracing.exporting()


def test_only_a_valid_traceparent_is_kept() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert tracing.valid(good) == good and tracing.valid(good.encode()) == good
    assert tracing.valid("00-garbage") is None and tracing.valid("x" * 1000) is None and tracing.valid(None) is None
