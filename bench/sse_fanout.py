"""Many open alert streams on one API: the latency of a change to every stream, and the API's CPU.

Starts ``careledger serve`` on a temporary CARELEDGER_HOME with an SQLite store (no Kafka: the
stream reads the store's outbox), opens ``--streams`` following ``/api/alerts/stream`` connections
(as that many caseworkers' dashboards would), measures the API process's CPU while they sit idle,
then commits ``--changes`` outbox rows at ``--rate`` per second, as the processor does, and records
when each reaches each stream.  Prints the idle CPU, the CPU while changes flow, and the latency
from the commit to the streams (median, p99, max over every arrival).

    .venv/bin/python bench/sse_fanout.py --streams 200 --changes 200 --rate 10
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from careledger.settings import Settings  # noqa: E402
from infra.process import cpu_seconds, free_port, terminate, wait_until  # noqa: E402
from projections.api.auth import ensure_admin_token  # noqa: E402
from projections.sql.store import SqlStore  # noqa: E402

TOWN = "锦屏街道"


async def stream(url: str, token: str, arrivals: dict[str, list[float]], opened: asyncio.Event,
                 count: list[int], total: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0)) as client, \
            client.stream("GET", url + "/api/alerts/stream", headers=headers) as response:
        response.raise_for_status()
        count[0] += 1
        if count[0] == total:
            opened.set()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                arrivals.setdefault(data["alert_id"], []).append(time.time())


def commit_change(db: sqlite3.Connection, i: int) -> tuple[str, float]:
    alert_id = f"Abench{i:06d}"
    # about a person, as every alert is: each stream names the person in the audit log before it sends the frame
    body = json.dumps({"alert_id": alert_id, "rule": "visit_hazard", "severity": "high", "person_id": f"pbench{i:06d}",
                       "town": TOWN, "status": "open"}, ensure_ascii=False)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime())
    db.execute("INSERT INTO alert_outbox (alert_id, channel, body, created_at, sent_at) VALUES (?, 'alert', ?, ?, ?)",
               (alert_id, body, now, now))
    db.commit()
    return alert_id, time.time()


async def measure(args: argparse.Namespace, settings: Settings, token: str, pid: int, db_path: Path) -> None:
    arrivals: dict[str, list[float]] = {}
    opened, count = asyncio.Event(), [0]
    tasks = [asyncio.create_task(stream(settings.api_url, token, arrivals, opened, count, args.streams))
             for _ in range(args.streams)]
    await asyncio.wait_for(opened.wait(), 120)
    await asyncio.sleep(2)  # every stream past its first reads
    idle_from, idle_cpu = time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(args.idle)
    idle = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_from)
    db = sqlite3.connect(db_path, timeout=30)
    committed: dict[str, float] = {}
    flow_from, flow_cpu = time.monotonic(), cpu_seconds(pid)
    for i in range(args.changes):
        delay = flow_from + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        alert_id, at = commit_change(db, i)
        committed[alert_id] = at
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(len(arrivals.get(a, ())) < args.streams for a in committed):
        await asyncio.sleep(0.1)
    flowing = (cpu_seconds(pid) - flow_cpu) / (time.monotonic() - flow_from)
    db.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [(t - committed[a]) * 1000 for a in committed for t in arrivals.get(a, [])]
    missing = args.streams * len(committed) - len(latencies)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
    print(f"{args.streams} open streams; API CPU idle: {idle * 100:.1f} % of a core; while {args.rate:g} "
          f"changes/s flow: {flowing * 100:.1f} %")
    print(f"commit → stream latency over {len(latencies):,} arrivals (ms): median "
          f"{statistics.median(latencies):.0f}, p99 {p99:.0f}, max {latencies[-1]:.0f}; missing {missing}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200, help="open following streams (default 200)")
    parser.add_argument("--changes", type=int, default=200, help="outbox rows to commit (default 200)")
    parser.add_argument("--rate", type=float, default=10.0, help="rows per second (default 10)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement (default 10)")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="careledger-sse-"))
    db_path = home / "projections.sqlite3"
    settings = dataclasses.replace(Settings.from_env(), home=home, api_port=free_port(),
                                   sql_url=f"sqlite:///{db_path}", clickhouse_url=None,
                                   kafka_bootstrap=f"127.0.0.1:{free_port()}")
    (home / "logs").mkdir(parents=True)
    store = SqlStore(settings.sql_url)
    store.migrate()
    store.close()
    ensure_admin_token(settings)
    token = settings.admin_token_path.read_text().strip()
    env = {**os.environ, **settings.to_env()}
    with open(home / "logs" / "api.log", "ab") as log:
        api = subprocess.Popen([sys.executable, "-m", "careledger.cli", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    def api_up() -> bool:
        try:
            return httpx.get(settings.api_url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(api_up, timeout=90, what="the API", log_path=home / "logs" / "api.log",
                   alive=lambda: api.poll() is None)
        asyncio.run(measure(args, settings, token, api.pid, db_path))
        print(f"reproduce: .venv/bin/python bench/sse_fanout.py {shlex.join(sys.argv[1:])}")
        return 0
    finally:
        terminate([api.pid], timeout=30)
        api.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
