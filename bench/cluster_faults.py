"""The full cluster fault run (issue 15.14; the CI-sized one is tests/integration/test_faults_cluster.py).

A private three-node KRaft cluster (replication factor 3, ``min.insync.replicas=2``, no unclean
leader election) under a temporary home.  ``careledger ingest -`` writes 60 % of a simulated
district at a steady pace while the node leading most of the busiest partitions is SIGKILLed
``--ingest-kills`` times (each stays dead ``--down`` seconds after the cluster noticed, then is
restarted); a supervised SQL worker then processes that backlog while the other 40 % are published,
and the busiest leader is killed ``--processing-kills`` times more.  Checks: every valid event on
the topic exactly once, the read models equal to a clean run row for row.  Scenario code:
``tests/support/cluster_faults.py`` (the test and this bench run the same thing at different sizes).

    .venv/bin/python bench/cluster_faults.py                       # 6000 persons (~54k events), 4 + 4 kills
    .venv/bin/python bench/cluster_faults.py --persons 1500 --ingest-kills 2 --processing-kills 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import machine  # noqa: E402
from tests.support.cluster_faults import run_cluster_faults  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=6000, help="simulated persons (~9 events each)")
    parser.add_argument("--ingest-kills", type=int, default=4)
    parser.add_argument("--processing-kills", type=int, default=4)
    parser.add_argument("--down", type=float, default=10.0, help="seconds a killed node stays dead once noticed")
    parser.add_argument("--ingest-seconds", type=float, default=150.0, help="how long the ingest is paced to take")
    parser.add_argument("--flow-seconds", type=float, default=150.0,
                        help="how long the events published during processing are paced to take")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs of every node)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="careledger-cluster-bench-"))
    started = time.monotonic()
    print(f"machine: {machine()}\nhome: {home}", flush=True)
    try:
        run = run_cluster_faults(home / "home", persons=args.persons, ingest_kills=args.ingest_kills,
                                 processing_kills=args.processing_kills, down_s=args.down,
                                 ingest_s=args.ingest_seconds, flow_s=args.flow_seconds, partitions=args.partitions,
                                 log=lambda line: print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    ok = (run.lost == 0 and run.duplicates_on_topic == 0 and not any(run.differences.values())
          and all(k.still_flowing for k in run.kills))
    print("\n| phase | node | progress at kill | noticed (s) | min ISR while down | restart (s) | resync (s) |")
    print("|---|---|---|---|---|---|---|")
    for k in run.kills:
        print(f"| {k.phase} | {k.node} | {k.progress} | {k.noticed_s} | {k.min_isr_while_down} | {k.restart_s} "
              f"| {k.resync_s} |")
    print(f"\n{run.valid_lines} valid events ({run.ingested_lines} ingested, {run.published_during_processing} "
          f"published during processing); on the topic {run.distinct_on_topic} distinct, {run.duplicates_on_topic} "
          f"duplicates, {run.lost} lost; {run.rejected_lines} bad lines dead-lettered; read models: "
          f"{sum(run.differences.values())} of {run.rows} rows differ from a clean run; worker restarts "
          f"{run.worker_restarts}; total {time.monotonic() - started:.0f} s -> {'PASS' if ok else 'FAIL'}")
    summary = {k: v for k, v in run.__dict__.items() if k not in ("snapshot", "kills")}
    print(json.dumps({**summary, "kills": [k.as_dict() for k in run.kills]}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
