"""Item vocabulary shared by training and serving: item id ↔ model row, 0 is padding.

It lives apart from the model so serving can map ids without importing torch. A retrained
vocabulary *extends* the previous one (old items keep their rows, new items are appended),
which is what lets a warm start copy rows and lets the scorer append new items.

>>> vocab = ItemVocabulary(["a", "b"])
>>> vocab.encode(["b", "zzz", "a"])
[2, 1]
>>> vocab.extended(["c", "a"]).ids
['a', 'b', 'c']
"""

from __future__ import annotations

from typing import Iterable, Sequence

PADDING = 0


class ItemVocabulary:
    """Ordered item ids; the item at position ``i`` of ``ids`` is model row ``i + 1``."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        for item_id in ids:
            self.add(item_id)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemVocabulary) and other.ids == self.ids

    def add(self, item_id: str) -> int:
        """Row of ``item_id``, appending it if new."""
        row = self.index.get(item_id)
        if row is None:
            self.ids.append(item_id)
            row = self.index[item_id] = len(self.ids)
        return row

    def extended(self, item_ids: Iterable[str]) -> "ItemVocabulary":
        """A new vocabulary: this one plus unseen ``item_ids`` appended in order."""
        out = ItemVocabulary(self.ids)
        for item_id in item_ids:
            out.add(item_id)
        return out

    def row(self, item_id: str) -> int:
        """Row of ``item_id`` or ``PADDING`` (0) if unknown."""
        return self.index.get(item_id, PADDING)

    def encode(self, item_ids: Iterable[str]) -> list[int]:
        """Rows of the known items, unknown ones dropped (a model cannot read them)."""
        index = self.index
        return [index[i] for i in item_ids if i in index]

    def item(self, row: int) -> str:
        return self.ids[row - 1]


def left_pad(rows: Sequence[int], max_len: int) -> list[int]:
    """The newest ``max_len`` rows, left-padded with ``PADDING``: the model's input layout."""
    rows = list(rows[-max_len:]) if max_len else []
    return [PADDING] * (max_len - len(rows)) + rows
