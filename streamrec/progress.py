"""A dependency-free progress line for long work (replay, produce, demo).

Writes ``label  12,345/100,000  12.3%  8,210/s  ETA 0:00:11`` to stderr at most a few
times a second, and a final line on ``close``. When stderr is not a terminal (CI, logs)
it prints a plain line every ``log_every_s`` seconds instead of redrawing.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Callable


class Progress:
    def __init__(self, total: int | None, label: str = "", *, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, min_interval_s: float = 0.25,
                 log_every_s: float = 10.0, enabled: bool = True) -> None:
        self.total = total
        self.label = label
        self.count = 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        self._last_draw = float("-inf")
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._interval = min_interval_s if self._tty else log_every_s
        self._enabled = enabled

    def update(self, n: int = 1) -> None:
        self.count += n
        now = self._clock()
        if self._enabled and now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw(now, final=False)

    def close(self) -> None:
        if self._enabled:
            self._draw(self._clock(), final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def text(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.count / elapsed
        parts = [self.label] if self.label else []
        if self.total:
            parts.append(f"{self.count:,}/{self.total:,}  {100.0 * self.count / self.total:5.1f}%")
        else:
            parts.append(f"{self.count:,}")
        parts.append(f"{rate:,.0f}/s")
        if self.total and rate > 0 and self.count < self.total:
            parts.append(f"ETA {_clock_text((self.total - self.count) / rate)}")
        else:
            parts.append(f"in {_clock_text(elapsed)}")
        return "  ".join(parts)

    def _draw(self, now: float, final: bool) -> None:
        line = self.text(now)
        if self._tty:
            self._stream.write("\r" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
