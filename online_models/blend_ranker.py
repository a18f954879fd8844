"""Many users ranked at once by one frozen ``OnlineBlend`` (the scorer's batch-first path).

It reads the three components' tables directly (same package, read-only): the point is to
share their item-side work across users, which their one-user methods cannot.

The scorer holds a periodic snapshot of each partition's blend and never learns into it, so
everything about the items (the FM's item-side terms, the recency order, the id spaces) is
computed once per snapshot, and a batch of triggers costs one matrix-vector product per
source and user plus array work shared by all rows. What ``rank_many`` returns is exactly
``OnlineBlend.recommend_explained_for`` for each row (items, order, scores and component
ranks bit for bit; ``tests/unit/online_models/test_blend_ranker.py``), as arrays: the
explanation dictionaries are built only for the items a trigger publishes.

Products stay one vector at a time: a float32 matrix-matrix product rounds differently from
the matrix-vector one ``recommend_explained_for`` uses, and equal rankings need equal scores.

>>> from streamrec.events import ClickEvent
>>> blend = OnlineBlend(seed=1)
>>> for n in range(300):
...     user, item = f"u{n % 2}", f"i{(n % 2) * 3 + (n // 2) % 3}"
...     blend.learn_one(ClickEvent(event_id=str(n), user_id=user, item_id=item,
...                                type="click", ts=float(n)))
>>> ranker = BlendRanker(blend)
>>> rows = ranker.rank_many([RankQuery("u0", None, None, set())], k=3)
>>> sorted(ranker.ids[slot] for slot in rows[0].slots.tolist())
['i0', 'i1', 'i2']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Sequence

import numpy as np

from streamrec.online_models.blend import OnlineBlend

# Component order is fusion order: it decides the sums' order and which item came first.
COMPONENTS = ("embedding", "fm", "recency")
_ROW_CHUNK_ELEMENTS = 1 << 21  # rows x items per array pass: bounded memory at 100k items
_NO_SLOTS = np.empty(0, dtype=np.int64)
_NO_SLOTS.flags.writeable = False  # shared by every row without exclusions


@dataclass(frozen=True)
class RankQuery:
    """One user to rank: id, fresher vector and recent items (None: the snapshot's own)."""

    user_id: str
    vector: Sequence[float] | None
    recent_items: Sequence[str] | None
    exclude: Collection[str]


@dataclass(frozen=True)
class RankedRow:
    """A row's fused top list: item slots (``BlendRanker.ids``), scores, component ranks.

    ``ranks[i, c]`` is item ``i``'s 1-based rank in component ``c`` (``COMPONENTS``), 0 where
    that component did not rank it.
    """

    slots: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray

    def __len__(self) -> int:
        return int(self.slots.shape[0])

    def explanation(self, position: int, names: Sequence[str]) -> dict[str, float]:
        """``recommend_explained_for``'s component dictionary of the item at ``position``."""
        ranks = self.ranks[position].tolist()
        return {name: rank for name, rank in zip(names, ranks) if rank}


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``baselines.top_k`` of every row: (row, column) of each pick, rows in order, best first.

    Above the row's k-th value, then the lowest-index ties with it, ordered by (-score,
    index), non-finite dropped: the same picks and order as ``top_k`` on each row alone.
    """
    m, n = scores.shape
    if k <= 0 or n == 0 or m == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    if k < n:
        kth = np.partition(scores, n - k, axis=1)[:, n - k][:, None]
        above = scores > kth
        ties = scores == kth
        room = k - above.sum(axis=1, keepdims=True)
        chosen = above | (ties & (np.cumsum(ties, axis=1) <= room))
    else:
        chosen = np.ones((m, n), dtype=bool)
    chosen &= np.isfinite(scores)
    rows, cols = np.nonzero(chosen)
    order = np.lexsort((cols, -scores[rows, cols], rows))
    return rows[order], cols[order]


class BlendRanker:
    """A read-only ranking view of one ``OnlineBlend``; the blend must not learn meanwhile."""

    def __init__(self, blend: OnlineBlend) -> None:
        self.blend = blend
        emb, fm, rec = blend.embeddings, blend.fm, blend.recency
        self.weights = (blend.embedding_weight, blend.fm_weight, blend.recency_weight)
        self.names = tuple(name for name, weight in zip(COMPONENTS, self.weights) if weight > 0)
        # One item space for the three components: the embeddings' live items, then the
        # FM's and the recency model's others.
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        n_emb = emb._items.high
        emb_ids = emb._items.ids[:n_emb]
        self._emb_to = self._map(emb_ids, live=emb._items.alive[:n_emb])
        self._fm_to = self._map(fm._items.ids, live=None)
        self._rec_to = self._map(rec._items, live=None)
        size = len(self.ids)
        self._from = [self._inverse(to, size) for to in (self._emb_to, self._fm_to, self._rec_to)]
        # Embedding: item biases as float64 with dead slots at -inf (u . v is added on top).
        base = emb._items.bias[:n_emb].astype(np.float64)
        base[~emb._items.alive[:n_emb]] = -np.inf
        self._emb_base, self._emb_vectors = base, emb._items.vectors[:n_emb]
        # FM: the item-only terms, as ``FMRecommender.score_all`` computes them.
        n_fm = len(fm._items)
        rows, values = fm._item_rows[:n_fm], fm._item_values[:n_fm]
        vx = fm.fm.latents[rows] * values[:, :, None]
        self._fm_item_sum = vx.sum(axis=1)
        within = 0.5 * ((self._fm_item_sum * self._fm_item_sum).sum(axis=1)
                        - (vx * vx).sum(axis=(1, 2)))
        linear = (fm.fm.weights[rows] * values).sum(axis=1)
        self._fm_items_only = linear + within
        # Recency: user-independent, so only exclusions differ between rows.
        self._rec_scores = rec.scores() if rec.n_items else np.zeros(0)
        self._live_counts = (int(emb._items.alive[:n_emb].sum()), n_fm, rec.n_items)

    def _map(self, ids: Sequence[str], live: np.ndarray | None) -> np.ndarray:
        to = np.full(len(ids), -1, dtype=np.int64)
        index, out = self.index, self.ids
        for position, item in enumerate(ids):
            if live is not None and not live[position]:
                continue
            slot = index.get(item)
            if slot is None:
                slot = index[item] = len(out)
                out.append(item)
            to[position] = slot
        return to

    @staticmethod
    def _inverse(to: np.ndarray, size: int) -> np.ndarray:
        back = np.full(size, -1, dtype=np.int64)
        known = to >= 0
        back[to[known]] = np.flatnonzero(known)
        return back

    def excluded_slots(self, exclude: Collection[str]) -> np.ndarray:
        """Slots of ``exclude`` that this blend knows (the rest cannot be ranked anyway)."""
        if not exclude:
            return _NO_SLOTS
        index = self.index
        # A list then one conversion: np.fromiter costs more per element than the lookup.
        return np.array([index[i] for i in exclude if i in index], dtype=np.int64)

    def ranks_anything(self, excluded: np.ndarray) -> bool:
        """Whether ``rank_many`` gives the row any item (else the scorer falls back)."""
        for weight, back, live in zip(self.weights, self._from, self._live_counts):
            if weight > 0 and live > int(np.count_nonzero(back[excluded] >= 0)):
                return True
        return False

    # -- ranking -------------------------------------------------------------------------
    def rank_many(self, queries: Sequence[RankQuery], k: int,
                  excluded: Sequence[np.ndarray] | None = None) -> list[RankedRow]:
        """``recommend_explained_for(q.user_id, q.vector, q.recent_items, k, q.exclude)``
        for every query. ``excluded``: each query's ``excluded_slots``, if already known."""
        if excluded is None:
            excluded = [self.excluded_slots(q.exclude) for q in queries]
        blend = self.blend
        depth = max(blend.candidates, k)
        lists: list[tuple[np.ndarray, np.ndarray]] = []  # per component: (row, union slot)
        for component, weight in enumerate(self.weights):
            if weight <= 0:
                lists.append((np.empty(0, np.int64), np.empty(0, np.int64)))
                continue
            rank = (self._embedding_lists, self._fm_lists, self._recency_lists)[component]
            rows, local = rank(queries, excluded, depth)
            lists.append((rows, (self._emb_to, self._fm_to, self._rec_to)[component][local]))
        return self._fused(len(queries), lists, k)

    @staticmethod
    def _row_step(n: int) -> int:
        """Rows per array pass over ``n`` items (memory stays bounded at any catalogue)."""
        return max(1, _ROW_CHUNK_ELEMENTS // max(n, 1))

    def _top_lists(self, queries: Sequence[RankQuery], excluded: Sequence[np.ndarray],
                   depth: int, n: int, back: np.ndarray,
                   scores_of: Callable[[RankQuery], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each query's top ``depth`` of ``scores_of(query)`` (``n`` items, one component's
        space ``back`` maps into) without its exclusions: (row, item) pairs, best first."""
        out_rows, out_cols = [], []
        step = self._row_step(n)
        for start in range(0, len(queries), step):
            chunk = queries[start:start + step]
            scores = np.empty((len(chunk), n), dtype=np.float64)
            for row, query in enumerate(chunk):
                scores[row] = scores_of(query)
            # Every row's exclusions masked in one assignment.
            held = excluded[start:start + len(chunk)]
            lengths = [slots.shape[0] for slots in held]
            if sum(lengths):
                local = back[np.concatenate(held)]
                known = local >= 0
                scores[np.repeat(np.arange(len(chunk)), lengths)[known], local[known]] = -np.inf
            rows, cols = top_k_rows(scores, depth)
            out_rows.append(rows + start)
            out_cols.append(cols)
        return _joined(out_rows, out_cols)

    def _embedding_lists(self, queries: Sequence[RankQuery], excluded: Sequence[np.ndarray],
                         depth: int) -> tuple[np.ndarray, np.ndarray]:
        emb = self.blend.embeddings
        base, vectors = self._emb_base, self._emb_vectors

        def scores_of(query: RankQuery) -> np.ndarray:
            # As OnlineUserEmbeddings.score_all: b + V u, float32 product added in float64.
            if query.vector is not None:
                user = np.asarray(query.vector, dtype=np.float32)
                if user.shape != (emb.current_dim,):
                    raise ValueError(f"vector has shape {user.shape}, "
                                     f"expected ({emb.current_dim},)")
            else:
                slot = emb._users.index.get(query.user_id)
                if slot is None:
                    return base
                user = emb._users.vectors[slot]
            return base + vectors @ user

        return self._top_lists(queries, excluded, depth, base.shape[0], self._from[0], scores_of)

    def _fm_lists(self, queries: Sequence[RankQuery], excluded: Sequence[np.ndarray],
                  depth: int) -> tuple[np.ndarray, np.ndarray]:
        fm = self.blend.fm
        items_only, item_sum = self._fm_items_only, self._fm_item_sum

        def scores_of(query: RankQuery) -> np.ndarray:
            # As FMRecommender.score_all, with the item-only terms computed once.
            recent = None if query.recent_items is None else fm.history_of(query.recent_items)
            rows_u, values_u = fm._user_encoded(query.user_id, grow=False, recent=recent)
            user_sum = fm.fm.latents[rows_u].T @ np.asarray(values_u, dtype=np.float32)
            return items_only + item_sum @ user_sum

        return self._top_lists(queries, excluded, depth, items_only.shape[0], self._from[1],
                               scores_of)

    def _recency_lists(self, queries: Sequence[RankQuery], excluded: Sequence[np.ndarray],
                       depth: int) -> tuple[np.ndarray, np.ndarray]:
        """``PopularityRecency.recommend_explained``'s picks: its argpartition cut (ties at
        the cut as numpy's selection leaves them, which is the same on a row of a matrix),
        then (-score, index)."""
        blended, back = self._rec_scores, self._from[2]
        n = blended.shape[0]
        by_take: dict[int, list[int]] = {}
        local_excluded = []
        for row, slots in enumerate(excluded):
            local = back[slots]
            local = local[local >= 0]
            local_excluded.append(local)
            take = min(depth, n - local.shape[0])
            if n and take > 0:
                by_take.setdefault(take, []).append(row)
        out_rows, out_cols = [], []
        for take, members in by_take.items():
            step = self._row_step(n)
            for start in range(0, len(members), step):
                rows = np.asarray(members[start:start + step], dtype=np.int64)
                scores = np.repeat(blended[None, :], rows.shape[0], axis=0)
                for position, row in enumerate(rows.tolist()):
                    scores[position, local_excluded[row]] = -np.inf
                if take < n:
                    top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
                else:
                    top = np.repeat(np.arange(n)[None, :], rows.shape[0], axis=0)
                values = np.take_along_axis(scores, top, axis=1)
                top = np.take_along_axis(top, np.lexsort((top, -values), axis=1), axis=1)
                out_rows.append(np.repeat(rows, take))
                out_cols.append(top.ravel())
        rows_all, cols_all = _joined(out_rows, out_cols)
        order = np.argsort(rows_all, kind="stable")  # rows in order, each best first
        return rows_all[order], cols_all[order]

    def _fused(self, m: int, lists: list[tuple[np.ndarray, np.ndarray]], k: int
               ) -> list[RankedRow]:
        """``OnlineBlend._fused``: weighted reciprocal rank, ties by first insertion."""
        rrf_k = self.blend.rrf_k
        parts_row, parts_slot, parts_comp, parts_rank, parts_value = [], [], [], [], []
        for component, (rows, slots) in enumerate(lists):
            if rows.shape[0] == 0:
                continue
            starts = np.searchsorted(rows, rows, side="left")
            rank = np.arange(rows.shape[0]) - starts + 1  # 1-based within the row
            parts_row.append(rows)
            parts_slot.append(slots)
            parts_comp.append(np.full(rows.shape[0], component, dtype=np.int64))
            parts_rank.append(rank)
            parts_value.append(self.weights[component] / (rrf_k + rank.astype(np.float64)))
        empty = RankedRow(np.empty(0, np.int64), np.empty(0), np.zeros((0, len(self.names))))
        if not parts_row:
            return [empty for _ in range(m)]
        row, slot, comp, rank, value = (np.concatenate(p) for p in (
            parts_row, parts_slot, parts_comp, parts_rank, parts_value))
        # ``lexsort((comp, slot, row))`` as one stable sort of one integer key.
        key = (row * max(len(self.ids), 1) + slot) * len(COMPONENTS) + comp
        order = np.argsort(key, kind="stable")
        row, slot, comp, rank, value = row[order], slot[order], comp[order], rank[order], value[order]
        first = np.ones(row.shape[0], dtype=bool)
        first[1:] = (row[1:] != row[:-1]) | (slot[1:] != slot[:-1])
        group = np.cumsum(first) - 1
        starts = np.flatnonzero(first)
        # Summed in component order, one term at a time, as the dictionary fusion adds.
        fused = 0.0 + value[starts]
        position = np.arange(row.shape[0]) - starts[group]
        for later in (1, 2):
            at = position == later
            fused[group[at]] += value[at]
        ranks = np.zeros((starts.shape[0], len(COMPONENTS)))
        ranks[group, comp] = rank
        # Insertion order: the first component that ranked the item, then its rank there.
        inserted = comp[starts] * (rank.max() + 1) + rank[starts]
        g_row, g_slot = row[starts], slot[starts]
        pick = np.lexsort((inserted, -fused, g_row))
        g_row = g_row[pick]
        within = np.arange(pick.shape[0]) - np.searchsorted(g_row, g_row, side="left")
        keep = pick[within < k]
        kept_rows = row[starts][keep]
        bounds = np.searchsorted(kept_rows, np.arange(m + 1))
        columns = [COMPONENTS.index(name) for name in self.names]
        out = []
        for r in range(m):
            chosen = keep[bounds[r]:bounds[r + 1]]
            out.append(RankedRow(g_slot[chosen], fused[chosen], ranks[chosen][:, columns]))
        return out


def _joined(rows: list[np.ndarray], cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(rows), np.concatenate(cols)
