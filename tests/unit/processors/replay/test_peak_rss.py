"""A replay worker reports its own peak memory, not its parent's (processors/replay/engine.py)."""

from __future__ import annotations

import multiprocessing as mp
import resource

from processors.replay.engine import peak_rss_mb


def _report(q: mp.Queue) -> None:  # type: ignore[type-arg]
    q.put((peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def test_a_spawned_worker_does_not_report_its_parents_peak() -> None:
    ballast = bytearray(400 * 1024 * 1024)  # the parent holds 400 MB, touched
    ballast[::4096] = b"x" * len(ballast[::4096])
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_report, args=(q,))
    proc.start()
    ours, inherited = q.get(timeout=60)
    proc.join(30)
    del ballast
    assert 10 < ours < 300, ours  # an interpreter and this module: well under the parent's 400 MB
    assert peak_rss_mb() > 400
    print(f"worker: {ours:.0f} MB; its ru_maxrss said {inherited:.0f} MB")
