"""Paced replay: feed events to a sink as fast as possible or at event time x speed.

With ``speed=None`` events go out as fast as the sink takes them (bulk loading, replay
evaluation). With ``speed=N`` the gap between two events on the wall clock is their
event-time gap divided by ``N``, so a day of logs at ``speed=86400`` takes one second and a
load test sees the real burstiness of the traffic. The clock and sleep are injectable, so
pacing is tested with a fake clock and no real waiting.

>>> from types import SimpleNamespace as E
>>> out = []
>>> result = replay([E(ts=0.0), E(ts=1.0)], out.append, speed=None)
>>> result.count, len(out)
(2, 2)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from streamrec.progress import Progress

T = TypeVar("T")

# Sleeps shorter than this are skipped and caught up later: time.sleep overshoots by
# ~0.1 ms, so sleeping per event at high rates would make the replay fall behind.
MIN_SLEEP_S = 0.001


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: events handed to the sink, wall time, rate, time spent sleeping."""

    count: int
    elapsed_s: float
    slept_s: float

    @property
    def events_per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else float("inf")


def _event_ts(event: object) -> float | None:
    return getattr(event, "ts", None)


def replay(events: Iterable[T], sink: Callable[[T], object], speed: float | None = None, *,
           event_time: Callable[[T], float | None] = _event_ts,
           progress: Progress | None = None, limit: int | None = None,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> ReplayResult:
    """Hand every event to ``sink``, pacing by event time when ``speed`` is given.

    Parameters
    ----------
    events
        Events in event-time order (an event earlier than its predecessor is sent at once).
    sink
        Called with each event, e.g. ``ClickPublisher.publish``.
    speed
        ``None`` for as fast as possible, else the event-time to wall-time ratio (> 0).
    event_time
        Event time of an item in seconds, or ``None`` for items that are not paced
        (e.g. malformed payloads); defaults to the item's ``ts`` attribute.
    progress
        Updated once per event when given; closed at the end.
    limit
        Stop after this many events.
    clock, sleep
        Monotonic clock and sleep function (injectable for tests).
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be > 0 or None, got {speed!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit!r}")
    start = clock()
    first_ts: float | None = None
    count = 0
    slept = 0.0
    try:
        for event in events:
            if limit is not None and count >= limit:
                break
            if speed is not None:
                ts = event_time(event)
                if ts is not None:
                    if first_ts is None:
                        first_ts = ts
                    # The target is computed from the start, not the previous event, so
                    # skipped short sleeps and sink latency never accumulate as drift.
                    wait = start + (ts - first_ts) / speed - clock()
                    if wait >= MIN_SLEEP_S:
                        sleep(wait)
                        slept += wait
            sink(event)
            count += 1
            if progress is not None:
                progress.update()
    finally:
        if progress is not None:
            progress.close()
    return ReplayResult(count=count, elapsed_s=clock() - start, slept_s=slept)
