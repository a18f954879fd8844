"""Train a ``SASRec`` on users' item sequences: next-item targets, full softmax, warm start.

The catalogue is small (MovieLens: 1.7k items), so a full softmax over every item is both
cheaper to get right and better than sampled negatives; logits are computed only at
positions that have a target, so padding costs nothing. Everything random (initial
weights, dropout, batch order) flows from ``seed``, and torch uses the given thread count,
so the same data and seed give the same weights.

A warm start copies every weight of the previous model and the embedding rows of the items
both vocabularies share; items new to this window start from a fresh random row.

>>> result = train_model([["a", "b", "c", "a", "b", "c"]] * 4, epochs=2, dim=8, max_len=4,
...                      n_blocks=1, on_epoch=None)
>>> result.vocab.ids, len(result.epochs)
(['a', 'b', 'c'], 2)
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from streamrec.export.model import SASRec, SASRecConfig
from streamrec.export.vocab import ItemVocabulary, left_pad
from streamrec.events import ClickEvent


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did: mean loss per target and wall seconds (for progress output)."""

    epoch: int
    epochs: int
    loss: float
    seconds: float
    targets: int


@dataclass
class TrainedModel:
    """A trained model in eval mode, its vocabulary and how training went."""

    model: SASRec
    vocab: ItemVocabulary
    epochs: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    warm_started: bool = False
    train_sequences: int = 0
    train_targets: int = 0


def print_epoch(stats: EpochStats) -> None:
    """Default progress output: one line per epoch on stderr."""
    sys.stderr.write(f"train epoch {stats.epoch}/{stats.epochs} loss {stats.loss:.4f} "
                     f"{stats.seconds:.2f}s ({stats.targets} targets)\n")
    sys.stderr.flush()


def sequences_from_events(events: Iterable[ClickEvent]) -> dict[str, list[str]]:
    """Each user's items in event-time order (ties keep input order)."""
    sequences: dict[str, list[str]] = {}
    for event in sorted(events, key=attrgetter("ts")):  # stable: ties keep input order
        sequences.setdefault(event.user_id, []).append(event.item_id)
    return sequences


def training_windows(rows: Sequence[Sequence[int]], max_len: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) ``[n, max_len]`` int64: each target appears exactly once.

    A long sequence is cut from its newest end into windows of ``max_len + 1`` items that
    overlap by one, so the model sees every transition without repeating any.
    """
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    for seq in rows:
        for end in range(len(seq), 1, -max_len):
            chunk = seq[max(0, end - max_len - 1):end]
            inputs.append(left_pad(chunk[:-1], max_len))
            targets.append(left_pad(chunk[1:], max_len))
    if not inputs:
        empty = np.zeros((0, max_len), dtype=np.int64)
        return empty, empty.copy()
    return np.asarray(inputs, dtype=np.int64), np.asarray(targets, dtype=np.int64)


def _warm_start(model: SASRec, vocab: ItemVocabulary, previous: TrainedModel) -> bool:
    """Copy ``previous`` into ``model`` where shapes allow; False if nothing was copied."""
    old, new = previous.model.config, model.config
    if (old.dim, old.max_len, old.n_blocks, old.n_heads) != (
            new.dim, new.max_len, new.n_blocks, new.n_heads):
        return False  # a different architecture: nothing transfers
    state = {k: v for k, v in previous.model.state_dict().items() if k != "item_emb.weight"}
    model.load_state_dict(state, strict=False)
    shared = [(vocab.index[i], row) for i, row in previous.vocab.index.items() if i in vocab]
    if shared:
        new_rows = torch.tensor([n for n, _ in shared])
        old_rows = torch.tensor([o for _, o in shared])
        with torch.no_grad():
            model.item_emb.weight[new_rows] = previous.model.item_emb.weight[old_rows]
    return True


def train_model(sequences: Mapping[str, Sequence[str]] | Sequence[Sequence[str]]
                | Sequence[ClickEvent], vocab: ItemVocabulary | None = None, *,
                epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
                dim: int = 64, max_len: int = 50, n_blocks: int = 2, n_heads: int = 1,
                dropout: float = 0.2, label_smoothing: float = 0.0,
                weight_decay: float = 0.0, seed: int = 0,
                warm_start: TrainedModel | None = None,
                threads: int = 2, max_seconds: float | None = None,
                on_epoch: Callable[[EpochStats], None] | None = print_epoch) -> TrainedModel:
    """Train on next-item targets; return the model in eval mode with its vocabulary.

    Parameters
    ----------
    sequences
        Users' item-id sequences, oldest first (a mapping user → items, a list of lists,
        or click events, which are grouped by user in event-time order).
    vocab
        Item vocabulary; defaults to ``warm_start``'s vocabulary (if any) extended with the
        items of ``sequences``, so known items keep their rows.
    warm_start
        A previous model to continue from (weights copied where vocabularies allow).
    label_smoothing
        Share of each target's probability spread over the whole catalogue (0 = plain
        cross-entropy).
    weight_decay
        Decoupled weight decay (AdamW); 0 keeps plain Adam.
    max_seconds
        Stop after the epoch that crosses this wall-time budget (None = run all epochs).
    on_epoch
        Progress callback after each epoch (default: a line on stderr; None = quiet).
    """
    start = time.perf_counter()
    if isinstance(sequences, Mapping):
        seqs: list[Sequence[str]] = list(sequences.values())
    elif sequences and isinstance(sequences[0], ClickEvent):
        seqs = list(sequences_from_events(sequences).values())  # type: ignore[arg-type]
    else:
        seqs = list(sequences)  # type: ignore[arg-type]
    if vocab is None:
        base = warm_start.vocab if warm_start is not None else ItemVocabulary()
        vocab = base.extended(item for seq in seqs for item in seq)
    torch.set_num_threads(threads)
    model = SASRec(len(vocab), dim, max_len, n_blocks, n_heads, dropout, seed)
    warm = warm_start is not None and _warm_start(model, vocab, warm_start)
    inputs, targets = training_windows([vocab.encode(seq) for seq in seqs], max_len)
    result = TrainedModel(model, vocab, warm_started=warm, train_sequences=len(seqs),
                          train_targets=int((targets != 0).sum()))
    if len(inputs) == 0:  # nothing to learn from yet: an untrained but servable model
        model.eval()
        result.seconds = time.perf_counter() - start
        return result
    x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(targets)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    optimizer = (torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98),
                                   weight_decay=weight_decay) if weight_decay > 0
                 else torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98)))
    model.train()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        total, count = 0.0, 0
        order = torch.randperm(len(x_all), generator=generator)
        for lo in range(0, len(order), batch_size):
            batch = order[lo:lo + batch_size]
            loss, n = _batch_loss(model, x_all[batch], y_all[batch], label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().item() * n
            count += n
        stats = EpochStats(epoch, epochs, total / max(count, 1), time.perf_counter() - t0,
                           count)
        result.epochs.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if not math.isfinite(stats.loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}: loss {stats.loss}")
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _batch_loss(model: SASRec, x: torch.Tensor, y: torch.Tensor,
                label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Mean full-softmax cross-entropy over the batch's real targets."""
    hidden = model.hidden(x)
    has_target = y != 0
    h = hidden[has_target]  # [targets, dim]: skip padding before the big matmul
    logits = h @ model.item_emb.weight.T
    logits[:, 0] = -1e9  # padding is never a valid next item
    if label_smoothing > 0:
        # Smoothing is spread over real items only: the padding column stays at -1e9 and
        # must get no target mass (with it, the loss would chase an unreachable logit).
        return (F.cross_entropy(logits[:, 1:], y[has_target] - 1,
                                label_smoothing=label_smoothing), int(has_target.sum()))
    return F.cross_entropy(logits, y[has_target]), int(has_target.sum())
