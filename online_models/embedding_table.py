"""The storage under the online embeddings: id <-> slot, vectors, biases, last-seen time.

Also the batch plumbing of its SGD: rounds of distinct users, summed steps on repeated slots.

Slots freed by TTL eviction are reused, so a table's memory is bounded by the ids alive at
once, not by every id ever seen. Arrays double when full (amortised O(1) growth).
"""

from __future__ import annotations

from typing import Sequence

import msgspec
import numpy as np

from streamrec.online_models.learner_state import (MAX_LEARNED_MAGNITUDE, ArrayState, require,
                                                   slots)


def ridge_map(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """``A`` minimising ``|x A - y|^2 + ridge |A|^2``: maps one embedding space to another."""
    return np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)


def rounds(keys: np.ndarray) -> tuple[np.ndarray | None, list[int]]:
    """Split a batch into rounds where each key (user row) appears at most once.

    The k-th occurrence of a key goes to round k, so one key's events keep their order and
    a round can write its rows back directly. Returns the permutation that sorts the batch
    by round (None: already one round) and the round boundaries in that order.
    """
    n = keys.shape[0]
    if n <= 1:
        return None, [0, n]
    # np.r_ avoided throughout: its Python overhead shows at ~80 rounds per chunk.
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new_key = np.ones(n, dtype=bool)
    new_key[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group_start = np.maximum.accumulate(np.where(new_key, np.arange(n), 0))
    occurrence = np.empty_like(keys)
    occurrence[order] = np.arange(n) - group_start
    return np.argsort(occurrence, kind="stable"), [0, *np.cumsum(np.bincount(occurrence)).tolist()]


class EmbeddingTableState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An ``EmbeddingTable`` as plain data (``EmbeddingTable.to_state``)."""

    ids: list[str]  # slot -> id, "" for a free slot
    index_slots: ArrayState  # int64: the live slots, in the index's insertion order
    free: ArrayState  # int64: the free slots, in the order they are reused (last first)
    vectors: ArrayState
    bias: ArrayState
    last_ts: ArrayState
    alive: ArrayState


class EmbeddingTable:
    """Id <-> slot with vectors, biases and last-seen event time; freed slots are reused."""

    def __init__(self, dim: int, capacity: int = 64) -> None:
        self.ids: list[str] = []  # slot -> id, "" for a free slot
        self.index: dict[str, int] = {}
        self.free: list[int] = []
        self.vectors = np.zeros((capacity, dim), dtype=np.float32)
        self.bias = np.zeros(capacity, dtype=np.float32)
        self.last_ts = np.zeros(capacity, dtype=np.float64)
        self.alive = np.zeros(capacity, dtype=bool)

    @property
    def high(self) -> int:
        """Slots ever used: arrays are only meaningful below this."""
        return len(self.ids)

    def add(self, key: str, ts: float, vector: np.ndarray) -> int:
        if self.free:
            slot = self.free.pop()
            self.ids[slot] = key
        else:
            slot = len(self.ids)
            self.ids.append(key)
            if slot >= self.vectors.shape[0]:  # double: amortised O(1) growth
                self.vectors = np.concatenate([self.vectors, np.zeros_like(self.vectors)])
                for name in ("bias", "last_ts", "alive"):
                    array = getattr(self, name)
                    setattr(self, name, np.concatenate([array, np.zeros_like(array)]))
        self.index[key] = slot
        self.vectors[slot], self.bias[slot] = vector, 0.0
        self.last_ts[slot], self.alive[slot] = ts, True
        return slot

    def step(self, slots: np.ndarray, grad_vectors: np.ndarray, grad_bias: np.ndarray,
             lr: np.float32) -> None:
        """One SGD step: subtract ``lr`` times each slot's gradients, summed over repeats."""
        # Sort + reduceat: much faster than ufunc.at for the repeated slots of a batch.
        order = np.argsort(slots, kind="stable")
        sorted_slots = slots[order]
        first = np.ones(slots.shape[0], dtype=bool)
        first[1:] = sorted_slots[1:] != sorted_slots[:-1]
        starts = np.flatnonzero(first)
        unique = sorted_slots[starts]
        self.vectors[unique] -= lr * np.add.reduceat(grad_vectors[order], starts, axis=0)
        self.bias[unique] -= lr * np.add.reduceat(grad_bias[order], starts)

    def remove(self, key: str) -> bool:
        """Erase one id and its vector (privacy: a forgotten user); False if unknown."""
        slot = self.index.pop(key, None)
        if slot is None:
            return False
        self.ids[slot] = ""
        self.vectors[slot] = 0.0
        self.bias[slot] = 0.0
        self.alive[slot] = False
        self.free.append(slot)
        return True

    def to_state(self) -> EmbeddingTableState:
        return EmbeddingTableState(
            ids=list(self.ids),
            index_slots=ArrayState.of(np.fromiter(self.index.values(), np.int64, len(self.index))),
            free=ArrayState.of(np.asarray(self.free, dtype=np.int64)),
            vectors=ArrayState.of(self.vectors), bias=ArrayState.of(self.bias),
            last_ts=ArrayState.of(self.last_ts), alive=ArrayState.of(self.alive))

    @classmethod
    def from_state(cls, state: EmbeddingTableState) -> "EmbeddingTable":
        """The table ``to_state`` exported; ``StateError`` unless it is self-consistent."""
        vectors = state.vectors.to_array("<f4", ndim=2, max_abs=MAX_LEARNED_MAGNITUDE)
        capacity, high = vectors.shape[0], len(state.ids)
        require(1 <= capacity and high <= capacity and vectors.shape[1] >= 1,
                "table capacity or vector size out of range")
        table = cls(vectors.shape[1], capacity=1)
        table.vectors = vectors
        table.bias = state.bias.to_array("<f4", ndim=1, max_abs=MAX_LEARNED_MAGNITUDE)
        table.last_ts = state.last_ts.to_array("<f8", ndim=1, finite=True)
        table.alive = state.alive.to_array("|b1", ndim=1)
        require(table.bias.shape == table.last_ts.shape == table.alive.shape == (capacity,),
                "table arrays of different lengths")
        live = slots(state.index_slots.to_array("<i8", ndim=1), high, "index_slots")
        free = slots(state.free.to_array("<i8", ndim=1), high, "free")
        # Every used slot is either live (alive, with an id) or free (dead, no id), once.
        used = np.bincount(np.concatenate([live, free]), minlength=high)
        require(bool((used == 1).all()), "a slot is both live and free, or neither, or twice")
        require(int(table.alive.sum()) == live.shape[0] and bool(table.alive[live].all()),
                "alive slots are not the live slots")
        table.ids = list(state.ids)
        require(all(table.ids[slot] == "" for slot in free.tolist()), "a free slot keeps an id")
        table.index = {table.ids[slot]: slot for slot in live.tolist()}
        require(len(table.index) == live.shape[0], "two live slots hold the same id")
        table.free = free.tolist()
        return table

    def evict_older_than(self, cutoff: float) -> int:
        n = self.high
        dead = np.flatnonzero(self.alive[:n] & (self.last_ts[:n] < cutoff))
        for slot in dead.tolist():
            del self.index[self.ids[slot]]
            self.ids[slot] = ""
            self.free.append(slot)
        self.alive[dead] = False
        return int(dead.shape[0])


def adopt_table(users: EmbeddingTable, items: EmbeddingTable, item_ids: Sequence[str],
                vectors: np.ndarray, ridge: float, fresh: np.ndarray) -> dict[str, int]:
    """Move ``users`` and ``items`` into the space of a deep model's item ``vectors``.

    See ``OnlineUserEmbeddings.adopt_item_table``. ``fresh`` holds random vectors (one
    per used item slot) for when the tables share too few items to fit a mapping.
    """
    new = np.asarray(vectors, dtype=np.float64)
    if new.ndim != 2 or new.shape[0] != len(item_ids):
        raise ValueError("vectors must be (len(item_ids), d)")
    d_new, old_table = new.shape[1], items.vectors.astype(np.float64)
    pairs = [(items.index[i], j) for j, i in enumerate(item_ids) if i in items.index]
    ours, theirs = np.array([p[0] for p in pairs], int), np.array([p[1] for p in pairs], int)
    old_c, new_c = old_table[ours], new[theirs]
    # A linear map needs well over d shared items to be better than noise.
    enough = len(pairs) >= 2 * max(d_new, old_table.shape[1])
    for table in (users, items):
        grown = np.zeros((table.vectors.shape[0], d_new), dtype=np.float32)
        if enough and table is users:
            grown[:] = table.vectors.astype(np.float64) @ ridge_map(new_c, old_c, ridge).T
        elif enough:
            grown[:] = old_table @ ridge_map(old_c, new_c, ridge)
        table.vectors = grown
    if not enough:  # nothing to map through: items they lack start afresh, users at zero
        items.vectors[: items.high] = fresh
    items.vectors[ours] = new_c
    added = 0
    for j, item in enumerate(item_ids):
        if item not in items.index:
            items.add(item, 0.0, new[j].astype(np.float32))
            added += 1
    return {"adopted": len(pairs), "added": added, "kept": len(items.index) - len(pairs) - added,
            "users_projected": len(users.index) if enough else 0}
