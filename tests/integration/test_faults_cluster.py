"""A real cluster fault (issue 15.14): three KRaft nodes, replication factor 3,
``min.insync.replicas=2``; the leader of the busiest partitions is SIGKILLed (and restarted) twice
during an ingest and twice while a worker processes.  Nothing lost, nothing duplicated, and the read
models equal a clean run row for row.  CI size; the full run is ``bench/cluster_faults.py``.

Runs on a private cluster (its own home and ports), not the session's broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cluster_faults import BAD_LINES, run_cluster_faults
from tests.support.reliability import record

pytestmark = pytest.mark.integration

DOWN_S = 4.0


def test_killing_the_busiest_leader_of_a_three_node_cluster_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    run = run_cluster_faults(tmp_path / "home", persons=1200, ingest_kills=2, processing_kills=2, down_s=DOWN_S,
                             ingest_s=36, flow_s=40, batch_size=500, log=print)
    kills = [k.as_dict() for k in run.kills]
    record("fault", "leader of the busiest partitions SIGKILLed in a 3-node cluster (RF 3, min ISR 2)",
           claim="{kills} SIGKILLs ({ingest_kills} during ingest, {processing_kills} during processing, "
                 "{down_s:.0f} s down each); {distinct_on_topic} of {valid_lines} valid lines on the topic, "
                 "{duplicates_on_topic} duplicates, {lost} lost; {differences} rows differ from a clean run",
           kills=len(kills), ingest_kills=sum(k["phase"] == "ingest" for k in kills),
           processing_kills=sum(k["phase"] == "processing" for k in kills), down_s=DOWN_S,
           killed_nodes=[k["node"] for k in kills], progress_at_kill=[k["progress"] for k in kills],
           still_flowing_at_kill=[k["still_flowing"] for k in kills], noticed_s=[k["noticed_s"] for k in kills],
           min_isr_while_down=[k["min_isr_while_down"] for k in kills],
           node_restart_s=[k["restart_s"] for k in kills], resync_s=[k["resync_s"] for k in kills],
           valid_lines=run.valid_lines, ingested=run.ingested_lines,
           published_during_processing=run.published_during_processing, distinct_on_topic=run.distinct_on_topic,
           duplicates_on_topic=run.duplicates_on_topic, lost=run.lost, rejected_lines=run.rejected_lines,
           worker_restarts=run.worker_restarts, catch_up_s=run.catch_up_s,
           differences=sum(run.differences.values()), rows=run.rows, cluster_start_s=run.cluster_start_s)
    assert len(kills) == 4
    assert all(k["still_flowing"] for k in kills), kills  # each kill landed mid-ingest / mid-flow
    assert all(k["min_isr_while_down"] == 2 for k in kills), kills  # writes went on with 2 in-sync replicas
    assert run.ingest_exit == 2  # 2 = some lines rejected, as planned
    assert run.lost == 0 and run.duplicates_on_topic == 0, (run.lost, run.duplicates_on_topic)
    assert run.distinct_on_topic == run.valid_lines
    assert run.rejected_lines == len(BAD_LINES)
    assert run.differences == dict.fromkeys(run.differences, 0), (run.differences, run.missing_events)
