"""The reliability report: what the fault and bad-input tests tried, with the figures they saw.

Each test calls ``record(category, name, claim=..., **figures)`` with its real numbers (kills
done, offsets at the kill, differences found, examples run, rejections ...).  Entries are merged
into ``test-artifacts/reliability.json`` as they come (one entry per category + name, the latest
run wins), so the file is complete at the end of the session whatever order the tests ran in.

``python -m tests.support.reliability`` renders that file as a markdown table into
docs/reliability.md and a few summary lines into README.md (between ``<!-- reliability:begin -->``
and ``<!-- reliability:end -->``).

Also here: small helpers the fault tests share (a private Kafka broker, a clean reference run,
reading a topic back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = Path(os.environ.get("CARELEDGER_RELIABILITY_JSON", REPO_ROOT / "test-artifacts" / "reliability.json"))
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
CATEGORY_ORDER = ("fault", "poison", "bad input", "fuzz")


# ---------------------------------------------------------------------------------------------- record
def record(category: str, name: str, *, claim: str = "", **figures: Any) -> dict[str, Any]:
    """Store one result.  ``claim`` is a sentence with ``{figure}`` placeholders, e.g.
    ``"{kills} SIGKILLs of the broker, {differences} differences"``; figures must be JSON values."""
    entry = {
        "category": category,
        "name": name,
        "claim": claim.format(**figures) if claim else "",
        "figures": figures,
        "test": (os.environ.get("PYTEST_CURRENT_TEST") or "").split(" (")[0],
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _load()
        entries = [e for e in entries if (e["category"], e["name"]) != (category, name)] + [entry]
        tmp = ARTIFACT.with_suffix(".tmp")
        tmp.write_text(json.dumps({"entries": entries}, ensure_ascii=False, indent=1, default=str))
        tmp.replace(ARTIFACT)
    return entry


def _load(path: Path = ARTIFACT) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text())["entries"])
    except (FileNotFoundError, ValueError, KeyError):
        return []


# ---------------------------------------------------------------------------------------------- render
def _figure_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list) and len(value) > 8:
        return "[" + ", ".join(map(str, value[:8])) + f", … {len(value) - 8} more]"
    return str(value)


def render(entries: list[dict[str, Any]], details: bool = False) -> str:
    def order(e: dict[str, Any]) -> tuple[int, str]:
        cat = e["category"]
        return (CATEGORY_ORDER.index(cat) if cat in CATEGORY_ORDER else len(CATEGORY_ORDER), e["name"])

    entries = sorted(entries, key=order)
    if not entries:
        return "_No reliability results recorded yet: run the fault and bad-input tests._\n"
    latest = max(e["recorded_at"] for e in entries)
    lines = [
        f"Produced by the test suite (`tests/support/reliability.py`, last recorded {latest}); "
        "every figure below is what the tests counted, not typed by hand.",
        "",
        "| class | what was tried | result | figures | test |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        figures = ", ".join(f"{k}={_figure_text(v)}" for k, v in e["figures"].items()
                            if not isinstance(v, dict) and k != "failures")
        test = e["test"].replace("tests/", "", 1) if e["test"] else ""
        cells = [e["category"], e["name"], e["claim"], figures, f"`{test}`" if test else ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    if details:
        for e in entries:
            for key, value in e["figures"].items():
                if isinstance(value, dict) and value:
                    lines += ["", f"**{e['name']}** — {key}:", ""]
                    lines += [f"- {k}: {str(v).replace(chr(10), ' ')}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def render_summary(entries: list[dict[str, Any]]) -> str:
    """The README's few lines: per class, how many scenarios the last run tried and one of them;
    the whole table is docs/reliability.md's."""
    if not entries:
        return "_No reliability results recorded yet: run the fault and bad-input tests._\n"
    latest = max(e["recorded_at"] for e in entries)
    lines = [f"What the last test run tried on purpose (recorded by the tests, {latest[:10]}):", "",
             "| class | scenarios | for example |", "|---|---:|---|"]
    by_class: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_class.setdefault(e["category"], []).append(e)
    for cat in sorted(by_class, key=lambda c: CATEGORY_ORDER.index(c) if c in CATEGORY_ORDER else 99):
        shown = min(by_class[cat], key=lambda e: len(e["claim"] or e["name"]))  # the shortest says it best
        example = f"{shown['name']}: {shown['claim']}" if shown["claim"] else shown["name"]
        lines.append(f"| {cat} | {len(by_class[cat])} | {example.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_readme(readme: Path, body: str) -> None:
    text = readme.read_text() if readme.exists() else ""
    block = (f"{BEGIN}\n{body}\nEvery scenario with its figures: [docs/reliability.md](docs/reliability.md).\n"
             f"{END}")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


def write_doc(doc: Path, body: str) -> None:
    text = doc.read_text() if doc.exists() else "# Reliability\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + f"{BEGIN}\n{body}{END}" + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## Results of the last run\n\n{BEGIN}\n{body}{END}\n"
    doc.write_text(text)


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else ARTIFACT
    entries = _load(source)
    if not entries:
        print(f"no results in {source}: run the fault and bad-input tests first", file=sys.stderr)
        return 1
    write_readme(REPO_ROOT / "README.md", render_summary(entries))
    write_doc(REPO_ROOT / "docs" / "reliability.md", render(entries, details=True))
    print(f"rendered {len(entries)} results from {source} into README.md and docs/reliability.md")
    return 0


# ---------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def private_kafka(home: Path, partitions: int = 4) -> Iterator[tuple[Any, Any]]:
    """A Kafka broker of its own (for tests that kill it), with settings pointing at it and the
    careledger topics created; stopped (and its data kept under ``home``) on exit."""
    from careledger.settings import Settings, Topics
    from infra.kafka_broker import KafkaBroker, ensure_topics
    from infra.process import free_port

    home.mkdir(parents=True, exist_ok=True)
    port, controller = free_port(), free_port()
    settings = dataclasses.replace(
        Settings.from_env(), home=home, kafka_port=port, kafka_controller_port=controller,
        kafka_bootstrap=f"127.0.0.1:{port}", api_port=free_port(), event_partitions=partitions,
        sql_url=f"sqlite:///{home / 'projections.sqlite3'}", clickhouse_url=None, kafka_security={},
        topics=Topics.with_namespace("rel"), processor_group="rel-processor", keystore_url="",
    )
    broker = KafkaBroker(settings)
    try:
        broker.start()
        ensure_topics(settings)
        yield broker, settings
    finally:
        broker.stop()


def topic_records(settings: Any, topic: str, *, timeout: float = 120.0) -> list[Any]:
    """Every record on ``topic`` up to its end offsets now, each once, in offset order per
    partition (the replay reader: contiguity-checked).  Records have ``partition, offset,
    timestamp_ms, key, value``."""
    from processors.replay.reader import log_bounds, read_log

    starts, ends = log_bounds(settings, topic=topic)
    out: list[Any] = []
    for chunk in read_log(settings, starts, ends, topic=topic, stall_timeout_s=timeout):
        out.extend(chunk)
    return out


def dead_letters(settings: Any) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in topic_records(settings, settings.topics.dlq)]


def clean_run(settings: Any, url: str, batch: int = 2000, upto: dict[int, int] | None = None) -> Any:
    """The reference: every record now on the events topic applied once, in partition order, by
    the same code a worker runs (the projection runtime: decode, unseal, apply) into a fresh store at
    ``url``, with no fault injected.  ``upto``: only offsets <= upto[partition] (a store's
    ``offsets()``: "what a store holding these positions must contain").  Returns the store."""
    from processors.runtime.records import RawRecord
    from producers.keystore import KeyStore
    from tests.support.pipeline import open_test_store
    from tests.support.runtime import runtime_for

    store = open_test_store(settings, url)
    runner = runtime_for(store, KeyStore.from_settings(settings))
    by_partition: dict[int, list[Any]] = {}
    for r in topic_records(settings, settings.topics.events):
        if upto is not None and r.offset > upto.get(r.partition, -1):
            continue
        by_partition.setdefault(r.partition, []).append(RawRecord(r.partition, r.offset, r.key, r.value))
    raws = [r for p in sorted(by_partition) for r in sorted(by_partition[p], key=lambda x: x.offset)]
    for start in range(0, len(raws), batch):
        runner.apply(raws[start:start + batch])
    return store


def diff_snapshots(got: dict[str, list[Any]], want: dict[str, list[Any]]) -> dict[str, int]:
    """Rows that differ per table (symmetric difference size); all zero when equal."""
    out = {}
    for table in sorted(set(got) | set(want)):
        a, b = got.get(table, []), want.get(table, [])
        if a == b:
            out[table] = 0
            continue
        sa, sb = {repr(x) for x in a}, {repr(x) for x in b}
        out[table] = max(len(sa ^ sb), abs(len(a) - len(b)), 1)
    return out


def event_differences(got: dict[str, list[Any]], want: dict[str, list[Any]], limit: int = 10) -> str:
    """Which events one snapshot has and the other lacks (first column of ``ledger``/``events`` rows)."""
    table = "ledger" if "ledger" in got or "ledger" in want else "events"
    a, b = {r[0] for r in got.get(table, [])}, {r[0] for r in want.get(table, [])}
    return f"events missing: {sorted(b - a)[:limit]}; extra: {sorted(a - b)[:limit]}"


def sample_events(persons: int = 1500, seed: int = 11, resend_fraction: float = 0.0) -> list[dict[str, Any]]:
    """A small simulated district (1500 persons: ~14k events of every type, alerts included)."""
    from producers.simulate.generator import SimConfig, generate

    return list(generate(SimConfig(seed=seed, persons=persons, resend_fraction=resend_fraction)))


def end_offsets(settings: Any, topic: str | None = None) -> int:
    """Sum of the end offsets of ``topic`` (default: the events topic); -1 if the broker is down."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    topic = topic or settings.topics.events
    try:
        consumer = KafkaConsumer(**settings.kafka_client_options(), group_id=None, request_timeout_ms=15000)
    except (KafkaError, OSError):
        return -1
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    except (KafkaError, OSError):
        return -1
    finally:
        consumer.close()


def offsets_sum(store: Any) -> int:
    """Events applied so far (sum over partitions of last offset + 1)."""
    return sum(o + 1 for o in store.offsets().values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
