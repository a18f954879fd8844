"""Replay pacing with a fake clock: no real sleeping, exact waits checked."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from streamrec.producers.replay import replay
from streamrec.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds


def events(*stamps: float) -> list[SimpleNamespace]:
    return [SimpleNamespace(ts=ts) for ts in stamps]


def test_max_speed_never_sleeps() -> None:
    clock = FakeClock()
    out: list = []
    result = replay(events(0, 10, 20), out.append, None, clock=clock, sleep=clock.sleep)
    assert (result.count, len(out), clock.sleeps) == (3, 3, [])


def test_speed_scales_event_time() -> None:
    clock = FakeClock()
    result = replay(events(1000, 1010, 1010, 1030), lambda e: None, 10.0,
                    clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1.0, 2.0]  # ties do not wait
    assert result.elapsed_s == pytest.approx(3.0) and result.slept_s == pytest.approx(3.0)


def test_slow_sink_is_not_penalised_twice() -> None:
    clock = FakeClock()

    def slow_sink(event: object) -> None:
        clock.now += 0.5  # the sink itself takes half a second

    replay(events(0, 1, 2), slow_sink, 1.0, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [0.5, 0.5]  # targets come from the start, not the last event


def test_out_of_order_and_unpaced_items_go_at_once() -> None:
    clock = FakeClock()
    items = [SimpleNamespace(ts=10.0), SimpleNamespace(ts=5.0), SimpleNamespace(ts=None),
             SimpleNamespace(ts=12.0)]
    result = replay(items, lambda e: None, 1.0, clock=clock, sleep=clock.sleep)
    assert result.count == 4 and clock.sleeps == [2.0]


def test_limit_progress_and_bad_speed() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress(5, "t", stream=stream, clock=clock)
    result = replay(events(0, 1, 2, 3, 4), lambda e: None, None, limit=2, progress=progress,
                    clock=clock, sleep=clock.sleep)
    assert result.count == 2 and progress.count == 2
    assert "2/5" in stream.getvalue().splitlines()[-1]
    for speed in (0.0, -1.0):
        with pytest.raises(ValueError):
            replay([], lambda e: None, speed)
