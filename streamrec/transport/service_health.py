"""Is a consumer loop making progress? What ``/readyz`` and the commit-age metric report.

A loop that cannot reach the broker keeps polling and gets nothing, and a loop blocked in a
commit during an outage holds its batch: neither raises, so "the thread is alive" says
nothing. Two rules say what does:

- **stalled**: there has been work (lag on an input partition, or a batch in flight) and
  nothing was committed for ``stall_after_s`` since the work appeared;
- **broker silent**: neither a commit nor a group-coordinator heartbeat answer for
  ``broker_silence_s``. The heartbeat is kafka-python's, answered every few seconds while
  the coordinator is reachable, even while the loop is busy or idle.

The loop thread writes, the health endpoint's thread reads; every field is one float or int
assigned at a time, so no lock is needed. Time is ``time.monotonic`` unless injected.
"""

from __future__ import annotations

import time
from typing import Callable


def heartbeat_of(consumer: object) -> object | None:
    """kafka-python's heartbeat record of a group consumer (``last_receive``), if it has one.

    A private attribute of kafka-python 3.0: read defensively, so a client without it only
    loses the broker-silence rule (commits still count as contact).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    heartbeat = getattr(coordinator, "heartbeat", None)
    return heartbeat if isinstance(getattr(heartbeat, "last_receive", None), float) else None


class ServiceProgress:
    """Progress of one consumer loop, and the verdict a readiness probe gives on it."""

    def __init__(self, stall_after_s: float, broker_silence_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self.broker_silence_s = broker_silence_s
        self._clock = clock
        started = clock()
        self.last_commit = started
        self.ever_committed = False
        self.session_started = started
        self.lag = 0
        self.batch_started: float | None = None
        self.pending_since: float | None = None  # when work appeared after an idle spell
        self._heartbeat: object | None = None

    # -- the loop's side ------------------------------------------------------------------------
    def session_began(self, consumer: object) -> None:
        self.session_started = self._clock()
        self._heartbeat = heartbeat_of(consumer)

    def observed_lag(self, lag: int) -> None:
        self.lag = lag
        self._note_pending()

    def batch_began(self) -> None:
        self.batch_started = self._clock()
        self._note_pending()

    def batch_ended(self, committed: bool) -> None:
        now = self._clock()
        self.batch_started = None
        if committed:
            self.last_commit, self.ever_committed = now, True
            self.pending_since = None if self.lag == 0 else now

    def _note_pending(self) -> None:
        if self.pending_since is None and (self.lag > 0 or self.batch_started is not None):
            self.pending_since = self._clock()
        elif self.lag == 0 and self.batch_started is None:
            self.pending_since = None

    # -- the probe's side -----------------------------------------------------------------------
    def seconds_since_commit(self) -> float:
        """Since the last committed batch (since start, before the first one)."""
        return max(0.0, self._clock() - self.last_commit)

    def last_broker_contact(self) -> float:
        heard = getattr(self._heartbeat, "last_receive", None)
        contact = max(self.last_commit, self.session_started)
        return max(contact, heard) if isinstance(heard, float) else contact

    def verdict(self) -> dict[str, object]:
        """``{"status": "ok"}`` or ``"unhealthy"`` with the reason, plus what was measured."""
        now = self._clock()
        body: dict[str, object] = {"seconds_since_commit": round(now - self.last_commit, 3),
                                   "lag": self.lag}
        silent_for = now - self.last_broker_contact()
        if silent_for > self.broker_silence_s:
            return {"status": "unhealthy", "reason": f"no answer from the broker for "
                    f"{silent_for:.0f} s", **body}
        pending = self.pending_since
        if pending is not None:
            waiting = now - max(pending, self.last_commit)
            if waiting > self.stall_after_s:
                return {"status": "unhealthy", "reason": f"no batch committed for "
                        f"{waiting:.0f} s while work is pending", **body}
        return {"status": "ok", **body}
