"""SASRec and its training loop: determinism by seed, windows, warm start, padding."""

from __future__ import annotations

import torch

from unit.export.export_helpers import TINY, tiny_sequences
from streamrec.export.model import SASRec
from streamrec.export.train import (_batch_loss, sequences_from_events, train_model,
                                    training_windows)
from streamrec.export.vocab import ItemVocabulary, left_pad
from streamrec.events import ClickEvent


def _state(model: SASRec) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_by_seed() -> None:
    seqs = tiny_sequences(20, 15)
    a = train_model(seqs, seed=1, **TINY)  # type: ignore[arg-type]
    b = train_model(seqs, seed=1, **TINY)  # type: ignore[arg-type]
    c = train_model(seqs, seed=2, **TINY)  # type: ignore[arg-type]
    sa, sb, sc = _state(a.model), _state(b.model), _state(c.model)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [e.loss for e in a.epochs] == [e.loss for e in b.epochs]


def test_loss_decreases_and_progress_is_reported() -> None:
    seen = []
    result = train_model(tiny_sequences(), seed=0, **{**TINY, "epochs": 6,
                                                      "on_epoch": seen.append})
    assert [s.epoch for s in seen] == list(range(1, 7))
    assert seen[-1].loss < seen[0].loss
    assert result.train_targets == 40 * 24 and not result.model.training


def test_windows_cover_every_transition_once() -> None:
    inputs, targets = training_windows([[1, 2, 3, 4, 5, 6, 7]], max_len=3)
    assert sorted(targets[targets != 0].tolist()) == [2, 3, 4, 5, 6, 7]
    # each target's input position holds its predecessor
    assert all(inputs[r][c] == targets[r][c] - 1 for r, c in zip(*targets.nonzero()))


def test_warm_start_keeps_known_item_rows() -> None:
    first = train_model([["a", "b", "c"]] * 5, seed=0, **TINY)  # type: ignore[arg-type]
    second = train_model([["c", "d", "a"]] * 5, warm_start=first, seed=0,
                         **{**TINY, "epochs": 0})
    assert second.warm_started and second.vocab.ids == ["a", "b", "c", "d"]
    old, new = first.model.item_table(), second.model.item_table()
    assert torch.equal(old[1:4], new[1:4])


def test_padding_does_not_change_the_user_vector() -> None:
    model = SASRec(n_items=9, dim=8, max_len=6, n_blocks=2, n_heads=2, seed=0).eval()
    with torch.no_grad():
        short = model(torch.tensor([left_pad([3, 4, 5], 6)]))
        also = model.hidden(torch.tensor([left_pad([3, 4, 5], 6)]))[:, -1]
    assert torch.allclose(short, also)
    assert torch.isfinite(model(torch.zeros((2, 6), dtype=torch.int64))).all()


def test_sequences_from_events_orders_by_event_time() -> None:
    events = [ClickEvent(event_id=str(n), user_id="u", item_id=i, type="click", ts=ts)
              for n, (i, ts) in enumerate([("b", 2.0), ("a", 1.0), ("c", 2.0)])]
    assert sequences_from_events(events) == {"u": ["a", "b", "c"]}
    assert ItemVocabulary(["x"]).encode(["y", "x"]) == [1]


def test_label_smoothing_spreads_mass_over_real_items_only() -> None:
    # The padding column's logit is pinned at -1e9: smoothing mass on it would make the
    # loss ~1e7 and training chase an unreachable logit.
    model = SASRec(n_items=9, dim=8, max_len=4, n_blocks=1, seed=0).eval()
    x = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    y = torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])
    with torch.no_grad():
        loss, n = _batch_loss(model, x, y, label_smoothing=0.2)
        hidden = model.hidden(x)[y != 0]
        log_p = torch.log_softmax(hidden @ model.item_table()[1:].T, dim=-1)
        nll = -log_p.gather(1, (y[y != 0] - 1).unsqueeze(1)).squeeze(1)
        expected = (0.8 * nll + 0.2 * -log_p.mean(dim=1)).mean()
    assert n == 7 and torch.isclose(loss, expected, atol=1e-5)


def test_weight_decay_shrinks_the_weights() -> None:
    plain = train_model(tiny_sequences(), seed=0, lr=1e-2, **{**TINY, "epochs": 4})
    decayed = train_model(tiny_sequences(), seed=0, weight_decay=0.5, lr=1e-2,
                          **{**TINY, "epochs": 4})
    assert decayed.model.item_table().norm() < plain.model.item_table().norm()
