"""Serve a verified model with ONNX Runtime and numpy only: user vectors and top-K items.

``OnnxSequenceModel`` is the pure object the scorer holds: it never imports torch (the
serving image has no torch; a test checks ``sys.modules``), owns one warmed-up
``InferenceSession`` and the item table, and answers in batches. Scores are
``user_vector @ item_table.T``, computed here rather than in the graph so the scorer can
append new items to the table without a new graph.

Retrieval layout: the table is float32, C-contiguous ``[n_items, d]`` with the padding row
dropped, so one matvec streams it once from memory (bandwidth-bound). A single vector is
scored into a per-thread preallocated buffer (no 400 KB array per call), and
``top_k_indices`` prunes with group maxima so only about k candidates are sorted.

>>> # model = OnnxSequenceModel("models/v000003")
>>> # model.recommend([["i1", "i7"]], k=10, excludes=[{"i1", "i7"}])
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from streamrec.export.interface import INPUT_NAME, RETRIEVAL_GRAPH_B64
from streamrec.export.parity import make_session
from streamrec.export.store import VerifiedModel, load_verified
from streamrec.export.vocab import ItemVocabulary

Ranking = list[tuple[str, float]]


_GROUPS_PER_K = 8  # 8k groups: ~105 rows survive for k = 100 of 100k random scores


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``scores``, best first, ties by lower index: exactly
    ``np.argsort(-scores, kind="stable")[:k]`` (NaN last), in linear time.

    A full ``argpartition`` over 100k scores costs more than computing them, so a bound
    prunes first: the columns of the row-major ``[n // 8k, 8k]`` view are 8k interleaved
    groups whose maxima one vectorised ``maximum.reduce`` finds, and the k-th largest
    maximum ``t`` is reached by k distinct scores. So whenever at least k scores are
    ``>= t``, they include the top k and every tie with the k-th, and only they (about
    1.05 k rows) are sorted. Numpy's C methods are called directly: with the code out of
    cache their Python wrappers cost ~5% of the table read (``benchmarks/scoring.py``).
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    groups = _GROUPS_PER_K * k
    rows = n // groups
    if rows < 4:  # small input: sorting it all is as cheap
        return (-scores).argsort(kind="stable")[:k]
    maxima = np.maximum.reduce(scores[: rows * groups].reshape(rows, groups), axis=0)
    maxima.partition(groups - k)
    candidates = (scores >= maxima[groups - k]).nonzero()[0]  # the tail rows are compared too
    if len(candidates) < k:  # NaN maxima broke the bound: fall back to the full sort
        return (-scores).argsort(kind="stable")[:k]
    if len(candidates) > 16 * k:  # many ties (or -inf rows): cut to the k best first
        candidates = _k_best_of(scores, candidates, k)
    # Rows descending, sorted ascending and stably, then reversed: best first and ties by
    # lower row, without negating the scores.
    candidates = candidates[::-1]
    return candidates[scores[candidates].argsort(kind="stable")[::-1][:k]]


def _k_best_of(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` candidates (ascending, NaN-free) the stable order ranks first."""
    values = scores[candidates]
    kth = np.partition(values, len(values) - k)[len(values) - k]
    keep = values > kth
    ties = (values == kth).nonzero()[0][: k - int(np.count_nonzero(keep))]
    keep[ties] = True  # ties with the k-th value: the lowest indices, as a stable sort
    return candidates[keep]


def top_k_excluding(scores: np.ndarray, k: int, excluded: Collection[int] = ()) -> np.ndarray:
    """Indices of the ``k`` best finite scores outside ``excluded``, best first, ties by index.

    A few excluded rows are dropped after selecting the best ``k + len(excluded)`` (which
    hold the best ``k`` others), sparing a copy of every score; a long list is masked with
    ``-inf`` on a copy instead, cheaper than sorting ``k + len(excluded)`` rows.
    """
    rows = np.fromiter(excluded, dtype=np.int64, count=len(excluded))
    if len(rows) <= k:
        best = top_k_indices(scores, k + len(rows))
        if len(rows):
            best = best[~np.isin(best, rows)]
    else:
        scores = scores.copy()  # the caller's array stays untouched
        scores[rows] = -np.inf
        best = top_k_indices(scores, k)
    return best[np.isfinite(scores[best])][:k]


class _ScoreBuffer:
    """One thread's single-vector scoring: table bound once, a user slot, a scores buffer.

    ``InferenceSession.run`` allocates and copies a fresh scores array per call; binding
    preallocated buffers lets MLAS write the scores in place. One per thread, since every
    call overwrites them.
    """

    def __init__(self, session: ort.InferenceSession, table: ort.OrtValue, n_items: int,
                 dim: int) -> None:
        self.user = np.zeros((1, dim), dtype=np.float32)
        out = np.empty((1, n_items), dtype=np.float32)
        self.scores = out[0]
        self._values = (ort.OrtValue.ortvalue_from_numpy(self.user),
                        ort.OrtValue.ortvalue_from_numpy(out))  # zero-copy views: keep alive
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input("item_table", table)
        self.binding.bind_ortvalue_input("user_vector", self._values[0])
        self.binding.bind_ortvalue_output("scores", self._values[1])


class OnnxSequenceModel:
    """A verified deep model ready to serve: vocab, item table and an ORT session.

    Build it off the hot path (loading verifies checksums and parity, then warms the
    session up), then swap the reference: every method is read-only, so in-flight calls
    on the old object finish safely.
    """

    def __init__(self, source: str | Path | bytes | Mapping[str, Any] | VerifiedModel,
                 threads: int = 2, warmup: int = 3, root: str | Path | None = None) -> None:
        # ``root``: the model store a message's version must be in (services pass theirs).
        verified = source if isinstance(source, VerifiedModel) else load_verified(
            source, threads=threads, root=root)
        self.path = verified.path
        self.manifest = verified.manifest
        self.version = verified.version
        self.max_len = int(verified.manifest["model"]["max_len"])
        self.vocab = ItemVocabulary(verified.item_ids)
        self.item_table = verified.item_table
        self._onnx_bytes = verified.onnx_bytes
        self._threads = threads
        self._session = verified.session or make_session(verified.onnx_bytes, threads)
        self._init_tables()
        for _ in range(warmup):  # first runs allocate buffers; keep that off the hot path
            self.user_vectors([[]])
            self.user_vectors([[]] * 32)

    @classmethod
    def from_parts(cls, onnx_bytes: bytes, item_ids: Sequence[str], item_table: np.ndarray,
                   max_len: int, version: str = "unpublished",
                   threads: int = 2) -> "OnnxSequenceModel":
        """A model straight from memory (replay, tests): no folder, no checksums.

        Callers must have checked parity themselves (``streamrec.export.parity.check_parity``).
        """
        verified = VerifiedModel(Path("."), {"version": version, "model": {"max_len": max_len}},
                                 onnx_bytes, list(item_ids),
                                 np.ascontiguousarray(item_table, dtype=np.float32), None)
        return cls(verified, threads=threads)

    def _init_tables(self) -> None:
        # A contiguous view without the padding row: matvec reads exactly the real items.
        self._items = np.ascontiguousarray(self.item_table[1:], dtype=np.float32)
        self._retrieval = make_session(base64.b64decode(RETRIEVAL_GRAPH_B64), threads=1)
        self._items_value = ort.OrtValue.ortvalue_from_numpy(self._items)  # zero-copy
        self._per_thread = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_session", "_retrieval", "_items_value", "_per_thread"):
            state[name] = None  # sessions, their values and thread-locals do not pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._session = make_session(self._onnx_bytes, self._threads)
        self._init_tables()

    @property
    def dim(self) -> int:
        return int(self.item_table.shape[1])

    @property
    def n_items(self) -> int:
        return len(self.vocab)

    def encode(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """Item ids → left-padded int64 ``[batch, max_len]``; unknown items are skipped."""
        max_len = self.max_len
        out = np.zeros((len(sequences), max_len), dtype=np.int64)
        if not max_len:
            return out
        index = self.vocab.index
        for row, seq in enumerate(sequences):
            # ``left_pad(vocab.encode(seq), max_len)`` written straight into the row.
            rows = [index[i] for i in seq if i in index][-max_len:]
            if rows:
                out[row, max_len - len(rows):] = rows
        return out

    def user_vectors(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """float32 ``[batch, d]``: one user vector per item-id sequence (oldest first)."""
        if not sequences:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.user_vectors_encoded(self.encode(sequences))

    def user_vectors_encoded(self, item_seq: np.ndarray) -> np.ndarray:
        """User vectors of already-encoded sequences ``[batch, max_len]`` int64."""
        return self._session.run(None, {INPUT_NAME: item_seq})[0]

    def scores(self, user_vectors: np.ndarray) -> np.ndarray:
        """``[batch, n_items]`` (or ``[n_items]`` for one vector): dot product per item."""
        if user_vectors.ndim != 1:
            return user_vectors @ self._items.T  # gemm: compute-bound, BLAS does best
        return self._score_one(user_vectors).copy()

    def _score_one(self, user_vector: np.ndarray) -> np.ndarray:
        """Scores of one vector in this thread's buffer, valid until its next call.

        A bandwidth-bound matvec on the single-threaded retrieval session (see
        ``streamrec.export.interface.RETRIEVAL_GRAPH_B64`` for why not numpy).
        """
        buffer = getattr(self._per_thread, "buffer", None)
        if buffer is None:
            buffer = self._per_thread.buffer = _ScoreBuffer(
                self._retrieval, self._items_value, *self._items.shape)
        buffer.user[0] = user_vector  # float32 whatever the caller's dtype
        self._retrieval.run_with_iobinding(buffer.binding)
        return buffer.scores

    def top_k_rows(self, user_vector: np.ndarray, k: int) -> np.ndarray:
        """Rows (0-based, padding excluded) of the ``k`` best items for one vector, best first.

        The retrieval ``top_k`` runs and ``benchmarks/scoring.py`` times: one matvec into a
        reused buffer, then ``top_k_indices``.
        """
        return top_k_indices(self._score_one(user_vector), k)

    def top_k(self, user_vector: np.ndarray, k: int,
              exclude: Collection[str] = ()) -> Ranking:
        """The ``k`` best items for one user vector, best first, never an excluded one."""
        return self._rank(self._score_one(user_vector), k, exclude)

    def top_k_batch(self, user_vectors: np.ndarray, k: int,
                    excludes: Sequence[Collection[str]] | None = None) -> list[Ranking]:
        """``top_k`` for every row of ``user_vectors`` with one matrix product."""
        all_scores = self.scores(np.atleast_2d(user_vectors))
        excludes = excludes if excludes is not None else [()] * len(all_scores)
        return [self._rank(row, k, ex) for row, ex in zip(all_scores, excludes)]

    def recommend(self, sequences: Sequence[Sequence[str]], k: int,
                  excludes: Sequence[Collection[str]] | None = None) -> list[Ranking]:
        """Top-``k`` per user from their item sequences (one ORT run, one matmul)."""
        return self.top_k_batch(self.user_vectors(sequences), k, excludes)

    def top_k_indices(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Row indices (0-based, padding excluded) of the ``k`` largest scores, best first."""
        return top_k_indices(scores, k)

    def _rank(self, scores: np.ndarray, k: int, exclude: Collection[str]) -> Ranking:
        excluded = {r - 1 for r in self.vocab.encode(exclude)} if exclude else set()
        best = top_k_excluding(scores, k, excluded)
        ids = self.vocab.ids
        return [(ids[i], s) for i, s in zip(best.tolist(), scores[best].tolist())]
