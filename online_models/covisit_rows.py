"""Sparse integer count rows (``row -> {column: count}``) held as arrays, for fast reads.

``ItemSideTable`` keeps its co-visitation and transition counts here, in one representation:
each row is a pair of growing typed arrays (``array.array``: columns, counts) with a position
index, so an update is a dictionary look-up plus a typed-array write (a few times cheaper
than a numpy scalar write) and a ranking reads a row as two numpy views of the same memory
(``np.frombuffer``: no copy). Counts are integers held exactly as doubles (exact up to 2**53,
far above any user count) because the rankings divide them as floats.

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

from array import array
from typing import Iterator

import numpy as np

# Zero counts a row may keep whatever its size (a few zeros cost less than a rebuild).
ZEROS_KEPT = 32


class _Row:
    """One row: ``columns[p]`` and ``counts[p]`` for each slot ``p < size``, and
    ``position[column]`` = p. The typed arrays are allocated at a capacity and never resized
    (a full row moves to arrays of twice the capacity), so the numpy views of their memory
    (``view_columns``, ``view_counts``) are made once per allocation and always current."""

    __slots__ = ("position", "columns", "counts", "size", "live", "view_columns",
                 "view_counts")

    def __init__(self, capacity: int = 8) -> None:
        self.position: dict[int, int] = {}
        self.size = 0
        self.live = 0  # non-zero counts
        self._allocate(array("q", bytes(8 * capacity)), array("d", bytes(8 * capacity)))

    def _allocate(self, columns: array, counts: array) -> None:
        self.columns, self.counts = columns, counts
        self.view_columns = np.frombuffer(columns, dtype=np.int64)
        self.view_counts = np.frombuffer(counts, dtype=np.float64)

    def grow(self) -> None:
        """Twice the capacity (the old arrays stay with any view still reading them)."""
        extra = len(self.columns)
        self._allocate(self.columns + array("q", bytes(8 * extra)),
                       self.counts + array("d", bytes(8 * extra)))

    def compact(self) -> None:
        """Drop the zero counts (rebuilds the position index)."""
        size = self.size
        kept = [(column, count) for column, count in zip(self.columns[:size], self.counts[:size])
                if count]
        live = len(kept)
        capacity = max(8, 2 * live)
        padding = bytes(8 * (capacity - live))
        self._allocate(array("q", [column for column, _ in kept]) + array("q", padding),
                       array("d", [count for _, count in kept]) + array("d", padding))
        self.position = {column: p for p, (column, _) in enumerate(kept)}
        self.size = self.live = live

    def __getstate__(self) -> tuple:
        return self.position, self.columns, self.counts, self.size, self.live

    def __setstate__(self, state: tuple) -> None:
        self.position, columns, counts, self.size, self.live = state
        self._allocate(columns, counts)  # views of the restored memory, not copies


class CountRows:
    """Integer counts per (row, column); rows read as arrays (``arrays``)."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}

    def __contains__(self, row: int) -> bool:
        return row in self._rows

    def add(self, row: int, column: int, delta: int) -> None:
        """``count[row, column] += delta``."""
        self.add_to_rows([row], column, delta)

    def add_to_rows(self, rows: list[int], column: int, delta: int) -> None:
        """``add(r, column, delta)`` for each of ``rows`` (the loop inlined: the hot path
        of learning, every appended item's pairs)."""
        held_rows = self._rows
        for row in rows:
            held = held_rows.get(row)
            if held is None:
                held = held_rows[row] = _Row()
            position = held.position
            p = position.get(column)
            if p is None:  # a new pair: mostly, while the log is young
                p = position[column] = held.size
                if p == len(held.columns):
                    held.grow()
                held.columns[p] = column
                held.counts[p] = delta
                held.size = p + 1
                held.live += 1
                continue
            counts = held.counts
            old = counts[p]
            counts[p] = old + delta
            if not old:
                held.live += 1
            elif old == -delta:
                held.live -= 1
                self._settle(row, held)

    def add_columns(self, row: int, columns: list[int], delta: int) -> None:
        """``add(row, c, delta)`` for each of ``columns`` (distinct)."""
        if not columns:
            return
        held = self._rows.get(row)
        if held is None:
            held = self._rows[row] = _Row()
        position, live = held.position, held.live
        for column in columns:
            p = position.get(column)
            if p is None:
                p = position[column] = held.size
                if p == len(held.columns):
                    held.grow()
                held.columns[p] = column
                held.counts[p] = delta
                held.size = p + 1
                live += 1
                continue
            counts = held.counts
            old = counts[p]
            counts[p] = old + delta
            if not old:
                live += 1
            elif old == -delta:
                live -= 1
        held.live = live
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
        """The row's (columns, counts) as numpy views (zeros included), None if it has none.

        The views share the row's memory (they see later count changes, not later slots):
        callers read them within one ranking."""
        held = self._rows.get(row)
        if held is None:
            return None
        size = held.size
        return held.view_columns[:size], held.view_counts[:size]

    def nonzero(self) -> Iterator[tuple[int, int, int]]:
        """Every (row, column, count) with a non-zero count."""
        for row, held in self._rows.items():
            size = held.size
            for column, count in zip(held.columns[:size], held.counts[:size]):
                if count:
                    yield row, column, int(count)

    def slots(self) -> int:
        """Slots held (non-zero counts and the zeros not yet compacted away)."""
        return sum(held.size for held in self._rows.values())
