"""The ceiling of any faust-streaming agent on this machine: a bare agent that only decodes.

An agent over the events topic with ``take_events`` batches (as careledger's worker) that
``json.loads`` each value and does nothing else.  ``bench/pipeline.py`` runs it in the same run as
the careledger worker, so the report separates what Faust's per-event machinery costs (an
asyncio hand-off per event) from what careledger's projection costs.

    .venv/bin/python bench/faust_ceiling.py --bootstrap 127.0.0.1:9092 --topic careledger.events \
        --events 300000 --result /tmp/ceiling.txt

Writes "<events/s from process start> <events/s from the first batch> <peak RSS, MB>" to ``--result``
and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

STARTED = time.perf_counter()


def peak_rss_mb() -> float:
    """VmHWM of this process: ``ru_maxrss`` is kept across exec on Linux, so it would report the
    launching benchmark's peak if that was higher (tests/unit/processors/replay/test_peak_rss.py)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--within", type=float, default=0.5)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    import faust
    from mode.utils.times import want_seconds

    app = faust.App(f"bench-ceiling-{uuid.uuid4().hex[:8]}", broker=f"kafka://{args.bootstrap}", store="memory://",
                    web_enabled=False, topic_disable_leader=True, consumer_auto_offset_reset="earliest",
                    broker_commit_every=args.batch, stream_buffer_maxsize=args.batch,  # the worker's own faust settings
                    consumer_max_fetch_size=512 * 1024, datadir=tempfile.mkdtemp(prefix="bench-ceiling-"))
    topic = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    seen = 0
    first_batch: float | None = None

    @app.agent(topic)
    async def decode_only(stream: faust.Stream) -> None:
        nonlocal seen, first_batch
        async for batch in stream.take_events(args.batch, within=want_seconds(args.within)):
            first_batch = first_batch or time.perf_counter()
            for event in batch:
                json.loads(event.message.value)
            seen += len(batch)
            if seen >= args.events:
                now = time.perf_counter()
                peak_mb = peak_rss_mb()
                args.result.write_text(f"{seen / (now - STARTED):.0f} {seen / (now - first_batch):.0f} {peak_mb:.0f}\n")
                os._exit(0)  # the measurement is done; a graceful Faust stop takes seconds

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
