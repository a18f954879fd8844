"""The scorer's final ranking for a whole batch of triggers at once.

Each trigger brings up to four best-first lists (``consumers/ranking.py`` explains the
fusion): the online one (a ``BlendRanker`` row, or the popularity list before a snapshot),
the deep model's (a ``DeepRow``), co-visitation's and the transitions'. ``fuse_many`` puts
every list entry of the batch into one array, sums each item's weighted reciprocal ranks in
source order (online, deep, co-visitation, transitions: the order ``fuse`` adds them, so
the sums are the same to the bit), picks each trigger's top k by (-score, item id), and only then builds the
explanation dictionaries, for the published items alone. What it returns is exactly what
``fuse`` returns trigger by trigger (``tests/unit/consumers/test_batch_ranking.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from streamrec.consumers.ranking import RRF_K, Ranked
from streamrec.export.candidates import NO_CANDIDATES, DeepRow
from streamrec.online_models.blend_ranker import BlendRanker, RankedRow, RankQuery

_ONLINE, _DEEP, _COVISIT, _TRANSITION = 0, 1, 2, 3
_SOURCES = 4
# Up to this many triggers to fuse, each is fused in a dictionary pass (``_fuse_one``):
# replay and a latency-bound scorer rank one trigger per batch, where the ~30 array passes
# of ``_Entries.top`` cost more than the ~150 entries they sum. Both give the same lists.
DICT_FUSION_MAX_TRIGGERS = 16


class ItemSlots:
    """Item id <-> dense slot for every item any source names; ranks in id order for ties.

    Each source's own item space (a ranker's, a deep vocabulary's) is mapped once and the
    mapping kept while the source object lives in the cache.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._id_rank = np.empty(0, dtype=np.int64)
        self._maps: dict[int, tuple[object, np.ndarray]] = {}

    def slot(self, item_id: str) -> int:
        slot = self.index.get(item_id)
        if slot is None:
            slot = self.index[item_id] = len(self.ids)
            self.ids.append(item_id)
        return slot

    def mapping(self, owner: object, ids: Sequence[str]) -> np.ndarray:
        """Slots of ``ids`` (the item space of ``owner``), computed once per owner."""
        held = self._maps.get(id(owner))
        known = held[1] if held is not None and held[0] is owner else np.empty(0, np.int64)
        if known.shape[0] == len(ids):
            return known
        # Spaces only ever append (a row keeps its id): map the new rows only.
        new = ids[known.shape[0]:]
        mapped = np.concatenate([known, np.fromiter((self.slot(item) for item in new),
                                                    dtype=np.int64, count=len(new))])
        self._maps[id(owner)] = (owner, mapped)
        return mapped

    def keep_only(self, owners: Sequence[object]) -> None:
        """Forget the mappings of sources no longer in use (their objects can go)."""
        alive = {id(owner) for owner in owners}
        for key in [key for key in self._maps if key not in alive]:
            del self._maps[key]

    def id_ranks(self) -> np.ndarray:
        """Each slot's position in id order (string comparison, as ``fuse`` breaks ties)."""
        if self._id_rank.shape[0] != len(self.ids):
            rank = np.empty(len(self.ids), dtype=np.int64)
            rank[sorted(range(len(self.ids)), key=self.ids.__getitem__)] = np.arange(len(self.ids))
            self._id_rank = rank
        return self._id_rank


@dataclass(frozen=True)
class CovisitRow:
    """An item-side list for a trigger (co-visitation's or the transitions'): rows of the
    table's ``ids``, best first."""

    ids: Sequence[str]  # the item-side table's ids (only ever appended to)
    rows: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])


NO_COVISIT = CovisitRow((), np.empty(0, dtype=np.int64), np.empty(0))


@dataclass(frozen=True)
class PopularityRow:
    """The popularity list (before a partition's first snapshot) as the table's rows."""

    ids: Sequence[str]  # the item-side table's ids (only ever appended to)
    rows: np.ndarray
    scores: np.ndarray
    popularity: np.ndarray
    recency: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def entry(self, position: int) -> tuple[str, float, dict[str, float]]:
        return (self.ids[int(self.rows[position])], float(self.scores[position]),
                {"popularity": float(self.popularity[position]),
                 "recency": float(self.recency[position])})


@dataclass
class TriggerLists:
    """One trigger's sources. ``online_row`` with its ``ranker``, or ``popularity``, or
    ``online_list`` (any ranked list)."""

    k: int
    online_list: Ranked = field(default_factory=list)
    popularity: PopularityRow | None = None
    ranker: BlendRanker | None = None
    online_row: RankedRow | None = None
    deep: DeepRow = NO_CANDIDATES
    covisit: CovisitRow = NO_COVISIT
    transition: CovisitRow = NO_COVISIT
    # What ``rank_online`` asks the ranker for (set with ``ranker``).
    query: RankQuery | None = None
    excluded: np.ndarray | None = None
    depth: int = 0
    # This trigger's fusion weights (a learned fusion's, as of its position); None: the
    # batch's fixed weights.
    weights: "FusionWeights | None" = None

    def online_length(self) -> int:
        if self.online_row is not None:
            return len(self.online_row)
        return len(self.popularity) if self.popularity is not None else len(self.online_list)

    def online_entry(self, position: int) -> tuple[str, float, dict[str, float]]:
        """The online list's ``position``-th entry as ``recommend_explained`` gives it."""
        row, ranker = self.online_row, self.ranker
        if row is None or ranker is None:
            if self.popularity is not None:
                return self.popularity.entry(position)
            return self.online_list[position]
        return (ranker.ids[int(row.slots[position])], float(row.scores[position]),
                row.explanation(position, ranker.names))


@dataclass(frozen=True)
class FusionWeights:
    online: float
    deep: float
    covisit: float
    transition: float = 0.0


def rank_online(triggers: Sequence[TriggerLists]) -> None:
    """Fill ``online_row`` of every trigger that has a ranker: one ``rank_many`` per
    (ranker, depth), so a batch costs array passes, not a ranking per trigger."""
    groups: dict[tuple[int, int], list[TriggerLists]] = {}
    for trigger in triggers:
        if trigger.ranker is not None and trigger.query is not None:
            groups.setdefault((id(trigger.ranker), trigger.depth), []).append(trigger)
    for members in groups.values():
        ranker = members[0].ranker
        assert ranker is not None
        rows = ranker.rank_many([m.query for m in members], members[0].depth,  # type: ignore[misc]
                                [m.excluded for m in members])  # type: ignore[misc]
        for member, row in zip(members, rows):
            member.online_row = row


def fuse_many(triggers: Sequence[TriggerLists], slots: ItemSlots, weights: FusionWeights
              ) -> list[Ranked]:
    """Each trigger's published top k: ``fuse`` of its lists, or its online list alone."""
    out: list[Ranked] = [[] for _ in triggers]
    fusing = []
    for position, trigger in enumerate(triggers):
        if len(trigger.deep) or len(trigger.covisit) or len(trigger.transition):
            fusing.append(position)
        else:  # nothing to fuse with: the online list as it is
            out[position] = [trigger.online_entry(i)
                             for i in range(min(trigger.k, trigger.online_length()))]
    if not fusing:
        return out
    if len(fusing) <= DICT_FUSION_MAX_TRIGGERS:
        for position in fusing:
            trigger = triggers[position]
            out[position] = _fuse_one(trigger, trigger.weights or weights)
        return out
    entries = _Entries()
    for row, position in enumerate(fusing):
        trigger = triggers[position]
        weighted = trigger.weights or weights
        popularity = trigger.popularity
        if trigger.online_row is not None and trigger.ranker is not None:
            online = slots.mapping(trigger.ranker, trigger.ranker.ids)[trigger.online_row.slots]
        elif popularity is not None:
            online = slots.mapping(popularity.ids, popularity.ids)[popularity.rows]
        else:
            online = np.fromiter((slots.slot(entry[0]) for entry in trigger.online_list),
                                 dtype=np.int64, count=len(trigger.online_list))
        entries.add(row, online, _ONLINE, weighted.online, None)
        deep = trigger.deep
        if len(deep):
            vocab = deep.model.vocab.ids  # type: ignore[attr-defined]
            entries.add(row, slots.mapping(deep.model, vocab)[deep.rows], _DEEP, weighted.deep,
                        deep.log_probs)
        covisit = trigger.covisit
        if len(covisit):
            entries.add(row, slots.mapping(covisit.ids, covisit.ids)[covisit.rows], _COVISIT,
                        weighted.covisit, covisit.scores)
        transition = trigger.transition
        if len(transition):
            entries.add(row, slots.mapping(transition.ids, transition.ids)[transition.rows],
                        _TRANSITION, weighted.transition, transition.scores)
    limits = np.array([triggers[p].k for p in fusing], dtype=np.int64)
    ids = slots.ids
    picked = entries.top(limits, slots.id_ranks())
    for row, (item_slots, scores, ranks, extras) in enumerate(picked):
        if item_slots:
            out[fusing[row]] = _explained_row(triggers[fusing[row]], [ids[s] for s in item_slots],
                                              scores, ranks, extras)
    return out


def _explained_row(trigger: TriggerLists, items: list[str], scores: list[float],
                   ranks: list[list[int]], extras: list[list[float]]) -> Ranked:
    """``_explained`` of each published item of one trigger, the online parts read at once."""
    row, ranker = trigger.online_row, trigger.ranker
    online_parts: list[dict[str, float]] | None = None
    if row is not None and ranker is not None:
        # One gather for the trigger's published items instead of one per item.
        positions = [at[_ONLINE] - 1 for at in ranks if at[_ONLINE]]
        names = ranker.names
        online_parts = [{name: rank for name, rank in zip(names, component_ranks) if rank}
                        for component_ranks in row.ranks[positions].tolist()]
    out: Ranked = []
    listed_online = 0
    for item, score, item_ranks, extra in zip(items, scores, ranks, extras):
        online = None
        if item_ranks[_ONLINE] and online_parts is not None:
            online = online_parts[listed_online]
            listed_online += 1
        out.append(_explained(item, score, item_ranks, extra, trigger, online))
    return out


def _fuse_one(trigger: TriggerLists, weights: FusionWeights) -> Ranked:
    """One trigger's ``fuse`` in a dictionary pass: what ``_Entries.top`` gives its row.

    The same terms, summed in the same source order (online, deep, co-visitation,
    transitions), and the same order (-score, item id), so the floats and the picks are
    identical; only the per-call cost differs (a few dictionary operations per entry instead
    of some thirty array passes of a few microseconds each, whatever their size).
    """
    scores: dict[str, float] = {}
    # item -> each source's rank (0: not listed), then each source's extra (0.0: none).
    listed: dict[str, list] = {}
    online_weight = weights.online
    for rank, item in enumerate(_online_ids(trigger), 1):
        scores[item] = online_weight / (RRF_K + rank)
        listed[item] = [rank, 0, 0, 0, 0.0, 0.0, 0.0, 0.0]
    deep = trigger.deep
    if len(deep):
        vocab = deep.model.vocab.ids  # type: ignore[attr-defined]
        _add_source(scores, listed, [vocab[r] for r in deep.rows.tolist()],
                    deep.log_probs.tolist(), weights.deep, _DEEP)
    for row, weight, source in ((trigger.covisit, weights.covisit, _COVISIT),
                                (trigger.transition, weights.transition, _TRANSITION)):
        if len(row):
            table = row.ids
            _add_source(scores, listed, [table[r] for r in row.rows.tolist()],
                        row.scores.tolist(), weight, source)
    # (-score, id) tuples sort in C; ids are distinct, so that is the (-score, id) order.
    best = sorted([(-score, item) for item, score in scores.items()])[:max(trigger.k, 0)]
    return [_explained(item, scores[item], tuple(at[:_SOURCES]), (0.0, *at[_SOURCES + 1:]),
                       trigger)
            for item, at in ((item, listed[item]) for _, item in best)]


def source_ids(trigger: TriggerLists) -> list[list[str]]:
    """Each source's item ids for the trigger, best first, in fusion order (online, deep,
    co-visitation, transitions); empty where a source brought no list."""
    lists = [_online_ids(trigger)]
    deep = trigger.deep
    vocab = deep.model.vocab.ids if len(deep) else ()  # type: ignore[attr-defined]
    lists.append([vocab[r] for r in deep.rows.tolist()] if len(deep) else [])
    for row in (trigger.covisit, trigger.transition):
        table = row.ids
        lists.append([table[r] for r in row.rows.tolist()] if len(row) else [])
    return lists


def _online_ids(trigger: TriggerLists) -> list[str]:
    """The online list's item ids, best first."""
    row, ranker, popularity = trigger.online_row, trigger.ranker, trigger.popularity
    if row is not None and ranker is not None:
        ids = ranker.ids
        return [ids[slot] for slot in row.slots.tolist()]
    if popularity is not None:
        table = popularity.ids
        return [table[r] for r in popularity.rows.tolist()]
    return [entry[0] for entry in trigger.online_list]


def _add_source(scores: dict[str, float], listed: dict[str, list], items: list[str],
                extras: list[float], weight: float, source: int) -> None:
    for rank, (item, extra) in enumerate(zip(items, extras), 1):
        value = weight / (RRF_K + rank)
        at = listed.get(item)
        if at is None:
            scores[item] = value
            at = listed[item] = [0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0]
        else:
            scores[item] += value
        at[source] = rank
        at[source + _SOURCES] = extra


def _explained(item: str, score: float, ranks: Sequence[int], extras: Sequence[float],
               trigger: TriggerLists, online: dict[str, float] | None = None
               ) -> tuple[str, float, dict[str, float]]:
    """``fuse``'s explanation: rank 0 is a source that did not list the item. ``online``:
    the item's online components if the caller gathered them already."""
    online_rank, deep_rank, covisit_rank, transition_rank = ranks
    parts: dict[str, float] = {}
    if online_rank:
        parts.update(trigger.online_entry(online_rank - 1)[2] if online is None else online)
        parts["online_rank"] = float(online_rank)
    if deep_rank:
        parts.update(deep_rank=float(deep_rank), deep_log_prob=extras[_DEEP])
    if covisit_rank:
        parts.update(covisit_rank=float(covisit_rank), covisit_score=extras[_COVISIT])
    if transition_rank:
        parts.update(transition_rank=float(transition_rank),
                     transition_score=extras[_TRANSITION])
    return item, score, parts


class _Entries:
    """Every (trigger, item, source) of a batch, to be summed and cut in array passes.

    ``add`` only records a list; ``top`` builds the batch's columns in one pass each.
    """

    def __init__(self) -> None:
        self._rows: list[int] = []
        self._sources: list[int] = []
        self._weights: list[float] = []
        self._slots: list[np.ndarray] = []
        self._extras: list[np.ndarray | None] = []

    def add(self, row: int, slots: np.ndarray, source: int, weight: float,
            extra: np.ndarray | None) -> None:
        if slots.shape[0] == 0:
            return
        self._rows.append(row)
        self._sources.append(source)
        self._weights.append(weight)
        self._slots.append(slots)
        self._extras.append(extra)

    def _columns(self) -> tuple[np.ndarray, ...]:
        """(row, slot, source, rank, value, extra) of every entry, lists in ``add`` order;
        and each list's (row, length, first entry)."""
        lengths = np.fromiter(map(len, self._slots), dtype=np.int64, count=len(self._slots))
        firsts = np.cumsum(lengths) - lengths
        part_rows = np.array(self._rows, dtype=np.int64)
        row = np.repeat(part_rows, lengths)
        source = np.repeat(np.array(self._sources, dtype=np.int64), lengths)
        rank = np.arange(1, row.shape[0] + 1, dtype=np.int64) - np.repeat(firsts, lengths)
        # Each entry's weight / (RRF_K + rank): the same IEEE division as one list at a time.
        weight = np.repeat(np.array(self._weights, dtype=np.float64), lengths)
        value = weight / (RRF_K + rank.astype(np.float64))
        # float32 log-probabilities widen exactly: the same floats ``fuse`` publishes.
        zeros = np.zeros(int(lengths.max()))
        extra = np.concatenate([zeros[:len(slots)] if values is None else values
                                for slots, values in zip(self._slots, self._extras)]
                               ).astype(np.float64, copy=False)
        return (row, np.concatenate(self._slots), source, rank, value, extra,
                part_rows, lengths, firsts)

    def top(self, limits: np.ndarray, id_ranks: np.ndarray
            ) -> list[tuple[list[int], list[float], list[list[int]], list[list[float]]]]:
        """Per trigger row, its top ``k``: slots, fused scores, each item's rank and extra per
        source (0: not listed), sources in ``_ONLINE, _DEEP, _COVISIT, _TRANSITION`` order."""
        (row, slot, source, rank, value, extra, part_rows, lengths,
         firsts) = self._columns()
        # The stable order of (row, slot, source) as one integer key: ``lexsort`` of the
        # three, in one sort instead of three.
        key = (row * max(id_ranks.shape[0], 1) + slot) * _SOURCES + source
        order = np.argsort(key, kind="stable")
        row, slot, source, rank, value, extra = (a[order] for a in (
            row, slot, source, rank, value, extra))
        first = np.ones(row.shape[0], dtype=bool)
        first[1:] = (row[1:] != row[:-1]) | (slot[1:] != slot[:-1])
        group = np.cumsum(first) - 1
        starts = np.flatnonzero(first)
        fused = value[starts].copy()  # the first source's term is assigned, not added
        position = np.arange(row.shape[0]) - starts[group]
        for later in range(1, _SOURCES):
            at = position == later
            fused[group[at]] += value[at]
        g_row, g_slot = row[starts], slot[starts]
        contenders = _contenders(fused, g_row, limits, value, part_rows, lengths, firsts)
        pick = contenders[np.lexsort((id_ranks[g_slot[contenders]], -fused[contenders],
                                      g_row[contenders]))]
        picked_rows = g_row[pick]
        within = np.arange(pick.shape[0]) - np.searchsorted(picked_rows, picked_rows, "left")
        keep = pick[within < limits[picked_rows]]
        # Each kept item's rank and extra per source (0: not listed), as Python values.
        kept_ranks = np.zeros((keep.shape[0], _SOURCES), dtype=np.int64)
        kept_extras = np.zeros((keep.shape[0], _SOURCES))
        place = np.full(starts.shape[0], -1, dtype=np.int64)
        place[keep] = np.arange(keep.shape[0])
        where = place[group]
        listed = where >= 0
        kept_ranks[where[listed], source[listed]] = rank[listed]
        kept_extras[where[listed], source[listed]] = extra[listed]
        bounds = np.searchsorted(g_row[keep], np.arange(limits.shape[0] + 1)).tolist()
        kept_slots, kept_fused = g_slot[keep].tolist(), fused[keep].tolist()
        ranks_of, extras_of = kept_ranks.tolist(), kept_extras.tolist()
        return [(kept_slots[a:b], kept_fused[a:b], ranks_of[a:b], extras_of[a:b])
                for a, b in zip(bounds[:-1], bounds[1:])]


def _contenders(fused: np.ndarray, g_row: np.ndarray, limits: np.ndarray, value: np.ndarray,
                part_rows: np.ndarray, lengths: np.ndarray, firsts: np.ndarray) -> np.ndarray:
    """The (row, item) groups that can be in their row's top ``k``, in group order.

    A list with at least k entries gives a bar: its k-th term. Where a row holds at least k
    groups fused at or above its bar, its k-th best is at or above the bar too, so no group
    below it can be picked; the cut then sorts a few dozen groups a row instead of hundreds.
    Rows without such a bar (or without k groups reaching it) keep every group.
    """
    m = limits.shape[0]
    k = limits[part_rows]
    barred = (k > 0) & (lengths >= k)
    bar = np.full(m, -np.inf)
    np.maximum.at(bar, part_rows[barred], value[(firsts + k - 1)[barred]])
    reached = fused >= bar[g_row]
    short = np.bincount(g_row[reached], minlength=m) < limits
    bar[short] = -np.inf
    unbarred = np.isneginf(bar)
    return np.flatnonzero(unbarred[g_row] | (fused >= bar[g_row]))
