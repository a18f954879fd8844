"""Deep candidate generation for the scorer: top-C items per user from the served model.

The scorer unions these with online-embedding, trending and new-item candidates and
reranks the union; this object is only the deep half, pure and torch-free. It answers a
whole batch of users with one ONNX Runtime run and one matrix product, and reports each
candidate's raw score and its log-probability under the model's softmax over the full
catalogue — the latter is comparable across model versions, which a blend weight needs.

Swapping models is replacing the object (``with_model``): every method is read-only, so a
request that started on the old generator finishes on it.

>>> generator = DeepCandidateGenerator(None)
>>> generator.model_version, generator.generate([["i1"]])
('none', [[]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np

from streamrec.export.serving import OnnxSequenceModel, top_k_excluding
from streamrec.online_models.blend_ranker import top_k_rows

NO_MODEL = "none"
# Up to this many items a batch selects its top-C in one array pass (above, per row).
ARRAY_TOP_K_ITEMS = 20_000


@dataclass(frozen=True)
class DeepCandidate:
    """One candidate: item id, dot-product score, and log softmax over all model items."""

    item_id: str
    score: float
    log_prob: float


class DeepCandidateGenerator:
    """Top-``candidates`` items per user from an ``OnnxSequenceModel`` (or none yet)."""

    def __init__(self, model: OnnxSequenceModel | None, candidates: int = 200) -> None:
        if candidates <= 0:
            raise ValueError("candidates must be positive")
        self.model = model
        self.candidates = candidates

    @property
    def model_version(self) -> str:
        """The serving model's version, or ``"none"`` before the first model arrives."""
        return self.model.version if self.model is not None else NO_MODEL

    def with_model(self, model: OnnxSequenceModel | None) -> "DeepCandidateGenerator":
        """A generator on ``model`` with the same settings (build it, then swap the reference)."""
        return DeepCandidateGenerator(model, self.candidates)

    def generate(self, sequences: Sequence[Sequence[str]],
                 excludes: Sequence[Collection[str]] | None = None,
                 candidates: int | None = None) -> list[list[DeepCandidate]]:
        """Candidates per user, best first; empty for users the model knows nothing of.

        ``sequences`` are users' recent item ids, oldest first; ``excludes`` the items each
        user must not get (already seen, unavailable).
        """
        ids = self.model.vocab.ids if self.model is not None else []
        return [[DeepCandidate(ids[i], s, lp) for i, s, lp in zip(
                    row.rows.tolist(), row.scores.tolist(), row.log_probs.tolist())]
                for row in self.generate_rows(sequences, excludes, candidates)]

    def generate_rows(self, sequences: Sequence[Sequence[str]],
                      excludes: Sequence[Collection[str]] | None = None,
                      candidates: int | None = None) -> list[DeepRow]:
        """``generate`` as arrays (the scorer's batch path): no object per candidate."""
        c = candidates or self.candidates
        out = [NO_CANDIDATES] * len(sequences)
        model = self.model
        if model is None or not sequences:
            return out
        encoded = model.encode(sequences)
        known = np.flatnonzero(encoded[:, -1] != 0)  # left-padded: last slot empty = no item
        if len(known) == 0:
            return out
        scores = model.scores(model.user_vectors_encoded(encoded[known]))  # [users, items]
        peak = scores.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(scores - peak).sum(axis=1))
        index = model.vocab.index
        users = known.tolist()
        # Vocabulary rows are 1-based (0 is padding); score columns 0-based.
        excluded = [_columns_of(index, excludes[user]) if excludes is not None else _NO_COLUMNS
                    for user in users]
        if scores.shape[1] <= ARRAY_TOP_K_ITEMS and np.isfinite(scores).all():
            # One array pass for the batch: the same picks and order as top_k_excluding
            # (best finite outside the exclusions, ties by lower index).
            masked = scores.copy()
            lengths = [columns.shape[0] for columns in excluded]
            if sum(lengths):
                masked[np.repeat(np.arange(len(users)), lengths),
                       np.concatenate(excluded)] = -np.inf
            picked_rows, picked_cols = top_k_rows(masked, c)
            # Elementwise, as row by row: the same float32 log-probabilities.
            picked_scores = scores[picked_rows, picked_cols]
            picked_log_probs = picked_scores - log_norm[picked_rows]
            bounds = np.searchsorted(picked_rows, np.arange(len(users) + 1)).tolist()
            for row, user in enumerate(users):
                at = slice(bounds[row], bounds[row + 1])
                out[user] = DeepRow(model, picked_cols[at], picked_scores[at],
                                    picked_log_probs[at])
            return out
        # A big catalogue: each row's pruned selection reads less.
        for row, (user, columns) in enumerate(zip(users, excluded)):
            best = top_k_excluding(scores[row], c, set(columns.tolist()))
            best_scores = scores[row, best]
            out[user] = DeepRow(model, best, best_scores, best_scores - log_norm[row])
        return out


_NO_COLUMNS = np.empty(0, dtype=np.int64)
_NO_COLUMNS.flags.writeable = False  # shared by every row without exclusions


def _columns_of(index: dict[str, int], items: Collection[str]) -> np.ndarray:
    """Score columns of the ``items`` the vocabulary (``index``: its rows) knows."""
    if not items:
        return _NO_COLUMNS
    # A list then one conversion: np.fromiter costs more per element than the lookup.
    return np.array([index[i] for i in items if i in index], dtype=np.int64) - 1


@dataclass(frozen=True)
class DeepRow:
    """One user's candidates as arrays: ``model.vocab.ids`` rows (0-based), raw scores and
    log-probabilities (float32), best first."""

    model: object
    rows: np.ndarray
    scores: np.ndarray
    log_probs: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])


NO_CANDIDATES = DeepRow(None, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32),
                        np.empty(0, dtype=np.float32))
