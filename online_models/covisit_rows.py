"""Sparse integer count rows (``row -> {column: count}``) held as arrays, for fast reads.

``ItemSideTable`` keeps its co-visitation and transition counts here, in one representation:
each row is a pair of growing arrays (columns, counts) with a position index, so a ranking
reads a row as two array views (no conversion) and an update is a dictionary look-up plus an
array write. Counts are integers held exactly in float64 (exact up to 2**53, far above any
user count) because the rankings divide them as floats.

A count that drops to zero keeps its slot until a row holds more zeros than both its non-zero
counts and ``ZEROS_KEPT``, then the row is compacted; a row with no non-zero count is
dropped. So a row holds at most ``2 * live + ZEROS_KEPT`` slots (``live``: its non-zero
counts, a function of the latest states; the zeros' slots are not,
but no reading sees them: zeros add nothing to a sum and are never ranked). The order of a
row's entries is history-dependent; no result depends on it (each column appears once per
row, and rankings order by score and item id).

>>> rows = CountRows()
>>> rows.add_columns(0, [3, 5], 1)
>>> rows.add(3, 0, 1)
>>> rows.add(0, 5, -1)
>>> sorted(rows.nonzero())
[(0, 3, 1), (3, 0, 1)]
>>> columns, counts = rows.arrays(0)
>>> columns.tolist(), counts.tolist()
([3, 5], [1.0, 0.0])
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

# Zero counts a row may keep whatever its size (a few zeros cost less than a rebuild).
ZEROS_KEPT = 32


class _Row:
    """One row: ``columns[:size]`` and ``counts[:size]``, ``position[column]`` the slot."""

    __slots__ = ("position", "columns", "counts", "size", "live")

    def __init__(self, capacity: int = 8) -> None:
        self.position: dict[int, int] = {}
        self.columns = np.zeros(capacity, dtype=np.int64)
        self.counts = np.zeros(capacity, dtype=np.float64)
        self.size = 0
        self.live = 0  # non-zero counts

    def slot(self, column: int) -> int:
        """The column's slot, a new zero one if the row has none."""
        p = self.position.get(column)
        if p is None:
            p = self.position[column] = self.size
            if p == self.columns.shape[0]:
                self.columns = np.concatenate([self.columns, np.zeros_like(self.columns)])
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
            self.columns[p] = column
            self.size += 1
        return p

    def compact(self) -> None:
        """Drop the zero counts (rebuilds the position index)."""
        size = self.size
        keep = np.flatnonzero(self.counts[:size])
        live = keep.shape[0]
        columns, counts = self.columns[keep], self.counts[keep]
        capacity = max(8, 2 * live)
        self.columns = np.zeros(capacity, dtype=np.int64)
        self.counts = np.zeros(capacity, dtype=np.float64)
        self.columns[:live], self.counts[:live] = columns, counts
        self.position = {column: p for p, column in enumerate(columns.tolist())}
        self.size = self.live = live


class CountRows:
    """Integer counts per (row, column); rows read as arrays (``arrays``)."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}

    def __contains__(self, row: int) -> bool:
        return row in self._rows

    def add(self, row: int, column: int, delta: int) -> None:
        """``count[row, column] += delta``."""
        held = self._rows.get(row)
        if held is None:
            held = self._rows[row] = _Row()
        p = held.slot(column)
        counts = held.counts
        old = counts[p]
        new = old + delta
        counts[p] = new
        if not old:
            held.live += 1
        elif not new:
            held.live -= 1
            self._settle(row, held)

    def add_columns(self, row: int, columns: list[int], delta: int) -> None:
        """``add(row, c, delta)`` for each of ``columns`` (distinct): one array update."""
        if not columns:
            return
        held = self._rows.get(row)
        if held is None:
            held = self._rows[row] = _Row(max(8, 2 * len(columns)))
        slot = held.slot
        at = [slot(column) for column in columns]
        counts = held.counts
        old = counts[at]
        new = old + delta
        counts[at] = new  # distinct slots: each gets delta once
        held.live += int(np.count_nonzero(new)) - int(np.count_nonzero(old))
        if delta < 0:
            self._settle(row, held)

    def _settle(self, row: int, held: _Row) -> None:
        """After counts dropped: drop an empty row, compact one with too many zeros (zeros
        only grow here, so every row keeps ``zeros <= max(live, ZEROS_KEPT)``)."""
        if not held.live:
            del self._rows[row]
        elif held.size - held.live > max(held.live, ZEROS_KEPT):
            held.compact()

    def arrays(self, row: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The row's (columns, counts) as views (zeros included), None if it has none.
        Valid until the next update: callers read them within one ranking."""
        held = self._rows.get(row)
        if held is None:
            return None
        return held.columns[:held.size], held.counts[:held.size]

    def nonzero(self) -> Iterator[tuple[int, int, int]]:
        """Every (row, column, count) with a non-zero count."""
        for row, held in self._rows.items():
            size = held.size
            for column, count in zip(held.columns[:size].tolist(), held.counts[:size].tolist()):
                if count:
                    yield row, column, int(count)

    def slots(self) -> int:
        """Slots held (non-zero counts and the zeros not yet compacted away)."""
        return sum(held.size for held in self._rows.values())
