"""The garbage collector in the serving process: its pauses timed into the metrics, and the heap
left after start-up frozen out of its reach."""

from __future__ import annotations

import gc

from scoring.serving import settle_heap
from scoring.telemetry import Metrics, watch_gc


def _count(metrics: Metrics, generation: str) -> float:
    value = metrics.registry.get_sample_value("fraudscore_gc_pause_seconds_count", {"generation": generation})
    assert value is not None
    return value


def test_each_collection_is_timed_by_generation_until_unwatched():
    metrics = Metrics()
    unwatch = watch_gc(metrics)
    try:
        gc.collect(0)
        gc.collect()
        assert _count(metrics, "0") >= 1
        assert _count(metrics, "2") >= 1
        assert metrics.registry.get_sample_value("fraudscore_gc_pause_seconds_sum", {"generation": "2"}) > 0
    finally:
        unwatch()
    full = _count(metrics, "2")
    gc.collect()
    assert _count(metrics, "2") == full


def test_the_heap_after_start_up_is_frozen_out_of_the_collectors_reach():
    kept = [[i] for i in range(1000)]  # containers alive at start-up
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(kept)
        assert all(o is not kept for o in gc.get_objects())  # no collection walks it now
    finally:
        gc.unfreeze()
