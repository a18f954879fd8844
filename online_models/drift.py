"""Drift on our own recommendations: ADWIN on the online hit-rate, as a signal for the trainer.

Every event is a free label for the recommendation the user was last shown: a hit if the
item the user then chose was in it. When tastes or the catalogue change, that hit-rate
drops before any offline metric notices. river's ``ADWIN`` keeps an adaptive window over
the 0/1 hits and flags a significant change in its mean; we count the flags and say
whether the newest one was a drop, so the trainer can retrain early on real decay only.
"""

from __future__ import annotations

from typing import Collection


class HitRateDriftMonitor:
    """ADWIN over the hit/miss stream of the recommendations we served.

    Parameters
    ----------
    delta
        ADWIN's confidence: smaller flags fewer (and only clearer) changes.
    clock
        ADWIN checks for a change every ``clock`` updates (river's parameter, not time).
    max_tracked_users
        At most this many users' last recommendations are kept for ``observe``; the
        oldest-entered user is forgotten first (bounded memory).

    Examples
    --------
    >>> monitor = HitRateDriftMonitor(delta=0.002, clock=16)
    >>> for n in range(3000):
    ...     _ = monitor.update(hit=n % 3 == 0 if n < 1500 else n % 20 == 0)
    >>> monitor.n_detections >= 1, monitor.degraded
    (True, True)
    >>> round(monitor.hit_rate, 2)
    0.05
    """

    def __init__(self, delta: float = 0.002, clock: int = 32,
                 max_tracked_users: int = 100_000) -> None:
        from river import drift

        self.delta, self.clock, self.max_tracked_users = delta, clock, max_tracked_users
        self._adwin = drift.ADWIN(delta=delta, clock=clock)
        self._shown: dict[str, frozenset[str]] = {}
        self.n_updates = 0
        self.n_detections = 0
        self.drift_detected = False  # true right after the update that flagged a change
        self.degraded = False        # the newest change was a drop of the hit-rate
        self.last_detection_update = -1

    @property
    def hit_rate(self) -> float:
        """ADWIN's estimate: the mean hit-rate over its current (post-change) window."""
        return float(self._adwin.estimation)

    @property
    def window(self) -> int:
        return int(self._adwin.width)

    def update(self, hit: bool) -> bool:
        """Add one hit (True) or miss; return whether a change was detected just now."""
        before = self._adwin.estimation
        self._adwin.update(1.0 if hit else 0.0)
        self.n_updates += 1
        self.drift_detected = bool(self._adwin.drift_detected)
        if self.drift_detected:
            self.n_detections += 1
            self.last_detection_update = self.n_updates
            # After a change ADWIN drops the old sub-window: the estimate moves to the new mean.
            self.degraded = self._adwin.estimation < before
        return self.drift_detected

    def shown(self, user_id: str, items: Collection[str]) -> None:
        """Remember the recommendation just served to a user (to judge their next event)."""
        self._shown.pop(user_id, None)  # re-insert: dict order = least recently shown first
        self._shown[user_id] = frozenset(items)
        if len(self._shown) > self.max_tracked_users:
            del self._shown[next(iter(self._shown))]

    def observe(self, user_id: str, item_id: str) -> bool | None:
        """Judge an event against the user's last recommendation; None if none was shown."""
        items = self._shown.get(user_id)
        if items is None:
            return None
        self.update(item_id in items)
        return self.drift_detected

    def signal(self) -> dict[str, float | int | bool]:
        """What a trainer reads: counts, the current estimate, and whether to retrain now."""
        return {"drift_detected": self.drift_detected, "degraded": self.degraded,
                "n_detections": self.n_detections, "hit_rate": self.hit_rate,
                "window": self.window, "n_updates": self.n_updates,
                "last_detection_update": self.last_detection_update}
