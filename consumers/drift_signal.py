"""The online hit-rate of our own recommendations, and the drift signal it raises.

Every event a user produces is a free label for the recommendation we last published for
that user: a hit if the item is in it. ``OnlineHitRateTracker`` keeps, per user, the items
of that last recommendation, judges each new event of a user-state delta against it, and
feeds the hits to ADWIN (``streamrec.online_models.drift.HitRateDriftMonitor``). When ADWIN flags a
change it returns a ``HitRateDrift``: the scorer publishes drops on ``models`` under the key
``drift`` (``DriftMessage``), and the trainer retrains on them.

Pure: no Kafka, no clock (the caller stamps messages). Memory is bounded by the scorer's
mirror: users are remembered per partition, and forgetting a user or dropping a partition
removes them.

>>> tracker = OnlineHitRateTracker()
>>> tracker.recommended(0, "u1", ["a", "b"])
>>> tracker.observe(0, "u1", [("a", 1.0), ("z", 2.0)], seen_before=[])
>>> (tracker.judged, tracker.hits)
(2, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable, Sequence

import msgspec

from streamrec.online_models.drift import HitRateDriftMonitor

DRIFT_KEY = b"drift"  # the key of drift messages on ``models`` (models themselves: "current")
DROP, RISE = "drop", "rise"


@dataclass(frozen=True)
class HitRateDrift:
    """One change ADWIN detected: the means of the sub-window it cut off and of the one kept.

    ``hit_rate_before`` is the mean of the older sub-window ADWIN dropped, ``hit_rate_after``
    the mean of the window it kept (which still holds some pre-change events: ADWIN cuts as
    little as the test allows). ``events`` counts every event judged so far.
    """

    direction: str  # DROP or RISE
    hit_rate_before: float
    hit_rate_after: float
    events_before: int
    events_after: int
    events: int


class OnlineHitRateTracker:
    """Judge each user's new events against their last recommendation; ADWIN on the hits.

    Only first clicks are judged: a recommendation never contains an item the user has
    already seen, so a repeat could only ever be a miss and would drag the rate down for
    reasons that have nothing to do with the model. Users with no recommendation yet are
    not judged either (there was nothing to hit).

    Parameters
    ----------
    delta
        ADWIN's confidence: smaller flags fewer, clearer changes.
    clock
        ADWIN tests for a change every ``clock`` judged events.
    """

    def __init__(self, delta: float = 0.002, clock: int = 32) -> None:
        self.delta, self.clock = delta, clock
        self.monitor = HitRateDriftMonitor(delta=delta, clock=clock)
        # partition -> user -> items of the last recommendation published for the user.
        self._last_shown: dict[int, dict[str, frozenset[str]]] = {}
        self.judged = 0
        self.hits = 0
        self.detections: dict[str, int] = {DROP: 0, RISE: 0}

    # -- what the scorer tells it ---------------------------------------------------------
    def recommended(self, partition: int, user_id: str, items: Iterable[str]) -> None:
        """Remember the recommendation just published for a user (replaces the previous)."""
        self._last_shown.setdefault(partition, {})[user_id] = frozenset(items)

    def observe(self, partition: int, user_id: str, new_events: Sequence[tuple[str, float]],
                seen_before: Collection[str]) -> HitRateDrift | None:
        """Judge a user-state delta; return the change ADWIN detected on it, if any.

        ``new_events`` are the (item, ts) the state message added; ``seen_before`` the items
        of the user's previous state. Events are judged against the recommendation published
        before the delta reached the scorer: that is the one the user could have seen.
        """
        shown = self._last_shown.get(partition, {}).get(user_id)
        if shown is None or not new_events:
            return None
        seen = set(seen_before)
        drift = None
        for item_id, _ts in new_events:
            if item_id in seen:
                continue
            seen.add(item_id)  # a second click on it in the same delta is a repeat too
            drift = self._judge(item_id in shown) or drift
        return drift

    def forget(self, partition: int, user_id: str) -> None:
        """The user was erased (tombstone): forget what we showed them."""
        users = self._last_shown.get(partition)
        if users is not None:
            users.pop(user_id, None)

    def drop(self, partition: int) -> None:
        """The partition moved to another scorer: its users are no longer ours to judge."""
        self._last_shown.pop(partition, None)

    # -- what it reports ------------------------------------------------------------------
    @property
    def hit_rate(self) -> float:
        """Hit rate over ADWIN's window: the events since the last change (0.0 before any)."""
        return self.monitor.hit_rate

    @property
    def tracked_users(self) -> int:
        return sum(len(users) for users in self._last_shown.values())

    def _judge(self, hit: bool) -> HitRateDrift | None:
        self.judged += 1
        self.hits += hit
        # ADWIN's figures before the update: on a change it cuts the oldest sub-window off,
        # so what was dropped is the difference (river exposes width and mean, not the cut).
        width, mean = self.monitor.window, self.monitor.hit_rate
        if self.monitor.drift_detected:  # river restarts the window on the update after one
            width, mean = 0, 0.0
        if not self.monitor.update(hit):
            return None
        kept, kept_mean = self.monitor.window, self.monitor.hit_rate
        cut = width + 1 - kept
        if cut <= 0:  # nothing was cut off: no sub-window to compare with
            return None
        before = (width * mean + hit - kept * kept_mean) / cut
        direction = DROP if kept_mean < before else RISE
        self.detections[direction] += 1
        return HitRateDrift(direction, round(before, 4), round(kept_mean, 4), cut, kept,
                            self.judged)


class DriftMessage(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a ``drift`` message on ``models``: a scorer saw its hit-rate drop."""

    detected_at_ms: int
    scorer_group: str
    partitions: list[int]
    direction: str
    hit_rate_before: float
    hit_rate_after: float
    events_before: int
    events_after: int
    events: int  # events judged by this scorer since it started


MAX_DRIFT_BYTES = 64 * 1024  # a drift message is ~250 bytes
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DriftMessage)


def encode_drift(drift: HitRateDrift, *, detected_at_ms: int, scorer_group: str,
                 partitions: Iterable[int]) -> bytes:
    return _encoder.encode(DriftMessage(
        detected_at_ms=detected_at_ms, scorer_group=scorer_group,
        partitions=sorted(partitions), direction=drift.direction,
        hit_rate_before=drift.hit_rate_before, hit_rate_after=drift.hit_rate_after,
        events_before=drift.events_before, events_after=drift.events_after,
        events=drift.events))


def decode_drift(value: bytes) -> DriftMessage:
    """Parse a ``drift`` value; ``ValueError`` if it is not one (unknown fields are fine)."""
    if len(value) > MAX_DRIFT_BYTES:
        raise ValueError(f"not a drift message: {len(value)} bytes")
    try:
        return _decoder.decode(value)
    except Exception as exc:  # noqa: BLE001 - RecursionError on deep nesting, MemoryError, ...
        raise ValueError(f"not a drift message: {type(exc).__name__}: {str(exc)[:200]}") from None
