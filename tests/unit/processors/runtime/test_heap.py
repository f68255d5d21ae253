"""The garbage collector's settings and clock for batch-applying processes (processors/runtime/heap.py)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from processors.runtime.heap import GEN0_THRESHOLD, CollectorPause, GcClock


def test_the_clock_adds_each_collection_to_spent() -> None:
    spent = {"working": 1.0}
    clock = GcClock(spent).install()
    assert spent["gc"] == 0.0
    try:
        cycles = []
        for _ in range(10_000):  # something for the collector to find
            a: list[object] = []
            a.append(a)
            cycles.append(a)
        del cycles
        gc.collect()
    finally:
        clock.remove()
    assert clock not in gc.callbacks
    assert spent["gc"] > 0.0 and spent["working"] == 1.0


def test_settling_freezes_the_start_up_heap_and_raises_the_young_threshold() -> None:
    """In a fresh interpreter (the settings are process-wide): what start-up built is frozen, what
    comes later is not, and the youngest generation waits for GEN0_THRESHOLD allocations."""
    probe = ("import gc, json; import processors.runtime.heap as h; before = gc.get_threshold(); "
             "h.settle_after_start(); frozen = gc.get_freeze_count(); later = [[] for _ in range(1000)]; "
             "print(json.dumps([before, gc.get_threshold(), frozen, gc.get_freeze_count()]))")
    before, after, frozen, frozen_later = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert before[0] == 700 and after == [GEN0_THRESHOLD, before[1], before[2]]
    assert frozen > 1_000 and frozen_later == frozen


def test_the_collector_is_paused_only_inside_the_block_until_resumed_and_only_when_asked() -> None:
    assert gc.isenabled()
    with CollectorPause() as pause:
        assert not gc.isenabled()
        pause.resume()
        assert gc.isenabled()
    assert gc.isenabled()
    with CollectorPause(False):
        assert gc.isenabled()
    try:
        with CollectorPause():
            raise RuntimeError("a build failed")
    except RuntimeError:
        pass
    assert gc.isenabled()
    gc.disable()  # someone else paused it: the block leaves it as it found it
    try:
        with CollectorPause() as pause:
            assert not gc.isenabled()
            pause.resume()
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
