"""Where a log splits into a tuning prefix and a held-out suffix (``--tune-until``).

Every choice a system makes from data may look only at events before the split; metrics
quoted as held-out count only the events at or after it. The split is an index into the
time-ordered log, so a fraction and a timestamp mean the same thing on every run.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

from streamrec.events import ClickEvent


@dataclass(frozen=True)
class TuneUntil:
    """Either a fraction in (0, 1) of the log's events or an epoch-seconds timestamp."""

    fraction: float | None = None
    timestamp: float | None = None

    def describe(self) -> str:
        return (f"fraction {self.fraction:g}" if self.fraction is not None
                else f"timestamp {self.timestamp:g}")


def parse_tune_until(text: str) -> TuneUntil:
    """``"0.5"`` → fraction; ``"880000000"`` → timestamp; anything else → ValueError.

    Values in [1, 1e6) are rejected: they are neither a fraction nor a plausible epoch
    time (1e6 s is January 1970), and most likely a typo for a percentage or a count.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--tune-until {text!r}: expected a fraction in (0,1) "
                         "or an epoch-seconds timestamp") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"--tune-until {text!r}: must be a fraction in (0,1) "
                         "or a positive epoch-seconds timestamp")
    if value < 1:
        return TuneUntil(fraction=value)
    if value < 1e6:
        raise ValueError(f"--tune-until {text!r}: neither a fraction in (0,1) nor an "
                         "epoch-seconds timestamp (>= 1e6)")
    return TuneUntil(timestamp=value)


def split_index(events: Sequence[ClickEvent], until: TuneUntil) -> int:
    """Index of the first held-out event; raises ValueError if either side would be empty."""
    if until.fraction is not None:
        index = int(len(events) * until.fraction)
    else:
        assert until.timestamp is not None
        index = bisect.bisect_left([event.ts for event in events], until.timestamp)
    if index <= 0 or index >= len(events):
        raise ValueError(f"--tune-until {until.describe()} leaves no events on one side "
                         f"of the split ({index} of {len(events)} before it)")
    return index
