"""`make up` / `make down` (CONTRACT.md §3): idempotent, independent per CARELEDGER_HOME, clean exit.

Runs the real command (`careledger up`, what `make up` calls after installing) in subprocesses with
their own homes and ports, so it tests exactly what a user gets.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from infra.process import free_port, pid_alive
from tests.support.reliability import record

REPO = Path(__file__).resolve().parents[2]


def careledger(home: Path, kafka_port: int, api_port: int, *args: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CARELEDGER_")}
    full.update(CARELEDGER_HOME=str(home), CARELEDGER_KAFKA_PORT=str(kafka_port),
                CARELEDGER_KAFKA_CONTROLLER_PORT=str(free_port()), CARELEDGER_API_PORT=str(api_port),
                **(env or {}))
    return subprocess.run([sys.executable, "-m", "careledger.cli", *args], env=full, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def status(api_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/status", timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def scrape(url: str, timeout: float = 90.0) -> str:
    """The body of a metrics URL once it answers (a worker serves it once its store is open)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL of the test
                return response.read().decode()
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer in {timeout}s"
            time.sleep(0.5)


def pids(home: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in (home / "run").glob("*.pid")]


def home_processes(home: Path) -> dict[int, str]:
    """Every process of ``home`` as ``ps`` shows it (command + environment): its CARELEDGER_HOME
    (inherited from ``careledger up``) or its command line names the home."""
    listing = subprocess.run(["ps", "axeww", "-o", "pid=,command="], capture_output=True, text=True,
                             check=True).stdout
    found = {}
    for line in listing.splitlines():
        pid, _, rest = line.strip().partition(" ")
        if f"CARELEDGER_HOME={home} " in rest + " " or f"{home}/" in rest.split(" SHELL=")[0]:
            found[int(pid)] = rest.split(" SHELL=")[0][:120]
    found.pop(os.getpid(), None)
    return {pid: cmd for pid, cmd in found.items() if not cmd.startswith("ps ")}


def test_up_twice_two_homes_then_down_leaves_nothing_behind(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ports = {a: (free_port(), free_port()), b: (free_port(), free_port())}
    try:
        first = careledger(a, *ports[a], "up")
        assert first.returncode == 0, first.stderr
        again = careledger(a, *ports[a], "up")  # harmless the second time
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        other = careledger(b, *ports[b], "up")  # a second, independent stack
        assert other.returncode == 0, other.stderr

        assert status(ports[a][1])["caught_up"] is True
        assert status(ports[b][1])["caught_up"] is True
        # metrics on by default: every worker and the deliverer on a port of its own, printed and recorded
        targets = {e["labels"]["process"]: e["targets"][0]
                   for e in json.loads((a / "run" / "prometheus-targets.json").read_text())}
        assert set(targets) == {"processor-sql", "webhooks", "api"}
        for name, host_port in targets.items():
            assert f"metrics    {name:<21}http://{host_port}/metrics" in first.stdout + again.stdout, first.stdout
        assert "careledger_processor_records_total{projection=\"sql\"}" in scrape(
            f"http://{targets['processor-sql']}/metrics")
        assert "careledger_webhook_subscriptions" in scrape(f"http://{targets['webhooks']}/metrics")
        assert scrape(f"http://{targets['processor-sql']}/healthz").startswith('{"status": "ok"')
        assert (a / "admin-token").stat().st_mode & 0o777 == 0o600
        running = pids(a) + pids(b)
        assert running and all(pid_alive(pid) for pid in running)
    finally:
        for home in (a, b):
            careledger(home, *ports[home], "down")
    assert not [pid for pid in running if pid_alive(pid)], "processes left behind after make down"
    assert not pids(a) and not pids(b)


def test_a_port_in_use_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    kafka_port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", kafka_port))
        blocker.listen()
        result = careledger(tmp_path / "home", kafka_port, free_port(), "up")
    assert result.returncode == 1
    assert f"port {kafka_port}" in result.stderr and "already in use" in result.stderr


def test_a_sigkilled_supervisor_blocks_a_second_start_and_down_stops_its_child(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kafka_port, api_port = free_port(), free_port()
    try:
        assert careledger(home, kafka_port, api_port, "up").returncode == 0
        supervisor = int((home / "run" / "processor-sql.pid").read_text().split()[0])
        workers_before = [p for p, cmd in home_processes(home).items() if "process --projection sql" in cmd
                          and "infra.supervise" not in cmd]
        assert len(workers_before) == 1, home_processes(home)
        os.kill(supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid_alive(workers_before[0]), "the worker died with its supervisor (nothing to find)"

        again = careledger(home, kafka_port, api_port, "up")  # must not start a second worker
        workers_after = [p for p, cmd in home_processes(home).items() if "process --projection sql" in cmd]
        assert again.returncode == 1, again.stdout + again.stderr
        assert "processor-sql" in again.stderr and "careledger down" in again.stderr
        assert workers_after == workers_before, home_processes(home)
        running_before_down = home_processes(home)
    finally:
        stopped = careledger(home, kafka_port, api_port, "down")
    deadline = time.monotonic() + 10
    while home_processes(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = home_processes(home)
    record("fault", "SIGKILL of a processor's supervisor, then `make up` and `make down`",
           claim="a second `up` refused (exit {second_up_exit}) and started {second_workers} extra worker(s); "
                 "`down` left {survivors} of {processes_before_down} processes of the home running",
           second_up_exit=again.returncode, second_workers=len(workers_after) - len(workers_before),
           processes_before_down=len(running_before_down), survivors=len(survivors))
    assert stopped.returncode == 0, stopped.stderr
    assert not survivors, f"processes of the home left after `down`: {survivors}"
    assert careledger(home, kafka_port, api_port, "down").returncode == 0  # harmless when nothing runs


def loose_under(home: Path) -> dict[str, str]:
    """Every path under ``home`` with a group/other permission bit (links have none of their own)."""
    found = {}
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found[str(path.relative_to(home))] = oct(mode & 0o777)
    if home.stat().st_mode & 0o077:
        found["."] = oct(home.stat().st_mode & 0o777)
    return found


def test_everything_the_stack_writes_under_its_home_is_private(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    # a home left by an older release: loose directory, log and export
    (home / "logs").mkdir(parents=True)
    for path, mode in ((home, 0o755), (home / "logs", 0o755)):
        path.chmod(mode)
    for path in (home / "logs" / "old.log", home / "old-export.csv"):
        path.write_text("x")
        path.chmod(0o644)
    kafka_port, api_port = free_port(), free_port()
    env = {"CARELEDGER_LOCAL_SERVERS": "clickhouse"}
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in [
        {"event_id": "perm-1", "type": "person.registered", "occurred_at": "2024-03-05T10:00:00+08:00",
         "id_number": "330283193604230010", "town": "溪口镇", "village": None,
         "payload": {"category": "mental", "grade": 1, "birth_date": "1936-04-23", "hardship": True,
                     "certificate_expires": "2030-01-01"}},
        {"event_id": "perm-2", "type": "visit.completed", "occurred_at": "2024-03-06T10:00:00+08:00",
         "id_number": "330283193604230010", "town": "溪口镇", "village": None,
         "payload": {"visit_kind": "home_visit", "visitor": "w", "hazards": ["abuse_or_neglect"]}},
    ]), encoding="utf-8")
    try:
        started = careledger(home, kafka_port, api_port, "up", env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "removed group/other access" in started.stderr
        assert careledger(home, kafka_port, api_port, "ingest", str(events), env=env).returncode == 0
        deadline = time.monotonic() + 120
        while not (status(api_port)["caught_up"] and status(api_port).get("lag", 1) == 0):
            assert time.monotonic() < deadline, status(api_port)
            time.sleep(0.5)
        token = (home / "admin-token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/alerts",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert json.loads(response.read())["total"] == 1  # an audited person-level read
        for args in (["token", "create", "--name", "perm-viewer", "--role", "viewer"],
                     ["replay", "snapshot", "perm-snap", "--until", "2024-12-31", "--no-progress"],
                     ["export", "--format", "csv", "--out", str(home / "exports" / "events.csv"), "--no-progress"],
                     ["export", "--format", "csv", "--out", str(outside / "events.csv"), "--no-progress"],
                     ["backup", str(outside / "backup"), "--no-progress"]):
            done = careledger(home, kafka_port, api_port, *args, env=env)
            assert done.returncode == 0, (args, done.stdout + done.stderr)
        while_running = loose_under(home)
        written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    finally:
        careledger(home, kafka_port, api_port, "down", env=env)
    after = loose_under(home)
    exports = {str(p.relative_to(outside)): oct(p.stat().st_mode & 0o777) for p in outside.rglob("*") if p.is_file()}
    record("fault", "file permissions under $CARELEDGER_HOME after a real stack's work",
           claim="{files} files written (Kafka, ClickHouse, SQLite + WAL, key store, logs, reports, snapshot, "
                 "export, token and audit rows); group/other bits on {loose_running} paths while running, "
                 "{loose_after} after `down`; {exports_loose} loose export/backup files outside the home",
           files=len(written), loose_running=len(while_running), loose_after=len(after),
           exports_loose=sum(1 for m in exports.values() if m != "0o600"))
    for expected in ("projections.sqlite3", "keys.sqlite3", "admin-token", "logs/kafka.log", "exports/events.csv"):
        assert expected in written, expected
    assert any(name.startswith("kafka/data/") for name in written) and any(n.startswith("clickhouse/") for n in written)
    assert any(name.endswith("-wal") for name in written), "the SQLite WAL was not there to check"
    assert any(name.startswith("reports/") for name in written) and "registry.json" in written
    assert not while_running, while_running
    assert not after, after
    assert exports and all(mode == "0o600" for mode in exports.values()), exports


def admin_get(home: Path, api_port: int, path: str) -> dict[str, object]:
    token = (home / "admin-token").read_text().strip()
    request = urllib.request.Request(f"http://127.0.0.1:{api_port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def wait_caught_up_with(api_port: int, events: int, timeout: float = 300) -> float:
    """Seconds until /api/status says every projection applied the whole log (``events`` records)."""
    started = time.monotonic()
    while True:
        try:
            now = status(api_port)
            ends = now.get("events_end_offsets") or {}
            if now.get("caught_up") and now.get("lag") == 0 and sum(ends.values()) >= events:  # type: ignore[union-attr]
                return time.monotonic() - started
        except OSError:
            pass  # the API is starting
        assert time.monotonic() - started < timeout, status(api_port)
        time.sleep(0.5)


def read_models(home: Path, api_port: int) -> dict[str, object]:
    """What a user reads: counts of every kind, alerts, warnings at the end of the half."""
    kinds = ("payment", "service", "visit", "job", "need", "person", "posting")
    return {"counts": {k: admin_get(home, api_port, f"/api/counts?kind={k}") for k in kinds},
            "alerts": admin_get(home, api_port, "/api/alerts?limit=0")["total"],
            "warnings": admin_get(home, api_port, "/api/warnings?as_of=2024-06-30&limit=0")["total"]}


def test_a_deleted_store_rebuilds_itself_when_the_stack_starts_again(tmp_path: Path) -> None:
    """Issue 13 (item 5): stack up, events in, stack down, the store file deleted, stack up → the
    worker rebuilds from offset 0 by itself, whatever the consumer group had committed, and the
    read models equal what they were."""
    home = tmp_path / "home"
    kafka_port, api_port = free_port(), free_port()
    events = tmp_path / "district.jsonl"
    try:
        assert careledger(home, kafka_port, api_port, "up").returncode == 0
        made = careledger(home, kafka_port, api_port, "simulate", "--persons", "1500", "--seed", "7",
                          "--out", str(events), "--no-progress")
        assert made.returncode == 0, made.stderr
        published = careledger(home, kafka_port, api_port, "ingest", str(events))
        assert published.returncode == 0, published.stdout + published.stderr
        count = sum(1 for _ in events.open(encoding="utf-8"))
        wait_caught_up_with(api_port, count)
        before = read_models(home, api_port)
        assert before["counts"]["payment"]["events"] > 0 and before["alerts"] > 0  # type: ignore[index]
        assert careledger(home, kafka_port, api_port, "down").returncode == 0

        removed = sorted(p.name for p in home.glob("projections.sqlite3*"))
        for path in home.glob("projections.sqlite3*"):
            path.unlink()
        assert "projections.sqlite3" in removed

        assert careledger(home, kafka_port, api_port, "up").returncode == 0
        rebuild_s = wait_caught_up_with(api_port, count)
        after = read_models(home, api_port)
        log = (home / "logs" / "processor-sql.log").read_text(encoding="utf-8")
    finally:
        careledger(home, kafka_port, api_port, "down")
    record("fault", "the SQL store file deleted between two `make up`",
           claim="{events} events; after `rm projections.sqlite3*` and `up` the worker rebuilt from offset 0 in "
                 "{rebuild_s} s; read models equal before and after: {equal}",
           events=count, rebuild_s=round(rebuild_s, 1), equal=after == before)
    assert after == before
    assert "the store is empty: building it from offset 0" in log
