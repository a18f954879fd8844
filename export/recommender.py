"""``DeepSequentialRecommender``: SASRec retrained on event time, served by ONNX Runtime.

The replay counterpart of the trainer + scorer pair, as one pure ``Recommender``:
``learn_one`` appends the item to the user's sequence and, every ``retrain_every`` events
(or ``retrain_interval_s`` of event time), retrains on everything seen so far — only the
past — warm-starting from the previous model. The new model goes through the same gate as
production (ONNX export, parity at batch 1 and 32) and then serves from ONNX Runtime via
``streamrec.export.serving``; ``serve_with="torch"`` serves the torch model instead (to measure
the difference). Until the first model exists, and for users with no known item, it ranks
by popularity; ``popularity_weight`` optionally blends popularity into every ranking.

The class defaults are generic; what the replay's ``deep`` and ``streamrec-full`` systems
run (a warm retrain of 5 epochs every 10,000 events on a context of the newest 20 items,
the TorchScript exporter, one torch thread, a one-thread serving session) is
``DEEP_TRAINER`` in ``streamrec/app/evaluation/systems.py``, which says how each value was
chosen (on the first half of ML-100K only).

Scores are ``(1 - w) * softmax(deep logits) + w * popularity share``, both probabilities
over the catalogue, so the blend needs no rescaling. Items that arrived after the last
retrain have no embedding: they can only be ranked by their popularity term.

>>> model = DeepSequentialRecommender(retrain_every=1000)
>>> model.recommend("u1", k=5)
[]
"""

from __future__ import annotations

from typing import Any, Collection

import numpy as np

from streamrec.online_models.base import Ranking
from streamrec.online_models.baselines import top_k
from streamrec.events import ClickEvent
from streamrec.export.vocab import ItemVocabulary, left_pad


class DeepSequentialRecommender:
    """Periodically retrained SASRec with a popularity fallback (see module docstring)."""

    def __init__(self, retrain_every: int = 10_000, retrain_interval_s: float | None = None,
                 min_train_events: int = 1_000, epochs: int = 20, warm_epochs: int = 2,
                 lr: float = 3e-3, dim: int = 64, max_len: int = 50, n_blocks: int = 2,
                 n_heads: int = 1, dropout: float = 0.2, batch_size: int = 128,
                 label_smoothing: float = 0.0, weight_decay: float = 0.0,
                 warm_start: bool = True, popularity_weight: float = 0.0,
                 serve_with: str = "onnx",
                 exporter: str = "auto", seed: int = 0, threads: int = 2,
                 serving_threads: int = 1, verbose: bool = False) -> None:
        if serve_with not in ("onnx", "torch"):
            raise ValueError(f"serve_with must be 'onnx' or 'torch', got {serve_with!r}")
        if not 0.0 <= popularity_weight <= 1.0:
            raise ValueError("popularity_weight must be within [0, 1]")
        self.retrain_every = retrain_every
        self.retrain_interval_s = retrain_interval_s
        self.min_train_events = min_train_events
        self.epochs = epochs
        self.warm_epochs = warm_epochs
        self.lr = lr
        self.dim = dim
        self.max_len = max_len
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.dropout = dropout
        self.batch_size = batch_size
        self.label_smoothing = label_smoothing
        self.weight_decay = weight_decay
        # False: every retrain starts from fresh weights and runs ``epochs`` (not warm_epochs).
        self.warm_start = warm_start
        self.popularity_weight = popularity_weight
        self.serve_with = serve_with
        self.exporter = exporter
        self.seed = seed
        self.threads = threads
        # Replay asks for one user per ONNX Runtime call: a second intra-op thread has
        # nothing to split and only spins and wakes up (batch 1 on ML-100K's model: 0.12
        # CPU ms per call with 1 thread, 0.29 with 2; outputs bit-identical).
        self.serving_threads = serving_threads
        self.verbose = verbose
        # Learned state.
        self.catalog = ItemVocabulary()  # first-seen order; a model's vocab is a prefix
        self.counts = np.zeros(64, dtype=np.float64)
        self.sequences: dict[str, list[str]] = {}
        self.events_seen = 0
        self.events_since_retrain = 0
        self.last_retrain_ts: float | None = None
        self.trained: Any = None  # streamrec.export.train.TrainedModel (torch), None until trained
        self.serving: Any = None  # streamrec.export.serving.OnnxSequenceModel when serving ONNX
        self.retrains: list[dict[str, float]] = []

    # -- learning -------------------------------------------------------------------------
    def learn_one(self, event: ClickEvent) -> None:
        row = self.catalog.add(event.item_id)
        if row > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(len(self.counts))])
        self.counts[row - 1] += 1.0
        self.sequences.setdefault(event.user_id, []).append(event.item_id)
        self.events_seen += 1
        self.events_since_retrain += 1
        if self.last_retrain_ts is None:
            self.last_retrain_ts = event.ts
        if self._retrain_due(event.ts):
            self.retrain(event.ts)

    def _retrain_due(self, ts: float) -> bool:
        if self.events_seen < self.min_train_events:
            return False  # too little data for a model better than popularity
        if self.trained is None:
            return True  # like the trainer service: with no model yet, train on what there is
        if self.events_since_retrain >= self.retrain_every:
            return True
        return (self.retrain_interval_s is not None and self.last_retrain_ts is not None
                and ts - self.last_retrain_ts >= self.retrain_interval_s)

    def retrain(self, now_ts: float) -> None:
        """Train on every sequence so far (warm start), export, check parity, swap in."""
        from streamrec.export.release import build_release
        from streamrec.export.train import print_epoch, train_model

        previous = self.trained if self.warm_start else None
        trained = train_model(
            self.sequences, self.catalog.extended(()), warm_start=previous,
            epochs=self.epochs if previous is None else self.warm_epochs,
            batch_size=self.batch_size, lr=self.lr, dim=self.dim, max_len=self.max_len,
            n_blocks=self.n_blocks, n_heads=self.n_heads, dropout=self.dropout,
            label_smoothing=self.label_smoothing, weight_decay=self.weight_decay,
            seed=self.seed + len(self.retrains), threads=self.threads,
            on_epoch=print_epoch if self.verbose else None)
        record = {"events": float(self.events_seen), "ts": now_ts,
                  "train_s": trained.seconds, "epochs": float(len(trained.epochs))}
        if self.serve_with == "onnx":
            release = build_release(trained, self.exporter, self.threads)
            self.serving = release.serving_model(self.serving_threads)
            record.update(release.timings)
        self.trained = trained
        self.retrains.append(record)
        self.events_since_retrain = 0
        self.last_retrain_ts = now_ts

    # -- ranking --------------------------------------------------------------------------
    def _user_vector(self, rows: list[int]) -> np.ndarray:
        seq = np.asarray([left_pad(rows, self.trained.model.config.max_len)], dtype=np.int64)
        if self.serving is not None:
            return self.serving.user_vectors_encoded(seq)[0]
        import torch

        with torch.no_grad():
            return self.trained.model(torch.from_numpy(seq))[0].numpy()

    def deep_probabilities(self, user_id: str) -> np.ndarray | None:
        """Softmax over the model's items for ``user_id`` (None: no model or no history)."""
        if self.trained is None:
            return None
        rows = self.trained.vocab.encode(self.sequences.get(user_id, ()))
        if not rows:
            return None
        vector = self._user_vector(rows)
        table = (self.serving.item_table if self.serving is not None
                 else self.trained.model.item_table().numpy())
        logits = table[1:] @ vector
        logits = logits - logits.max()
        probs = np.exp(logits)
        return probs / probs.sum()

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        n = len(self.catalog)
        if n == 0 or k <= 0:
            return []
        popularity = self.counts[:n] / self.counts[:n].sum()
        deep = self.deep_probabilities(user_id)
        if deep is None:
            scores = popularity.copy()
        else:
            w = self.popularity_weight
            scores = w * popularity
            scores[: len(deep)] += (1.0 - w) * deep
        if exclude:
            rows = [r - 1 for r in self.catalog.encode(exclude)]
            scores[rows] = -np.inf
        best = top_k(scores, k)
        return [(self.catalog.ids[i], float(scores[i])) for i in best]
